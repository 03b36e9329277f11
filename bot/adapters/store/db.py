"""The connection layer: SQLAlchemy's async engine over aiosqlite (SQLite) or asyncpg (PostgreSQL).

Everything engine-specific lives here; the rest of the store speaks SQLAlchemy Core.

SQLite (the default: one file, nothing to install, one bot process): WAL journaling, foreign
keys on, a busy timeout for other processes' locks, `synchronous = FULL`. Write transactions
start with `BEGIN IMMEDIATE`, taking SQLite's write lock up front, so a transaction that reads
and then writes can never fail half-way with "database is locked" when another process writes
too. In one process, every transaction and read takes its turn on one connection, in call
order (FIFO): the store behaves as one ordered stream of operations, which the bot relies on
(two requests arriving together are recorded in arrival order), and nothing spins in SQLite's
busy handler against its own process. The one exception is urgent work (`urgent=True`: the few
short transactions between a Gemini answer and the next call), which goes before ordinary work
still waiting, so a slot freed at Gemini is not left idle behind a queue of result writes. Each statement is short; image bytes
are files, read and written outside the lock.

PostgreSQL (`postgresql://…`, shared by several bot processes): READ COMMITTED write
transactions; where several processes race for one decision (admitting a request against a
quota, claiming a job, a Gemini slot) the transaction first takes a transaction-scoped advisory
lock named after what it decides (`Tx.lock`). Reads run in REPEATABLE READ, READ ONLY: several
SELECTs see one consistent snapshot, as on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.base import Executable

log = logging.getLogger(__name__)

Params = Sequence[Any] | Mapping[str, Any]

# How long a statement waits for another process's write lock before failing (SQLite).
DEFAULT_BUSY_TIMEOUT_MS = 15_000

_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")


class Record:
    """A result row: by position (`r[0]`), by column name (`r["id"]`) or attribute (`r.id`)."""

    __slots__ = ("_row",)

    def __init__(self, row: Row[Any]) -> None:
        self._row = row

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._row._mapping[key]
        return self._row[key]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._row._mapping[name]
        except KeyError:
            raise AttributeError(name) from None

    def __iter__(self) -> Iterator[Any]:
        return iter(tuple(self._row))

    def __len__(self) -> int:
        return len(self._row)

    def keys(self) -> list[str]:
        return list(self._row._mapping.keys())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return tuple(self._row) == tuple(other._row)
        return tuple(self._row) == other

    def __hash__(self) -> int:
        return hash(tuple(self._row))

    def __repr__(self) -> str:
        return f"Record({dict(self._row._mapping)!r})"


def _qmark_to_named(sql: str, params: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """`?` placeholders (outside quotes and comments) -> `:p0, :p1, …` for `sa.text`."""
    out: list[str] = []
    values: dict[str, Any] = {}
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:  # doubled quote inside
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i : end + 1].replace(":", "\\:"))  # no bind parameters in quotes
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end])
            i = end
        elif ch == "?":
            name = f"p{len(values)}"
            if len(values) >= len(params):
                raise ValueError("more ? placeholders than parameters")
            values[name] = params[len(values)]
            out.append(f":{name}")
            i += 1
        elif ch == ":":
            out.append("\\:")  # a literal colon (e.g. '::' casts), not a bind parameter
            i += 1
        else:
            out.append(ch)
            i += 1
    if len(values) != len(params):
        raise ValueError(f"{len(params)} parameters for {len(values)} ? placeholders")
    return "".join(out), values


def _statement(sql: str | Executable, params: Params) -> tuple[Executable, Any]:
    if isinstance(sql, str):
        if isinstance(params, Mapping):
            return sa.text(sql), dict(params)
        text, values = _qmark_to_named(sql, list(params))
        return sa.text(text), values
    if isinstance(params, Mapping):
        return sql, dict(params) or None
    if params and all(isinstance(p, Mapping) for p in params):
        return sql, [dict(p) for p in params]  # executemany
    if params:
        raise TypeError("a Core statement takes its parameters as a mapping (or inline)")
    return sql, None


class Tx:
    """Statements inside one transaction (or one read snapshot).

    Each method takes a SQLAlchemy Core statement, or SQL text with `?` placeholders and a
    sequence of values (the form tests and one-off maintenance use).
    """

    def __init__(self, conn: AsyncConnection, dialect: str) -> None:
        self._conn = conn
        self.dialect = dialect

    @property
    def connection(self) -> AsyncConnection:
        return self._conn

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def execute(self, sql: str | Executable, params: Params = ()) -> int:
        """Run a statement; returns the number of rows it changed."""
        statement, values = _statement(sql, params)
        result = await self._conn.execute(statement, values)
        return int(result.rowcount)

    async def insert(self, sql: str | Executable, params: Params = ()) -> int:
        """Run an INSERT; returns the new row's id."""
        statement, values = _statement(sql, params)
        result = await self._conn.execute(statement, values)
        if isinstance(sql, str):
            if result.lastrowid is None:  # pragma: no cover - both drivers report it
                raise RuntimeError("INSERT did not report a row id")
            return int(result.lastrowid)
        key = result.inserted_primary_key
        if key is None or key[0] is None:  # pragma: no cover
            raise RuntimeError("INSERT did not report a row id")
        return int(key[0])

    async def all(self, sql: str | Executable, params: Params = ()) -> list[Record]:
        # Fetch everything in one hop: a half-read cursor would pin an old snapshot.
        statement, values = _statement(sql, params)
        result = await self._conn.execute(statement, values)
        return [Record(r) for r in result.fetchall()]

    async def one(self, sql: str | Executable, params: Params = ()) -> Record | None:
        rows = await self.all(sql, params)
        return rows[0] if rows else None

    async def scalar(self, sql: str | Executable, params: Params = ()) -> Any:
        row = await self.one(sql, params)
        return None if row is None else row[0]

    async def script(self, sql: str) -> None:
        """Run a multi-statement script (no parameters) inside the current transaction."""
        for statement in split_statements(sql):
            await self._conn.exec_driver_sql(statement)

    async def lock(self, key: str) -> None:
        """Serialise this transaction with every other one that locks `key`, in any process,
        until it ends. PostgreSQL: a transaction-scoped advisory lock. SQLite: nothing to do,
        a write transaction already holds the database's one write lock."""
        if self.dialect == "postgresql":
            await self._conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                {"key": key},
            )


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


