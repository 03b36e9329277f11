"""`Store`: the one interface the bot uses for everything it keeps.

One implementation, two engines (SQLAlchemy Core over aiosqlite or asyncpg):

* SQLite, the default: one file at DATABASE_PATH, nothing to install, one process (a CLI
  render beside it is fine). Image bytes are content-addressed files beside it.
* PostgreSQL (DATABASE_URL=postgresql://…): shared by several bot processes. Image bytes live
  in the database too (`image_blobs`), so no shared disk is needed.

The store is split by subject into mixins; this class only opens and closes it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import TracebackType
from typing import Literal

from bot.adapters.store._anchors import AnchorsMixin
from bot.adapters.store._base import Clock
from bot.adapters.store._chains import ChainsMixin
from bot.adapters.store._economy import EconomyMixin
from bot.adapters.store._generations import GenerationsMixin
from bot.adapters.store._guilds import GuildsMixin
from bot.adapters.store._intake import IntakeMixin
from bot.adapters.store._jobs import JobsMixin
from bot.adapters.store._limiter import LimiterMixin
from bot.adapters.store._records import RecordsMixin
from bot.adapters.store._usage import UsageMixin
from bot.adapters.store.db import Database
from bot.adapters.store.files import ImageFiles
from bot.adapters.store.migrations import migrate

log = logging.getLogger(__name__)

ImageBytes = Literal["files", "database"]


class Store(
    GenerationsMixin,
    ChainsMixin,
    AnchorsMixin,
    GuildsMixin,
    UsageMixin,
    JobsMixin,
    LimiterMixin,
    IntakeMixin,
    RecordsMixin,
    EconomyMixin,
):
    """Everything the bot keeps. Open with `await Store.open(path_or_url)`; close when done."""

    @classmethod
    async def open(
        cls,
        database: str | Path,
        *,
        images_dir: Path | None = None,
        image_bytes: ImageBytes | None = None,
        clock: Clock = time.time,
    ) -> Store:
        """Open and migrate. `database` is the SQLite file (a path: folders and file are
        created; WAL, foreign keys, busy timeout) or a `postgresql://…` URL.

        `image_bytes`: "files" (SQLite's default; in `images_dir`, by default
        `<database folder>/images`) or "database" (PostgreSQL's default). `clock` is for tests.
        """
        db = await Database.open(database)
        mode = image_bytes or ("files" if db.is_sqlite else "database")
        files: ImageFiles | None = None
        try:
            revision = await migrate(db)
            if mode == "files":
                if images_dir is None:
                    if db.path is None:
                        raise ValueError("a database server keeps image files only in images_dir")
                    images_dir = db.path.parent / "images"
                files = ImageFiles(images_dir)
                swept = await files.sweep_temporary()
                if swept:
                    log.info("removed %d partial image files left by a crash", swept)
            elif mode != "database":
                raise ValueError(f"image_bytes is 'files' or 'database', not {mode!r}")
        except BaseException:
            await db.close()
            raise
        log.info(
            "database %s ready (schema revision %s, image bytes in %s)",
            db.describe(), revision, "the database" if files is None else files.root,
        )  # fmt: skip
        return cls(db, files, clock)

    # `Store.connect(settings.database_url)` reads better for a server; it is the same thing.
    connect = open

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
