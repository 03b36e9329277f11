-- 0001: the initial schema.
--
-- Portable SQL on purpose (a PostgreSQL port should only need its own copy of these files):
-- Discord ids are BIGINT, times are epoch seconds (REAL), booleans are 0/1 INTEGERs, JSON is
-- TEXT. AUTOINCREMENT keeps ids from ever being reused: generation ids live on in the
-- custom_id of buttons, and a reused id would point an old button at someone else's image.
-- The schema_migrations table is created by the migration runner, not here.

-- Image bytes live in files (<data_dir>/images/ab/<sha>); this table is their index.
CREATE TABLE images (
    sha256       TEXT    NOT NULL PRIMARY KEY,
    mime_type    TEXT    NOT NULL,
    size_bytes   INTEGER NOT NULL,
    created_at   REAL    NOT NULL,
    last_used_at REAL    NOT NULL,
    purged_at    REAL                      -- bytes deleted by retention; the record stays
);
CREATE INDEX images_retention ON images (purged_at, last_used_at);

CREATE TABLE generations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         BIGINT  NOT NULL,
    guild_id        BIGINT,
    channel_id      BIGINT  NOT NULL,
    message_id      BIGINT,                -- the latest message showing the result
    public          INTEGER NOT NULL DEFAULT 0,
    private         INTEGER NOT NULL DEFAULT 0,
    kind            TEXT    NOT NULL,
    spec            TEXT    NOT NULL,      -- JSON: the exact spec that was sent
    model           TEXT    NOT NULL,
    size            TEXT    NOT NULL,
    aspect          TEXT    NOT NULL,
    summary         TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'done', 'failed', 'blocked', 'cancelled')),
    error_kind      TEXT,
    error           TEXT,
    output_image    TEXT REFERENCES images (sha256),
    output_mime     TEXT,
    model_text      TEXT,
    model_content   TEXT,                  -- JSON: the model's turn (thought signatures kept)
    prompt_tokens   INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0,
    thoughts_tokens INTEGER NOT NULL DEFAULT 0,
    estimated_cost  REAL    NOT NULL DEFAULT 0,  -- reserved against quotas while unfinished
    cost            REAL    NOT NULL DEFAULT 0,
    model_version   TEXT,
    seconds         REAL,
    warnings        TEXT    NOT NULL DEFAULT '[]',
    chain_id        INTEGER REFERENCES chains (id),
    parent_id       INTEGER REFERENCES generations (id),
    step            INTEGER,
    batch_id        TEXT,
    created_at      REAL    NOT NULL,
    started_at      REAL,
    finished_at     REAL
);
CREATE INDEX generations_user ON generations (user_id, created_at);
CREATE INDEX generations_status ON generations (status);
CREATE INDEX generations_parent ON generations (parent_id);
CREATE INDEX generations_chain ON generations (chain_id);
CREATE INDEX generations_batch ON generations (batch_id);
CREATE INDEX generations_output ON generations (output_image);

-- Images a generation uses: its inputs (in order) and those inside the model's content.
CREATE TABLE generation_images (
    generation_id INTEGER NOT NULL REFERENCES generations (id),
    role          TEXT    NOT NULL CHECK (role IN ('input', 'content')),
    position      INTEGER NOT NULL,
    image_sha     TEXT    NOT NULL REFERENCES images (sha256),
    PRIMARY KEY (generation_id, role, position)
);
CREATE INDEX generation_images_sha ON generation_images (image_sha);

-- Every message that shows a generation (a re-post keeps the old message's replies working).
CREATE TABLE generation_messages (
    message_id    BIGINT  NOT NULL PRIMARY KEY,
    generation_id INTEGER NOT NULL REFERENCES generations (id),
    channel_id    BIGINT  NOT NULL,
    public        INTEGER NOT NULL DEFAULT 0,
    created_at    REAL    NOT NULL
);
CREATE INDEX generation_messages_generation ON generation_messages (generation_id);

CREATE TABLE chains (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    root_generation_id INTEGER NOT NULL UNIQUE REFERENCES generations (id),
    head_generation_id INTEGER NOT NULL REFERENCES generations (id),
    guild_id           BIGINT,
    channel_id         BIGINT  NOT NULL,
    thread_id          BIGINT  UNIQUE,
    owner_id           BIGINT  NOT NULL,
    created_at         REAL    NOT NULL,
    updated_at         REAL    NOT NULL
);

CREATE TABLE chain_steps (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    chain_id       INTEGER NOT NULL REFERENCES chains (id),
    generation_id  INTEGER NOT NULL UNIQUE REFERENCES generations (id),
    parent_step_id INTEGER REFERENCES chain_steps (id),
    step           INTEGER NOT NULL,
    created_at     REAL    NOT NULL
);
CREATE INDEX chain_steps_chain ON chain_steps (chain_id, step);

-- Identity anchors are private: every query names owner_id. name_key is the case-folded name,
-- so "Alice" and "alice" are one anchor, and the unique index doubles as the autocomplete index.
CREATE TABLE anchors (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id   BIGINT  NOT NULL,
    name       TEXT    NOT NULL,
    name_key   TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    note       TEXT,
    image_sha  TEXT    NOT NULL REFERENCES images (sha256),
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    created_at REAL    NOT NULL,
    UNIQUE (owner_id, name_key)
);
CREATE INDEX anchors_image ON anchors (image_sha);

CREATE TABLE guild_templates (
    guild_id    BIGINT NOT NULL,
    name        TEXT   NOT NULL,
    name_key    TEXT   NOT NULL,
    description TEXT   NOT NULL,
    body        TEXT   NOT NULL,
    author_id   BIGINT NOT NULL,
    created_at  REAL   NOT NULL,
    updated_at  REAL   NOT NULL,
    PRIMARY KEY (guild_id, name_key)
);

-- Settings are key/value (value JSON) so a new setting needs no migration.
CREATE TABLE user_settings (
    user_id    BIGINT NOT NULL,
    key        TEXT   NOT NULL,
    value      TEXT   NOT NULL,
    updated_at REAL   NOT NULL,
    PRIMARY KEY (user_id, key)
);

CREATE TABLE guild_settings (
    guild_id   BIGINT NOT NULL,
    key        TEXT   NOT NULL,
    value      TEXT   NOT NULL,
    updated_at REAL   NOT NULL,
    PRIMARY KEY (guild_id, key)
);

-- Charged usage per UTC day. guild_id 0 stands for direct messages (a NULL cannot be part of
-- a primary key in PostgreSQL, and would defeat the upsert).
CREATE TABLE usage_daily (
    day      TEXT    NOT NULL,
    user_id  BIGINT  NOT NULL,
    guild_id BIGINT  NOT NULL,
    model    TEXT    NOT NULL,
    images   INTEGER NOT NULL DEFAULT 0,
    cost     REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (day, user_id, guild_id, model)
);
CREATE INDEX usage_daily_guild ON usage_daily (guild_id, day);
CREATE INDEX usage_daily_user ON usage_daily (user_id, day);

CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    generation_id INTEGER NOT NULL REFERENCES generations (id),
    user_id       BIGINT  NOT NULL,
    status        TEXT    NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled', 'interrupted')),
    payload       TEXT    NOT NULL,        -- JSON
    created_at    REAL    NOT NULL,
    updated_at    REAL    NOT NULL
);
CREATE INDEX jobs_status ON jobs (status, created_at);
CREATE INDEX jobs_generation ON jobs (generation_id);