def is_database_url(target: str | Path) -> bool:
    return isinstance(target, str) and "://" in target


def _async_url(url: str) -> sa.URL:
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if parsed.drivername in _POSTGRES_SCHEMES or backend in ("postgresql", "postgres"):
        if parsed.drivername not in ("postgresql", "postgres", "postgresql+asyncpg"):
            raise ValueError(f"use postgresql://… (asyncpg), not {parsed.drivername}://")
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(
        f"DATABASE_URL must be postgresql://…, not {parsed.drivername}:// "
        "(leave it unset for the SQLite file at DATABASE_PATH)"
    )


class _Turns:
    """Turns on SQLite's one connection: first come, first served, except that urgent work
    goes before ordinary work still waiting (never before the holder: no preemption)."""

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._ordinary: deque[asyncio.Future[None]] = deque()

    @contextlib.asynccontextmanager
    async def turn(self, *, urgent: bool = False) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if not self._held and not self._urgent and not self._ordinary:
            self._held = True
            return
        waiter = asyncio.get_running_loop().create_future()
        line = self._urgent if urgent else self._ordinary
        line.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed the turn, then cancelled: pass it on
            elif waiter in line:
                line.remove(waiter)
            raise

    def _release(self) -> None:
        for line in (self._urgent, self._ordinary):
            while line:
                waiter = line.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # the turn passes on; still held
                    return
        self._held = False


