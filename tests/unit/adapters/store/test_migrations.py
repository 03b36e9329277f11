"""Migrations (Alembic, run by Store.open): from empty and from every earlier revision, on both
engines; a pre-Alembic SQLite file is adopted; forward only; packaged in the wheel.

A new revision in bot/adapters/store/schema/versions makes `test_upgrade_from_every_revision`
run an upgrade from each older one automatically; add an entry to SEEDS for rows only the new
revision can hold.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bot.adapters.store import MigrationError, Store
from bot.adapters.store.db import Database, _qmark_to_named, split_statements
from bot.adapters.store.migrations import (
    current_revision,
    head_revision,
    migrate,
    revisions,
)
from bot.adapters.store.tables import metadata
from tests.unit.adapters.store.conftest import Backend

ROOT = Path(__file__).resolve().parents[4]
LEGACY_SQL = Path(__file__).with_name("legacy") / "0001_initial.sql"
REVISIONS = revisions()
HEAD = head_revision()
SHA = "ab" * 32
ALL_TABLES = {
    "images", "image_blobs", "generations", "generation_images", "generation_messages",
    "chains", "chain_steps", "anchors", "guild_templates", "user_settings", "guild_settings",
    "usage_daily", "jobs", "job_turns", "gemini_slots", "gemini_calls", "economy_batches",
    "economy_items", "economy_usage",
}  # fmt: skip

# Rows written by the code of a revision, as SQL valid *at that revision* on both engines
# (__TRUE__ is a boolean literal). Each is applied right after its revision is
# reached, so later revisions must carry the rows forward.
SEEDS: dict[str, str] = {
    "0001": f"""
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
        VALUES (44, 7, 33, __TRUE__, 1010.0);
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


def _seed_sql(revision: str, dialect: str) -> str:
    return SEEDS[revision].replace("__TRUE__", "1" if dialect == "sqlite" else "true")


async def _check_seeded_data(store: Store, seeded: bool) -> None:
    """What the current code must still read from data written at older revisions."""
    if not seeded:
        return
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
    done = await store.get_job(1)
    assert done is not None and done.payload == {"channel_id": 33} and done.attempts == 0
    # The store keeps writing to the old rows' tables, new columns and all.
    gen2 = await store.create_generation(
        user_id=11, guild_id=22, channel_id=33, kind="imagine", spec={}, model="m",
        size="1K", aspect="1:1", summary="new",
    )  # fmt: skip
    assert gen2 > 7  # ids go on after the old ones


async def _tables(db: Database) -> set[str]:
    async with db.reading() as tx:
        return set(await tx.connection.run_sync(lambda c: sa.inspect(c).get_table_names()))


def test_revisions_form_one_line_from_0001() -> None:
    assert REVISIONS[0] == "0001" and REVISIONS[-1] == HEAD
    assert sorted(REVISIONS) == REVISIONS and len(set(REVISIONS)) == len(REVISIONS)


async def test_from_empty_creates_everything(backend: Backend) -> None:
    store = await backend.open()
    assert await current_revision(store.database) == HEAD
    assert await _tables(store.database) >= ALL_TABLES
    if backend.is_sqlite:
        with sqlite3.connect(backend.path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()


async def test_the_migrated_schema_is_the_tables_module(backend: Backend) -> None:
    """bot/adapters/store/tables.py (what queries use) and the migrations (what builds the
    database) describe the same schema: types, nullability, defaults, keys and indexes."""
    store = await backend.open()

    def diff(connection: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))

    async with store.database.reading() as tx:
        differences = await tx.connection.run_sync(diff)
    assert differences == []


@pytest.mark.parametrize("start", [None, *REVISIONS], ids=lambda r: f"from_{r or 'empty'}")
async def test_upgrade_from_every_revision(backend: Backend, start: str | None) -> None:
    """A database left at revision `start` (with data from each revision on the way)
    upgrades to the head, and its data stays readable."""
    db = await Database.open(backend.target)
    try:
        for revision in REVISIONS[: REVISIONS.index(start) + 1] if start else []:
            await migrate(db, target=revision)
            if revision in SEEDS:
                async with db.transaction() as tx:
                    await tx.script(_seed_sql(revision, db.dialect))
        assert await current_revision(db) == start
        if not backend.is_sqlite and start:  # PostgreSQL: keep the sequences past seeded ids
            async with db.transaction() as tx:
                for table in ("generations", "chains"):
                    await tx.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                        f" (SELECT MAX(id) FROM {table}))"
                    )
    finally:
        await db.close()

    store = await backend.open()
    assert await current_revision(store.database) == HEAD
    assert await store.database.integrity_check() == ["ok"]
    assert await store.database.foreign_key_violations() == 0
    await _check_seeded_data(store, seeded=start is not None)


