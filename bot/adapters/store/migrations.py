"""Alembic migrations, run from code when the store opens: forward only, all or nothing.

The revisions are bot/adapters/store/schema/versions/*.py, found as package resources
(`bot.adapters.store:schema`), so a wheel install migrates exactly like a checkout.

`migrate` runs every pending revision inside ONE write transaction that first takes the
migration lock (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: an advisory lock, and its DDL is
transactional too). Two processes starting at once therefore queue: the second finds the
schema at head and does nothing. A failing revision leaves the database where it was.

A database newer than this code (a revision it does not know: a downgrade) refuses to start
rather than guess. A database written before Alembic (a `schema_migrations` table at version
1, made by the old schema/0001_initial.sql) is stamped at revision 0001 and upgraded from there.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from bot.adapters.store.db import Database

log = logging.getLogger(__name__)

SCRIPT_LOCATION = "bot.adapters.store:schema"
_LEGACY_TABLE = "schema_migrations"
_LEGACY_REVISIONS = {1: "0001"}  # schema_migrations version -> the equivalent revision


class MigrationError(RuntimeError):
    """The migrations or the database's version are not usable."""


def alembic_config(script_location: str = SCRIPT_LOCATION) -> Config:
    config = Config()
    config.set_main_option("script_location", script_location)
    return config


def script_directory(script_location: str = SCRIPT_LOCATION) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(script_location))


def head_revision() -> str:
    head = script_directory().get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise MigrationError("no migrations found")
    return head


def revisions() -> list[str]:
    """Every revision id, oldest first."""
    return [r.revision for r in reversed(list(script_directory().walk_revisions()))]


async def current_revision(db: Database) -> str | None:
    """The database's revision (None: empty, or from before Alembic)."""
    async with db.reading() as tx:
        return await tx.connection.run_sync(_current_sync)


def _current_sync(connection: sa.Connection) -> str | None:
    context = MigrationContext.configure(connection)
    heads = context.get_current_heads()
    return heads[0] if heads else None


async def migrate(
    db: Database, *, target: str = "head", script_location: str = SCRIPT_LOCATION
) -> str:
    """Bring the schema to `target` (default: the latest revision); returns the revision.
    `script_location` is for tests (another folder of revisions)."""
    script = script_directory(script_location)
    async with db.transaction() as tx:
        await tx.lock("bot.migrations")
        revision = await tx.connection.run_sync(_upgrade_sync, script, target)
    return revision


def _upgrade_sync(connection: sa.Connection, script: ScriptDirectory, target: str) -> str:
    tables = set(sa.inspect(connection).get_table_names())
    if _LEGACY_TABLE in tables and "alembic_version" not in tables:
        _adopt_legacy(connection, script)

    context = MigrationContext.configure(connection)
    for head in context.get_current_heads():
        try:
            known = script.get_revision(head)
        except CommandError:
            known = None
        if known is None:
            raise MigrationError(
                f"the database is at schema revision {head!r}, which this bot does not know; "
                "it was written by a newer version — upgrade the bot (no downgrades)"
            )
    try:
        script.get_revision(target)
    except CommandError as exc:
        raise MigrationError(f"no migration {target!r}") from exc

    def upgrade(rev: Any, _context: Any) -> Any:
        return script._upgrade_revs(target, rev)

    with EnvironmentContext(
        alembic_config(script.dir), script, fn=upgrade, destination_rev=target
    ) as environment:
        # The caller's transaction is the migration's: Alembic neither begins nor commits.
        environment.configure(connection=connection, transactional_ddl=True)
        with environment.begin_transaction():
            environment.run_migrations()
    current = _current_sync(connection)
    if current is None:  # pragma: no cover - target "base" is not offered
        raise MigrationError("no revision applied")
    return current


def _adopt_legacy(connection: sa.Connection, script: ScriptDirectory) -> None:
    version = connection.execute(
        sa.text(f"SELECT COALESCE(MAX(version), 0) FROM {_LEGACY_TABLE}")
    ).scalar_one()
    if version == 0:  # the table but nothing applied: an empty database
        connection.execute(sa.text(f"DROP TABLE {_LEGACY_TABLE}"))
        return
    revision = _LEGACY_REVISIONS.get(int(version))
    if revision is None:
        raise MigrationError(
            f"the database is at schema version {version}, which this bot does not know; "
            "it was written by a newer version — upgrade the bot (no downgrades)"
        )
    log.info("adopting a pre-Alembic database at version %d as revision %s", version, revision)
    MigrationContext.configure(connection).stamp(script, revision)
    connection.execute(sa.text(f"DROP TABLE {_LEGACY_TABLE}"))