class Database:
    """An open database: an async engine, explicit transactions, engine-specific set-up."""

    def __init__(self, engine: AsyncEngine, *, path: Path | None) -> None:
        self._engine = engine
        self.dialect: str = engine.dialect.name
        self.path = path  # the SQLite file; None for a server
        self._turns = _Turns()  # SQLite's one connection, in turn
        self._writes: set[asyncio.Future[None]] = set()  # this process's open write transactions
        self._conn: AsyncConnection | None = None  # SQLite's one connection
        self._closed = False

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def describe(self) -> str:
        """For logs: the file, or the server without its password."""
        if self.path is not None:
            return str(self.path)
        return self._engine.url.render_as_string(hide_password=True)

    @classmethod
    async def open(
        cls,
        target: str | Path,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        pool_size: int = 5,
    ) -> Database:
        """A SQLite file (a path; folders are created) or a `postgresql://…` server URL.
        `pool_size`: PostgreSQL connections kept open (twice as many more on demand)."""
        if isinstance(target, str) and "://" in target:
            url = sa.make_url(target)
            if url.get_backend_name() == "sqlite":
                file = url.database
                if not file:
                    raise ValueError("a sqlite:/// URL needs a file path")
                return await cls._open_sqlite(Path(file), busy_timeout_ms)
            return await cls._open_postgres(target, pool_size)
        return await cls._open_sqlite(Path(target), busy_timeout_ms)

    @classmethod
    async def _open_sqlite(cls, path: Path, busy_timeout_ms: int) -> Database:
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        engine = create_async_engine(
            sa.URL.create("sqlite+aiosqlite", database=str(path)),
            pool_size=1,  # one connection: the lock hands it out in turn
            max_overflow=0,
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _configure(dbapi_connection: Any, _record: Any) -> None:
            # No implicit transactions: this module issues BEGIN / BEGIN IMMEDIATE itself.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                # The timeout first: switching to WAL needs a lock another process may hold.
                cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
                cursor.execute("PRAGMA journal_mode = WAL")
                row = cursor.fetchone()
                mode = str(row[0]).lower() if row else "?"
                if mode != "wal":
                    raise RuntimeError(f"could not switch {path} to WAL journaling (got {mode})")
                # FULL: a committed generation or anchor survives a power cut, not only a crash.
                cursor.execute("PRAGMA synchronous = FULL")
                cursor.execute("PRAGMA foreign_keys = ON")
            finally:
                cursor.close()

        db = cls(engine, path=path)
        try:
            async with db.reading() as tx:  # connect now: a bad path fails here, not later
                await tx.scalar("SELECT 1")
        except BaseException:
            await engine.dispose()
            raise
        return db

    @classmethod
    async def _open_postgres(cls, url: str, pool_size: int) -> Database:
        engine = create_async_engine(
            _async_url(url), pool_size=pool_size, max_overflow=2 * pool_size, pool_pre_ping=True
        )
        db = cls(engine, path=None)
        try:
            async with db.reading() as tx:
                await tx.scalar("SELECT 1")
        except BaseException:
            await engine.dispose()
            raise
        return db

    async def close(self) -> None:
        """Close every connection (idempotent). SQLite: fold the WAL back into the main file
        first, so a copied .db is complete."""
        if self._closed:
            return
        self._closed = True
        if self.is_sqlite:
            async with self._turns.turn():
                conn, self._conn = self._conn, None
                with contextlib.suppress(Exception):
                    if conn is None:
                        conn = await self._engine.connect()
                    await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                if conn is not None:
                    await conn.close()
        await self._engine.dispose()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the database {self.describe()} is closed")

    @contextlib.asynccontextmanager
    async def transaction(self, *, urgent: bool = False) -> AsyncIterator[Tx]:
        """A write transaction: all or nothing. SQLite: `BEGIN IMMEDIATE`, exclusive of every
        other writer in any process (and, in this one, of everything else). `urgent`: SQLite
        runs it before this process's waiting ordinary work (keep such transactions short);
        PostgreSQL runs transactions side by side anyway."""
        self._check_open()
        done = asyncio.get_running_loop().create_future()
        self._writes.add(done)
        try:
            if self.is_sqlite:
                async with self._turns.turn(urgent=urgent), self._sqlite("BEGIN IMMEDIATE") as tx:
                    yield tx
            else:
                async with self._engine.connect() as conn, conn.begin():
                    yield Tx(conn, self.dialect)
        finally:
            self._writes.discard(done)
            done.set_result(None)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[Tx]:
        """A read-only snapshot: several SELECTs that see one consistent state.

        It sees every write this process started (or queued) before it, on both engines:
        SQLite takes its turn on the one lock; PostgreSQL, whose reads run concurrently on the
        pool, first waits for this process's earlier write transactions to end. (The bot relies
        on it: a result is posted while its message id is being recorded, and a reply to it can
        arrive at once.)"""
        self._check_open()
        earlier = [] if self.is_sqlite else list(self._writes)
        if earlier:
            await asyncio.wait(earlier)
        if self.is_sqlite:
            async with self._turns.turn(), self._sqlite("BEGIN") as tx:
                yield tx
        else:
            async with self._engine.connect() as conn:
                await conn.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
                async with conn.begin():
                    yield Tx(conn, self.dialect)

    @contextlib.asynccontextmanager
    async def _sqlite(self, begin: str) -> AsyncIterator[Tx]:
        # One connection for the store's life, used in turn under the lock (no pool checkout,
        # no reset per operation: a read costs about what it did on bare aiosqlite).
        if self._conn is None:
            self._conn = await self._engine.connect()
        conn = self._conn
        try:
            # SQLAlchemy's own begin is a no-op for the driver (isolation_level None), so this
            # statement is what opens the transaction; commit()/rollback() end it.
            await conn.exec_driver_sql(begin)
            yield Tx(conn, self.dialect)
        except BaseException:
            # After a cancellation the BEGIN or a statement may still be running on aiosqlite's
            # thread; the ROLLBACK queues behind it (its queue is FIFO), and is a no-op when no
            # transaction began.
            await conn.rollback()
            raise
        await conn.commit()

    async def integrity_check(self) -> list[str]:
        """SQLite: `PRAGMA integrity_check` lines, `["ok"]` when the file is sound. PostgreSQL
        checks its own pages; a query that succeeds is all this can say."""
        async with self.reading() as tx:
            if not self.is_sqlite:
                await tx.scalar("SELECT 1")
                return ["ok"]
            return [str(r[0]) for r in await tx.all("PRAGMA integrity_check")]

    async def foreign_key_violations(self) -> int:
        """SQLite: rows breaking a foreign key (`PRAGMA foreign_key_check`). PostgreSQL never
        lets one in: 0."""
        if not self.is_sqlite:
            return 0
        async with self.reading() as tx:
            return len(await tx.all("PRAGMA foreign_key_check"))


def check_identifier(name: str) -> str:
    """Table and column names built into SQL text are code constants; this guards the rest."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"not an identifier: {name!r}")
    return name
