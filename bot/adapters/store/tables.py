"""The schema as the queries see it: SQLAlchemy Core tables, portable to SQLite and PostgreSQL.

This is the *current* schema (the head of the migrations in bot/adapters/store/schema/versions);
the migrations are the history and never import this module. A test compares the two on both
engines, so they cannot drift apart.

Portable types: Discord ids are BIGINT, row ids BIGINT (INTEGER on SQLite, where only
`INTEGER PRIMARY KEY` is the rowid; AUTOINCREMENT keeps ids from ever being reused — generation
ids live on in the custom_id of buttons), times are epoch seconds (DOUBLE), flags are BOOLEAN
(0/1 INTEGERs on SQLite), JSON is TEXT (key order is kept: the stored spec is the spec that was
sent), image bytes are BYTEA/BLOB.
"""

from __future__ import annotations

import sqlalchemy as sa

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DISCORD_ID = sa.BigInteger()
TIME: sa.Double[float] = sa.Double()
MONEY: sa.Double[float] = sa.Double()
# Names, keys and model ids compare byte by byte on both engines (a PostgreSQL server's
# default locale would ignore punctuation: "an_x" would sort, and prefix-match, like "anx").
KEY = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
FLAG = sa.Boolean(create_constraint=False).with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()


def _id() -> sa.Column[int]:
    return sa.Column("id", ID, primary_key=True, autoincrement=True)


