"""Numbered SQL migrations: bot/adapters/store/schema/NNNN_name.sql, applied in order, forward only.

`schema_migrations` records each applied version. Every migration runs in its own transaction
together with the row that records it, so a failure leaves the database at the previous
version, never half-way. A database newer than the code (a downgrade) refuses to start rather
than guess.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bot.adapters.store.db import Database

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at REAL    NOT NULL
)
"""


class MigrationError(RuntimeError):
    """The migration files or the database's version are not usable."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # file name without ".sql"
    sql: str


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migration files, checked to be numbered 1, 2, 3, … without gaps or duplicates."""
    if directory is None:
        files = [
            (entry.name, entry.read_text(encoding="utf-8"))
            for entry in resources.files("bot.adapters.store.schema").iterdir()
            if entry.name.endswith(".sql")
        ]
    else:
        files = [(p.name, p.read_text(encoding="utf-8")) for p in Path(directory).glob("*.sql")]
    found: list[Migration] = []
    for filename, sql in files:
        match = _NAME.match(filename)
        if match is None:
            raise MigrationError(f"migration file {filename!r} is not named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), filename.removesuffix(".sql"), sql))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migrations must be numbered 0001, 0002, … without gaps or duplicates; "
                f"expected {expected:04d} but found {migration.name}"
            )
    return found


async def current_version(db: Database) -> int:
    async with db.transaction() as tx:
        await tx.execute(_VERSION_TABLE)
        return int(await tx.scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))


async def migrate(
    db: Database, migrations: list[Migration] | None = None, *, target: int | None = None
) -> int:
    """Apply every migration above the database's version (up to `target`); returns the version.

    Safe when two processes start at once: each migration re-reads the version inside its
    own write transaction, so the second process finds it applied and skips it.
    """
    if migrations is None:
        migrations = load_migrations()
    latest = migrations[-1].version if migrations else 0
    target = latest if target is None else target
    if not 0 <= target <= latest:
        raise MigrationError(f"no migration {target:04d} (latest is {latest:04d})")
    version = await current_version(db)
    if version > latest:
        raise MigrationError(
            f"the database is at schema version {version} but this bot only knows up to "
            f"{latest}; it was written by a newer version — upgrade the bot (no downgrades)"
        )
    for migration in migrations:
        if migration.version > target:
            break
        async with db.transaction() as tx:
            applied = int(
                await tx.scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            )
            if applied >= migration.version:
                continue
            log.info("applying database migration %s", migration.name)
            await tx.script(migration.sql)
            await tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
        version = migration.version
    return max(version, await current_version(db))
