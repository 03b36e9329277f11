"""Migrations: from an empty file and from every earlier schema version, forward only.

Adding bot/adapters/store/schema/0002_*.sql makes `test_upgrade_from_every_version` run an upgrade from
0001 automatically; add an entry to SEEDS for data only the new version can hold.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.adapters.store import MigrationError, Store
from bot.adapters.store.db import Database, split_statements
from bot.adapters.store.migrations import current_version, load_migrations, migrate

MIGRATIONS = load_migrations()
LATEST = MIGRATIONS[-1].version
SHA = "ab" * 32

# Rows written by the code of a schema version, as SQL valid *at that version*. Each is applied
# right after its version is reached, so later migrations must carry the rows forward.
SEEDS: dict[int, str] = {
    1: f"""
        INSERT INTO images (sha256, mime_type, size_bytes, created_at, last_used_at)
        VALUES ('{SHA}', 'image/png', 4, 1000.0, 1000.0);
        INSERT INTO generations (id, user_id, guild_id, channel_id, message_id, kind, spec,
            model, size, aspect, summary, status, output_image, output_mime, cost, created_at,
            finished_at)
        VALUES (7, 11, 22, 33, 44, 'imagine', '{{"task":"generate_image","subject":"a cat"}}',
            'gemini-3-pro-image', '1K', '1:1', 'a cat', 'done', '{SHA}', 'image/png', 0.134,
            1000.0, 1010.0);
        INSERT INTO generation_images (generation_id, role, position, image_sha)
        VALUES (7, 'input', 0, '{SHA}');
        INSERT INTO generation_messages (message_id, generation_id, channel_id, public, created_at)
        VALUES (44, 7, 33, 1, 1010.0);
        INSERT INTO chains (id, root_generation_id, head_generation_id, guild_id, channel_id,
            thread_id, owner_id, created_at, updated_at)
        VALUES (3, 7, 7, 22, 33, 44, 11, 1010.0, 1010.0);
        INSERT INTO chain_steps (chain_id, generation_id, parent_step_id, step, created_at)
        VALUES (3, 7, NULL, 0, 1010.0);
        UPDATE generations SET chain_id = 3, step = 0 WHERE id = 7;
        INSERT INTO anchors (owner_id, name, name_key, kind, note, image_sha, width, height,
            created_at)
        VALUES (11, 'Alice', 'alice', 'face', NULL, '{SHA}', 64, 64, 1000.0);
        INSERT INTO guild_templates (guild_id, name, name_key, description, body, author_id,
            created_at, updated_at)
        VALUES (22, 'Shot', 'shot', 'a shot', '{{}}', 11, 1000.0, 1000.0);
        INSERT INTO user_settings (user_id, key, value, updated_at)
        VALUES (11, 'size', '"2K"', 1000.0);
        INSERT INTO guild_settings (guild_id, key, value, updated_at)
        VALUES (22, 'daily_images_per_user', '5', 1000.0);
        INSERT INTO usage_daily (day, user_id, guild_id, model, images, cost)
        VALUES ('2026-01-02', 11, 22, 'gemini-3-pro-image', 1, 0.134);
        INSERT INTO jobs (generation_id, user_id, status, payload, created_at, updated_at)
        VALUES (7, 11, 'done', '{{"channel_id":33}}', 1000.0, 1010.0);
    """,
}


async def _check_seeded_data(store: Store, seeded_up_to: int) -> None:
    """What the current code must still read from data written at older versions."""
    if seeded_up_to >= 1:
        gen = await store.get_generation(7)
        assert gen is not None
        assert gen.spec == {"task": "generate_image", "subject": "a cat"}
        assert gen.input_images == [SHA] and gen.output_image == SHA
        assert gen.status == "done" and gen.cost == pytest.approx(0.134)
        assert (await store.generation_by_message(44)) == gen
        chain = await store.chain_by_thread(44)
        assert chain is not None and chain.root_generation_id == 7
        assert (await store.get_anchor(11, "alice")) is not None
        assert (await store.get_anchor(12, "alice")) is None
        assert (await store.get_guild_template(22, "SHOT")) is not None
        assert await store.get_user_settings(11) == {"size": "2K"}
        assert await store.get_guild_settings(22) == {"daily_images_per_user": 5}
        usage = await store.usage_between(
            user_id=11, guild_id=22, first_day="2026-01-01", last_day="2026-01-31"
        )
        assert [(u.model, u.images) for u in usage] == [("gemini-3-pro-image", 1)]
        assert await store.open_jobs() == []


def _schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name"
        ).fetchall()
    conn.close()
    return [(t, n, " ".join(s.split())) for t, n, s in rows]


async def _fresh_schema(tmp_path: Path) -> list[tuple[str, str, str]]:
    store = await Store.open(tmp_path / "fresh" / "bot.db")
    await store.close()
    return _schema(tmp_path / "fresh" / "bot.db")


def test_migration_files_are_numbered_from_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))
    assert MIGRATIONS[0].name == "0001_initial"


async def test_from_empty_creates_everything(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folders" / "bot.db"  # folders are created
    store = await Store.open(path)
    try:
        assert await current_version(store.database) == LATEST
    finally:
        await store.close()
    tables = {name for kind, name, _ in _schema(path) if kind == "table"}
    assert {
        "schema_migrations", "images", "generations", "generation_images", "generation_messages",
        "chains", "chain_steps", "anchors", "guild_templates", "user_settings",
        "guild_settings", "usage_daily", "jobs",
    } <= tables  # fmt: skip
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        applied = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
    conn.close()
    assert applied == [(m.version, m.name) for m in MIGRATIONS]


@pytest.mark.parametrize("start", range(LATEST + 1), ids=lambda v: f"from_{v:04d}")
async def test_upgrade_from_every_version(tmp_path: Path, start: int) -> None:
    """A database left at version `start` (with data from each version on the way) upgrades
    to the latest schema, identical to a fresh one, and its data stays readable."""
    path = tmp_path / "old" / "bot.db"
    db = await Database.open(path)
    try:
        for version in range(1, start + 1):
            await migrate(db, MIGRATIONS, target=version)
            if version in SEEDS:
                async with db.transaction() as tx:
                    await tx.script(SEEDS[version])
        assert await current_version(db) == start
    finally:
        await db.close()

    store = await Store.open(path)
    try:
        assert await current_version(store.database) == LATEST
        assert await store.database.integrity_check() == ["ok"]
        assert await store.database.foreign_key_violations() == 0
        await _check_seeded_data(store, start)
    finally:
        await store.close()
    assert _schema(path) == await _fresh_schema(tmp_path)


async def test_reopening_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    for _ in range(3):
        store = await Store.open(path)
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == LATEST
    conn.close()


async def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    migrations_dir = tmp_path / "migrations"
    migrations_dir.mkdir()
    for m in MIGRATIONS:
        (migrations_dir / f"{m.name}.sql").write_text(m.sql)
    broken = f"{LATEST + 1:04d}_broken.sql"
    (migrations_dir / broken).write_text(
        "CREATE TABLE half_done (id INTEGER);\n"
        "ALTER TABLE generations ADD COLUMN extra TEXT;\n"
        "INSERT INTO no_such_table VALUES (1);\n"
    )
    path = tmp_path / "bot.db"
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        await Store.open(path, migrations=load_migrations(migrations_dir))
    with sqlite3.connect(path) as conn:
        version = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        columns = {r[1] for r in conn.execute("PRAGMA table_info(generations)")}
    conn.close()
    assert version == LATEST
    assert "half_done" not in tables and "extra" not in columns
    # Fixed, it applies on the next start.
    (migrations_dir / broken).write_text("CREATE TABLE half_done (id INTEGER);\n")
    store = await Store.open(path, migrations=load_migrations(migrations_dir))
    try:
        assert await current_version(store.database) == LATEST + 1
    finally:
        await store.close()


async def test_a_newer_database_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    store = await Store.open(path)
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?, 'from_the_future', 0)", (LATEST + 1,)
        )
    conn.close()
    with pytest.raises(MigrationError, match="newer"):
        await Store.open(path)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["0001_a.sql", "0003_c.sql"], "expected 0002"),
        (["0001_a.sql", "0001_b.sql"], "expected 0002"),
        (["0002_b.sql"], "expected 0001"),
        (["1_a.sql"], "NNNN_name"),
    ],
)
def test_badly_numbered_files_are_rejected(tmp_path: Path, names: list[str], message: str) -> None:
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=message):
        load_migrations(tmp_path)


def test_statement_splitting_keeps_triggers_whole() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE t (x TEXT DEFAULT 'a;b');
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN
        UPDATE t SET x = 'c;d';
        DELETE FROM t WHERE x = 'e';
    END;
    -- trailing comment
    """
    statements = list(split_statements(script))
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    with pytest.raises(ValueError, match="incomplete"):
        list(split_statements("CREATE TABLE t (x TEXT);\nCREATE TABLE u (y"))


def test_packaged_migrations_match_the_source_folder() -> None:
    folder = Path(__file__).resolve().parents[4] / "bot" / "adapters" / "store" / "schema"
    assert load_migrations(folder) == MIGRATIONS
