"""Every store test runs on both engines: the SQLite file and a real PostgreSQL database.

`backend` is parametrized ("sqlite", "postgresql"); `backend.open()` opens a Store on that
test's own database (call it twice for two processes' worth of stores on one database) and
closes whatever is still open at the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.adapters.store import Store
from bot.adapters.store.tables import image_blobs
from tests.support.postgres import PostgresServer

BACKENDS = ("sqlite", "postgresql")


class Backend:
    def __init__(self, name: str, target: str | Path, tmp_path: Path) -> None:
        self.name = name
        self.target = target  # what Store.open takes
        self.tmp_path = tmp_path
        self._open: list[Store] = []

    @property
    def is_sqlite(self) -> bool:
        return self.name == "sqlite"

    @property
    def path(self) -> Path:
        assert isinstance(self.target, Path), "SQLite only"
        return self.target

    async def open(self, **options: Any) -> Store:
        store = await Store.open(self.target, **options)
        self._open.append(store)
        return store

    async def close_all(self) -> None:
        for store in self._open:
            await store.close()


async def bytes_stored(store: Store, sha: str) -> bool:
    """Whether the image's bytes are physically there (file, or image_blobs row)."""
    if store.images_dir is not None:
        return (store.images_dir / sha[:2] / sha).is_file()
    async with store.database.reading() as tx:
        found = await tx.one(sa.select(image_blobs.c.sha256).where(image_blobs.c.sha256 == sha))
    return found is not None


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    server: PostgresServer | None = None
    target: str | Path
    if request.param == "sqlite":
        target = tmp_path / "data" / "bot.db"
    else:
        server = request.getfixturevalue("postgres_server")
        target = await server.create_database()
    b = Backend(request.param, target, tmp_path)
    try:
        yield b
    finally:
        await b.close_all()
        if server is not None:
            assert isinstance(target, str)
            await server.drop_database(target)
