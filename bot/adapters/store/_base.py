"""What every part of the store shares: the database, the image files, the clock, helpers."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from bot.adapters.store.db import Database
from bot.adapters.store.files import ImageFiles

Clock = Callable[[], float]

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LOCK_STRIPES = 64


def to_json(value: Any) -> str:
    # Key order is kept (no sort_keys): the stored spec is the spec that was sent.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def name_key(name: str) -> str:
    """How names compare: case-insensitively, ignoring surrounding spaces."""
    return name.strip().casefold()


def check_day(day: str) -> str:
    if not _DAY.match(day):
        raise ValueError(f"day must be YYYY-MM-DD, got {day!r}")
    datetime.strptime(day, "%Y-%m-%d")  # a real date, not 2026-13-45
    return day


def prefix_upper_bound(prefix: str) -> str:
    """The smallest string above every string starting with `prefix`.

    `key >= prefix AND key < bound` is a prefix match that any B-tree index can serve, unlike
    LIKE (whose index use depends on collation settings and escapes `%` and `_` badly).
    """
    return prefix + "\U0010ffff"


class StoreBase:
    """State and helpers shared by the store's parts (see bot.adapters.store.store.Store)."""

    def __init__(self, db: Database, files: ImageFiles | None, clock: Clock) -> None:
        self._db = db
        self._files = files  # None: image bytes live in the database (image_blobs)
        self._clock = clock
        # Striped per-sha locks: writing an image's file and row, and deleting them, never
        # interleave for the same sha (so a purge cannot delete bytes a put just revived).
        self._sha_locks = [asyncio.Lock() for _ in range(_LOCK_STRIPES)]

    @property
    def database(self) -> Database:
        return self._db

    @property
    def images_dir(self) -> Path | None:
        """Where image files are kept; None when the bytes live in the database."""
        return None if self._files is None else self._files.root

    @property
    def images_in_database(self) -> bool:
        return self._files is None

    def _insert(self, table: Any) -> Any:
        """INSERT that knows ON CONFLICT for this engine (SQLite and PostgreSQL spell it alike)."""
        if self._db.is_sqlite:
            return sqlite.insert(table)
        return postgresql.insert(table)

    def _now(self) -> float:
        return float(self._clock())

    def _today(self) -> str:
        return datetime.fromtimestamp(self._now(), UTC).strftime("%Y-%m-%d")

    def _sha_lock(self, sha: str) -> asyncio.Lock:
        return self._sha_locks[int(sha[:8], 16) % _LOCK_STRIPES]