images = sa.Table(
    "images",
    metadata,
    sa.Column("sha256", sa.Text, primary_key=True),
    sa.Column("mime_type", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", TIME, nullable=False),
    sa.Column("last_used_at", TIME, nullable=False),
    sa.Column("purged_at", TIME),  # bytes deleted by retention; the record stays
    sa.Index("images_retention", "purged_at", "last_used_at"),
)

# The bytes themselves when they live in the database (PostgreSQL: no shared disk needed),
# stored uncompressed (0005: image formats are compressed already).
image_blobs = sa.Table(
    "image_blobs",
    metadata,
    sa.Column("sha256", sa.Text, sa.ForeignKey("images.sha256"), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

generations = sa.Table(
    "generations",
    metadata,
    _id(),
    sa.Column("user_id", DISCORD_ID, nullable=False),
    sa.Column("guild_id", DISCORD_ID),
    sa.Column("channel_id", DISCORD_ID, nullable=False),
    sa.Column("message_id", DISCORD_ID),  # the latest message showing the result
    sa.Column("public", FLAG, nullable=False, server_default=sa.false()),
    sa.Column("private", FLAG, nullable=False, server_default=sa.false()),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("spec", sa.Text, nullable=False),  # JSON: the exact spec that was sent
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("size", sa.Text, nullable=False),
    sa.Column("aspect", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'queued'")),
    sa.Column("error_kind", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("output_image", sa.Text, sa.ForeignKey("images.sha256")),
    sa.Column("output_mime", sa.Text),
    sa.Column("model_text", sa.Text),
    sa.Column("model_content", sa.Text),  # JSON: the model's turn (thought signatures kept)
    sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("output_tokens", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("thoughts_tokens", sa.Integer, nullable=False, server_default=sa.text("0")),
    # Reserved against quotas while unfinished.
    sa.Column("estimated_cost", MONEY, nullable=False, server_default=sa.text("0")),
    sa.Column("cost", MONEY, nullable=False, server_default=sa.text("0")),
    sa.Column("model_version", sa.Text),
    sa.Column("seconds", TIME),
    sa.Column("warnings", sa.Text, nullable=False, server_default=sa.text("'[]'")),
    sa.Column("chain_id", ID, sa.ForeignKey("chains.id", use_alter=True)),
    sa.Column("parent_id", ID, sa.ForeignKey("generations.id")),
    sa.Column("step", sa.Integer),
    sa.Column("batch_id", sa.Text),
    sa.Column("created_at", TIME, nullable=False),
    sa.Column("started_at", TIME),
    sa.Column("finished_at", TIME),
    sa.CheckConstraint(
        "status IN ('queued', 'running', 'done', 'failed', 'blocked', 'cancelled')",
        name="generations_status",
    ),
    sa.Index("generations_user", "user_id", "created_at"),
    sa.Index("generations_status", "status"),
    sa.Index("generations_parent", "parent_id"),
    sa.Index("generations_chain", "chain_id"),
    sa.Index("generations_batch", "batch_id"),
    sa.Index("generations_output", "output_image"),
    sqlite_autoincrement=True,
)

# Images a generation uses: its inputs (in order) and those inside the model's content.
generation_images = sa.Table(
    "generation_images",
    metadata,
    sa.Column("generation_id", ID, sa.ForeignKey("generations.id"), primary_key=True),
    sa.Column("role", sa.Text, primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("image_sha", sa.Text, sa.ForeignKey("images.sha256"), nullable=False),
    sa.CheckConstraint("role IN ('input', 'content')", name="generation_images_role"),
    sa.Index("generation_images_sha", "image_sha"),
)

# Every message that shows a generation (a re-post keeps the old message's replies working).
generation_messages = sa.Table(
    "generation_messages",
    metadata,
    sa.Column("message_id", DISCORD_ID, primary_key=True, autoincrement=False),
    sa.Column("generation_id", ID, sa.ForeignKey("generations.id"), nullable=False),
    sa.Column("channel_id", DISCORD_ID, nullable=False),
    sa.Column("public", FLAG, nullable=False, server_default=sa.false()),
    sa.Column("created_at", TIME, nullable=False),
    sa.Index("generation_messages_generation", "generation_id"),
)

chains = sa.Table(
    "chains",
    metadata,
    _id(),
    sa.Column(
        "root_generation_id", ID, sa.ForeignKey("generations.id"), nullable=False, unique=True
    ),
    sa.Column("head_generation_id", ID, sa.ForeignKey("generations.id"), nullable=False),
    sa.Column("guild_id", DISCORD_ID),
    sa.Column("channel_id", DISCORD_ID, nullable=False),
    sa.Column("thread_id", DISCORD_ID, unique=True),
    sa.Column("owner_id", DISCORD_ID, nullable=False),
    sa.Column("created_at", TIME, nullable=False),
    sa.Column("updated_at", TIME, nullable=False),
    sqlite_autoincrement=True,
)

chain_steps = sa.Table(
    "chain_steps",
    metadata,
    _id(),
    sa.Column("chain_id", ID, sa.ForeignKey("chains.id"), nullable=False),
    sa.Column("generation_id", ID, sa.ForeignKey("generations.id"), nullable=False, unique=True),
    sa.Column("parent_step_id", ID, sa.ForeignKey("chain_steps.id")),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("created_at", TIME, nullable=False),
    sa.Index("chain_steps_chain", "chain_id", "step"),
    sqlite_autoincrement=True,
)

# Identity anchors are private: every query names owner_id. name_key is the case-folded name,
# so "Alice" and "alice" are one anchor; the unique index doubles as the autocomplete index.
anchors = sa.Table(
    "anchors",
    metadata,
    _id(),
    sa.Column("owner_id", DISCORD_ID, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("name_key", KEY, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("image_sha", sa.Text, sa.ForeignKey("images.sha256"), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("created_at", TIME, nullable=False),
    sa.UniqueConstraint("owner_id", "name_key"),
    sa.Index("anchors_image", "image_sha"),
    sqlite_autoincrement=True,
)

guild_templates = sa.Table(
    "guild_templates",
    metadata,
    sa.Column("guild_id", DISCORD_ID, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("name_key", KEY, primary_key=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("author_id", DISCORD_ID, nullable=False),
    sa.Column("created_at", TIME, nullable=False),
    sa.Column("updated_at", TIME, nullable=False),
)

# Settings are key/value (value JSON) so a new setting needs no migration.
user_settings = sa.Table(
    "user_settings",
    metadata,
    sa.Column("user_id", DISCORD_ID, primary_key=True, autoincrement=False),
    sa.Column("key", KEY, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", TIME, nullable=False),
)

guild_settings = sa.Table(
    "guild_settings",
    metadata,
    sa.Column("guild_id", DISCORD_ID, primary_key=True, autoincrement=False),
    sa.Column("key", KEY, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", TIME, nullable=False),
)

# Charged usage per UTC day. guild_id 0 stands for direct messages (a NULL cannot be part of a
# primary key, and would defeat the upsert).
usage_daily = sa.Table(
    "usage_daily",
    metadata,
    sa.Column("day", sa.Text, primary_key=True),
    sa.Column("user_id", DISCORD_ID, primary_key=True, autoincrement=False),
    sa.Column("guild_id", DISCORD_ID, primary_key=True, autoincrement=False),
    sa.Column("model", KEY, primary_key=True),
    sa.Column("images", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("cost", MONEY, nullable=False, server_default=sa.text("0")),
    sa.Index("usage_daily_guild", "guild_id", "day"),
    sa.Index("usage_daily_user", "user_id", "day"),
)

# The durable queue: one row per job, the truth about its state (product.md §9).
jobs = sa.Table(
    "jobs",
    metadata,
    _id(),
    sa.Column("generation_id", ID, sa.ForeignKey("generations.id"), nullable=False),
    sa.Column("user_id", DISCORD_ID, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'queued'")),
    sa.Column("payload", sa.Text, nullable=False),  # JSON
    sa.Column("created_at", TIME, nullable=False),
    sa.Column("updated_at", TIME, nullable=False),
    # 0002: durable jobs
    sa.Column("guild_id", DISCORD_ID),
    sa.Column("lane", sa.Text),  # serial lane ("chain:42"): one running at a time, in order
    sa.Column("group_id", sa.Text),  # admitted together (a batch): all or none
    sa.Column("lease_owner", sa.Text),  # the worker running it
    sa.Column("lease_expires_at", TIME),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("started_at", TIME),
    sa.Column("finished_at", TIME),
    sa.Column("error", sa.Text),
    # 0003: past its Gemini call (storing, uploading): no longer counts against concurrency
    sa.Column("posting", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.CheckConstraint(
        "status IN ('queued', 'running', 'done', 'failed', 'cancelled', 'interrupted')",
        name="jobs_status",
    ),
    sa.Index("jobs_status", "status", "created_at"),
    sa.Index("jobs_generation", "generation_id"),
    sa.Index("jobs_user_queue", "status", "user_id", "id"),
    sa.Index("jobs_lane_queue", "lane", "status", "id"),
    sa.Index("jobs_lease", "status", "lease_expires_at"),
    sa.Index("jobs_group", "group_id"),
    sqlite_autoincrement=True,
)

# Requests acknowledged but not yet admitted (0003): recorded with the acknowledgement, deleted
# by the admission; a row whose lease ran out is taken over by a live process.
intake = sa.Table(
    "intake",
    metadata,
    _id(),
    sa.Column("user_id", DISCORD_ID, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # JSON
    sa.Column("lease_owner", sa.Text),
    sa.Column("lease_expires_at", TIME),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("created_at", TIME, nullable=False),
    sa.Index("intake_lease", "lease_expires_at"),
    sqlite_autoincrement=True,
)

# A batch's contact sheet, claimed once by whichever worker ends its last variant (0003).
batch_sheets = sa.Table(
    "batch_sheets",
    metadata,
    sa.Column("group_id", sa.Text, primary_key=True),
    sa.Column("worker", sa.Text, nullable=False),
    sa.Column("claimed_at", TIME, nullable=False),
)

# Round-robin between users: the serve number of each user's latest claimed job.
job_turns = sa.Table(
    "job_turns",
    metadata,
    sa.Column("user_id", DISCORD_ID, primary_key=True, autoincrement=False),
    sa.Column("served", sa.BigInteger, nullable=False),
    sa.Column("served_at", TIME, nullable=False),
)

# The shared Gemini limiter: calls in flight (leased, so a dead process frees its slot) and
# the calls of the last minute.
gemini_slots = sa.Table(
    "gemini_slots",
    metadata,
    _id(),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("holder", sa.Text, nullable=False),
    sa.Column("acquired_at", TIME, nullable=False),
    sa.Column("expires_at", TIME, nullable=False),
    sa.Index("gemini_slots_model", "model", "expires_at"),
    sqlite_autoincrement=True,
)

gemini_calls = sa.Table(
    "gemini_calls",
    metadata,
    _id(),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("at", TIME, nullable=False),
    sa.Index("gemini_calls_model", "model", "at"),
    sqlite_autoincrement=True,
)

# Economy (0004): requests answered through Gemini's Batch API. A batch groups one user's
# economy jobs for one model; whichever process holds its lease submits and polls it.
economy_batches = sa.Table(
    "economy_batches",
    metadata,
    _id(),
    sa.Column("user_id", DISCORD_ID, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    # forming (not submitted yet) | submitted (at Gemini) | ended (every item ended)
    sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'forming'")),
    sa.Column("gemini_state", sa.Text),  # JOB_STATE_… as last seen
    sa.Column("name", sa.Text, unique=True),  # "batches/…" once Gemini accepted it
    sa.Column("display_name", sa.Text, nullable=False),  # finds it again after a crash
    sa.Column("request_keys", sa.Text),  # JSON: the keys of the requests sent, in order
    sa.Column("submit_attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("created_at", TIME, nullable=False),
    sa.Column("submitted_at", TIME),
    sa.Column("started_at", TIME),  # first seen running at Gemini: too late to cancel
    sa.Column("ended_at", TIME),
    sa.Column("next_poll_at", TIME, nullable=False),
    sa.Column("polls", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("lease_owner", sa.Text),
    sa.Column("lease_expires_at", TIME),
    sa.Column("error", sa.Text),
    sa.CheckConstraint("state IN ('forming', 'submitted', 'ended')", name="economy_batches_state"),
    sa.Index("economy_batches_due", "state", "next_poll_at"),
    sqlite_autoincrement=True,
)

# The jobs of a batch, in the order they were sent (one generation each).
economy_items = sa.Table(
    "economy_items",
    metadata,
    sa.Column("job_id", ID, sa.ForeignKey("jobs.id"), primary_key=True, autoincrement=False),
    sa.Column("batch_id", ID, sa.ForeignKey("economy_batches.id"), nullable=False),
    sa.Column("generation_id", ID, sa.ForeignKey("generations.id"), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    # pending | done | failed | cancelled
    sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'pending'")),
    sa.Column("ended_at", TIME),
    sa.CheckConstraint(
        "state IN ('pending', 'done', 'failed', 'cancelled')", name="economy_items_state"
    ),
    sa.Index("economy_items_batch", "batch_id", "position"),
    sa.Index("economy_items_generation", "generation_id"),
)

# What economy images cost per UTC day, and what they would have cost interactively (the
# saving /usage shows). Charged usage itself is in usage_daily, at the batch price.
economy_usage = sa.Table(
    "economy_usage",
    metadata,
    sa.Column("day", sa.Text, primary_key=True),
    sa.Column("user_id", DISCORD_ID, primary_key=True, autoincrement=False),
    sa.Column("guild_id", DISCORD_ID, primary_key=True, autoincrement=False),  # 0: DMs
    sa.Column("model", KEY, primary_key=True),
    sa.Column("images", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("cost", MONEY, nullable=False, server_default=sa.text("0")),
    sa.Column("full_cost", MONEY, nullable=False, server_default=sa.text("0")),
    sa.Index("economy_usage_guild", "guild_id", "day"),
)
