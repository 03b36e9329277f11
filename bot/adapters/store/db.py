"""The connection layer: the one place that knows the database is SQLite.

Everything SQLite-specific lives here: the PRAGMAs, `BEGIN IMMEDIATE`, how a script is split
into statements. The rest of the store speaks portable SQL with `?` parameters, so a PostgreSQL
port replaces this module (and the migration files), not the queries.

One aiosqlite connection serves the whole bot. It runs every statement on one worker thread,
in order, so two coroutines sharing it would otherwise interleave their statements inside each
other's transactions; an asyncio lock makes each transaction (and each read) exclusive.
Statements are short and never wait on file or network I/O while holding the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

Params = Sequence[Any]

# How long a statement waits for another process's write lock before failing.
DEFAULT_BUSY_TIMEOUT_MS = 15_000


class Tx:
    """Statements inside one transaction (or one locked read)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; returns the number of rows it changed."""
        cur = await self._conn.execute(sql, params)
        return cur.rowcount

    async def insert(self, sql: str, params: Params = ()) -> int:
        """Run an INSERT; returns the new row's id."""
        cur = await self._conn.execute(sql, params)
        if cur.lastrowid is None:  # pragma: no cover - sqlite always sets it after an INSERT
            raise RuntimeError("INSERT did not report a row id")
        return cur.lastrowid

    async def all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        # Fetch everything in one hop: a half-read cursor would pin an old WAL snapshot.
        return list(await self._conn.execute_fetchall(sql, params))

    async def one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self.all(sql, params)
        return rows[0] if rows else None

    async def scalar(self, sql: str, params: Params = ()) -> Any:
        row = await self.one(sql, params)
        return None if row is None else row[0]

    async def script(self, sql: str) -> None:
        """Run a multi-statement script inside the current transaction.

        `executescript` would COMMIT first, breaking "one migration, one transaction", so the
        script is split into statements and each is run on its own.
        """
        for statement in split_statements(sql):
            await self.execute(statement)


def split_statements(sql: str) -> Iterator[str]:
    """Split a script into complete statements (triggers with inner `;` stay whole)."""
    buf: list[str] = []
    for line in sql.splitlines(keepends=True):
        buf.append(line)
        text = "".join(buf)
        if sqlite3.complete_statement(text):
            if _has_code(text):
                yield text.strip()
            buf = []
    rest = "".join(buf)
    if _has_code(rest):
        raise ValueError(f"incomplete SQL statement at end of script: {rest.strip()[:80]!r}")


def _has_code(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())


def placeholders(count: int) -> str:
    """`?, ?, ?` for an IN list of `count` values."""
    if count < 1:
        raise ValueError("an IN list needs at least one value")
    return ", ".join("?" * count)


class Database:
    """An open database: one connection, one lock, explicit transactions."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self._closed = False
        self.path = path

    @classmethod
    async def open(cls, path: Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Database:
        """Open (creating the file and its folders), then enable WAL, foreign keys, a timeout."""
        path = Path(path)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; this class issues BEGIN/COMMIT itself.
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            # The timeout first: switching to WAL itself needs a lock another process may hold.
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            rows = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
            mode = str(rows[0][0]).lower() if rows else "?"
            if mode != "wal":
                raise RuntimeError(f"could not switch {path} to WAL journaling (got {mode})")
            # FULL: a committed generation or anchor survives a power cut, not only a crash.
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path)

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                # Fold the WAL back into the main file so a copied .db is complete.
                await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await self._conn.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A write transaction: all or nothing, exclusive of every other use of the store.

        `BEGIN IMMEDIATE` takes SQLite's write lock up front, so a transaction never fails
        half-way with "database is locked" when another process writes too.
        """
        async with self._lock, self._begun("BEGIN IMMEDIATE") as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[Tx]:
        """A read-only snapshot: several SELECTs that see one consistent state."""
        async with self._lock, self._begun("BEGIN") as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def _begun(self, begin: str) -> AsyncIterator[Tx]:
        try:
            await self._conn.execute(begin)
            yield Tx(self._conn)
            await self._conn.execute("COMMIT")
        except BaseException:
            await self._rollback()
            raise

    async def _rollback(self) -> None:
        # Always queue a ROLLBACK: after a cancellation the BEGIN (or a statement) may still be
        # waiting on aiosqlite's worker thread, so `in_transaction` cannot be trusted yet. The
        # queue is FIFO, so this runs after them and before the next transaction's BEGIN.
        try:
            await self._conn.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            if "no transaction is active" not in str(exc):
                log.exception("ROLLBACK failed")

    async def integrity_check(self) -> list[str]:
        """`PRAGMA integrity_check` lines; `["ok"]` when the file is sound."""
        async with self._lock:
            rows = await self._conn.execute_fetchall("PRAGMA integrity_check")
            return [str(r[0]) for r in rows]

    async def foreign_key_violations(self) -> int:
        async with self._lock:
            return len(list(await self._conn.execute_fetchall("PRAGMA foreign_key_check")))
