"""`Store`: the one interface the bot uses for everything it keeps.

SQLite through aiosqlite by default: one file at DATABASE_PATH, nothing to install. Image
bytes live beside it as content-addressed files (see bot.store.files for why). The store is
split by subject into mixins; this class only opens and closes it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import TracebackType

from bot.adapters.store._anchors import AnchorsMixin
from bot.adapters.store._base import Clock
from bot.adapters.store._chains import ChainsMixin
from bot.adapters.store._generations import GenerationsMixin
from bot.adapters.store._guilds import GuildsMixin
from bot.adapters.store._jobs import JobsMixin
from bot.adapters.store._records import RecordsMixin
from bot.adapters.store._usage import UsageMixin
from bot.adapters.store.db import Database
from bot.adapters.store.files import ImageFiles
from bot.adapters.store.migrations import Migration, migrate

log = logging.getLogger(__name__)


class Store(
    GenerationsMixin,
    ChainsMixin,
    AnchorsMixin,
    GuildsMixin,
    UsageMixin,
    JobsMixin,
    RecordsMixin,
):
    """Everything the bot keeps. Open with `await Store.open(path)`; close when done."""

    @classmethod
    async def open(
        cls,
        database_path: Path,
        *,
        images_dir: Path | None = None,
        clock: Clock = time.time,
        migrations: list[Migration] | None = None,
    ) -> Store:
        """Open (creating folders and file), enable WAL/foreign keys/busy timeout, migrate.

        `images_dir` defaults to `<database folder>/images`. `clock` and `migrations` are
        for tests.
        """
        database_path = Path(database_path)
        db = await Database.open(database_path)
        try:
            version = await migrate(db, migrations)
            files = ImageFiles(images_dir or database_path.parent / "images")
            swept = await files.sweep_temporary()
        except BaseException:
            await db.close()
            raise
        if swept:
            log.info("removed %d partial image files left by a crash", swept)
        log.info("database %s ready (schema version %d)", database_path, version)
        return cls(db, files, clock)

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> bool:
        """Whether the database answers (for /healthz)."""
        async with self._db.reading() as tx:
            return bool(await tx.scalar("SELECT 1"))

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