def _structure(path: Path) -> dict[str, Any]:
    """A SQLite schema as SQLite itself sees it: per table its columns (name, type affinity,
    not null, default, primary key position), indexes, foreign keys and CHECKs."""

    def affinity(
        declared: str,
    ) -> str:  # https://sqlite.org/datatype3.html#determination_of_column_affinity
        t = declared.upper()
        if "INT" in t:
            return "INTEGER"
        if any(x in t for x in ("CHAR", "CLOB", "TEXT")):
            return "TEXT"
        if not t or "BLOB" in t:
            return "BLOB"
        if any(x in t for x in ("REAL", "FLOA", "DOUB")):
            return "REAL"
        return "NUMERIC"

    out: dict[str, Any] = {}
    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT IN ('sqlite_sequence', 'alembic_version') ORDER BY name"
            )
        ]
        for table in tables:
            columns = [
                # An INTEGER PRIMARY KEY is the rowid: never NULL, declared NOT NULL or not.
                (name, affinity(kind), notnull or (kind == "INTEGER" and pk == 1),
                 str(default).strip("()"), pk)
                for _, name, kind, notnull, default, pk in conn.execute(
                    f"PRAGMA table_info({table})"
                )
            ]  # fmt: skip
            indexes = sorted(
                (
                    unique,
                    tuple(r[2] for r in conn.execute(f"PRAGMA index_info('{name}')")),
                    origin,
                )
                for _, name, unique, origin, _ in conn.execute(f"PRAGMA index_list({table})")
            )
            fks = sorted(
                (r[2], r[3], r[4]) for r in conn.execute(f"PRAGMA foreign_key_list({table})")
            )
            sql = conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()[0]
            checks = sorted(
                " ".join(part.split()).rstrip(",").removeprefix("CONSTRAINT ")
                for part in sql.replace("(\n", "\n").splitlines()
                if "CHECK" in part
            )
            autoincrement = "AUTOINCREMENT" in sql.upper()
            out[table] = (columns, indexes, fks, len(checks), autoincrement)
    conn.close()
    return out


def _make_legacy_database(path: Path) -> None:
    """A database exactly as the pre-Alembic store left it: its 0001_initial.sql, the
    schema_migrations table at version 1, and rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        conn.executescript(LEGACY_SQL.read_text())
        conn.execute("INSERT INTO schema_migrations VALUES (1, '0001_initial', 1000.0)")
        conn.executescript(_seed_sql("0001", "sqlite"))
    conn.close()


async def test_a_pre_alembic_database_is_adopted_and_upgraded(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy" / "bot.db"
    _make_legacy_database(legacy)
    structure_0001 = _structure(legacy)

    fresh_0001 = tmp_path / "fresh" / "bot.db"
    db = await Database.open(fresh_0001)
    await migrate(db, target="0001")
    await db.close()
    # Revision 0001 builds what the old SQL file built, as SQLite sees it.
    assert _structure(fresh_0001) == {
        t: v for t, v in structure_0001.items() if t != "schema_migrations"
    }

    store = await Store.open(legacy)
    try:
        assert await current_revision(store.database) == HEAD
        assert "schema_migrations" not in await _tables(store.database)
        await _check_seeded_data(store, seeded=True)
    finally:
        await store.close()
    fresh = tmp_path / "head" / "bot.db"
    await (await Store.open(fresh)).close()
    assert _structure(legacy) == _structure(fresh)


async def test_a_legacy_database_from_a_newer_bot_refuses(tmp_path: Path) -> None:
    legacy = tmp_path / "bot.db"
    _make_legacy_database(legacy)
    with sqlite3.connect(legacy) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (2, '0002_future', 2000.0)")
    conn.close()
    with pytest.raises(MigrationError, match="newer"):
        await Store.open(legacy)


async def test_reopening_applies_nothing_twice(backend: Backend) -> None:
    for _ in range(3):
        store = await backend.open()
        await store.close()
    store = await backend.open()
    async with store.database.reading() as tx:
        assert [tuple(r) for r in await tx.all("SELECT version_num FROM alembic_version")] == [
            (HEAD,)
        ]


async def test_two_processes_migrating_at_once(backend: Backend) -> None:
    """Both start on an empty database; one migrates, the other waits and finds it done."""
    first, second = await asyncio.gather(backend.open(), backend.open())
    assert await current_revision(first.database) == HEAD
    assert await current_revision(second.database) == HEAD
    await first.update_user_settings(1, size="2K")
    assert await second.get_user_settings(1) == {"size": "2K"}


async def test_a_failing_migration_leaves_the_database_where_it_was(
    backend: Backend, tmp_path: Path
) -> None:
    versions = tmp_path / "schema" / "versions"
    shutil.copytree(ROOT / "bot" / "adapters" / "store" / "schema", tmp_path / "schema")
    broken = versions / "9001_broken.py"
    broken.write_text(
        textwrap.dedent(
            f"""
            import sqlalchemy as sa
            from alembic import op

            revision = "9001"
            down_revision = "{HEAD}"

            def upgrade():
                op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
                op.add_column("generations", sa.Column("extra", sa.Text))
                op.execute("INSERT INTO no_such_table VALUES (1)")
            """
        )
    )
    location = str(tmp_path / "schema")
    await (await backend.open()).close()  # at head
    db = await Database.open(backend.target)
    try:
        with pytest.raises(sa.exc.DBAPIError, match="no_such_table"):
            await migrate(db, script_location=location)
        assert await current_revision(db) == HEAD
        assert "half_done" not in await _tables(db)
        async with db.reading() as tx:
            columns = await tx.connection.run_sync(
                lambda c: {col["name"] for col in sa.inspect(c).get_columns("generations")}
            )
        assert "extra" not in columns
        # Fixed, it applies on the next start.
        broken.write_text(broken.read_text().replace('op.execute("INSERT', '# op.execute("'))
        assert await migrate(db, script_location=location) == "9001"
        assert "half_done" in await _tables(db)
    finally:
        await db.close()


async def test_a_newer_database_refuses_to_start(backend: Backend) -> None:
    store = await backend.open()
    async with store.database.transaction() as tx:
        await tx.execute("UPDATE alembic_version SET version_num = ?", ("9999_from_the_future",))
    await store.close()
    with pytest.raises(MigrationError, match="newer"):
        await backend.open()


def test_a_wheel_install_migrates_from_its_packaged_revisions(tmp_path: Path) -> None:
    """The revisions travel in the wheel (package data), not only in the source tree: build
    it, install it alone into a folder, and open a store from there, away from the checkout."""
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), "."],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("nano_banana_bot-*.whl")
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site),
         str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    assert (
        site / "bot" / "adapters" / "store" / "schema" / "versions" / "0001_initial.py"
    ).is_file()
    script = textwrap.dedent(
        """
        import asyncio, sys
        import bot
        from bot.adapters.store import Store
        from bot.adapters.store.migrations import current_revision

        async def main():
            store = await Store.open(sys.argv[1])
            print(bot.__file__)
            print(await current_revision(store.database))
            await store.close()

        asyncio.run(main())
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)  # the installed copy first; dependencies from the venv
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "db" / "bot.db")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    where, revision = run.stdout.split()
    assert where.startswith(str(site)) and revision == HEAD


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


def test_question_marks_become_named_parameters_outside_quotes() -> None:
    sql, values = _qmark_to_named(
        "SELECT '?', \"a?\", x::text -- why?\n FROM t WHERE a = ? AND b = '12:30' AND c = ?",
        [1, "two"],
    )
    assert values == {"p0": 1, "p1": "two"}
    assert ":p0" in sql and ":p1" in sql and "'?'" in sql and "why?" in sql
    assert sa.text(sql).compile().params == {"p0": None, "p1": None}  # no stray binds
    with pytest.raises(ValueError):
        _qmark_to_named("SELECT ?", [])
    with pytest.raises(ValueError):
        _qmark_to_named("SELECT 1", [1])
