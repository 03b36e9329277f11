"""Content-addressed image files: <images_dir>/ab/<sha256>.

Why files and not BLOBs: a 4K PNG is 10–30 MB. As BLOBs they would bloat the database and its
WAL, make every backup, VACUUM and integrity check slow, and push large values through the one
connection every other query waits on. As files they are written once, atomically (a temporary
file, fsync, `os.replace`), read without touching the database, and deleted individually when
retention or an anchor deletion says so. Naming a file by its sha256 makes writes idempotent and
deduplicates an image used many times (an anchor in a hundred generations is stored once).

All file I/O runs in a worker thread (`asyncio.to_thread`) so the event loop never stalls.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import time
import uuid
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{64}$")
_TMP_SUFFIX = ".tmp"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_sha256(value: str) -> bool:
    """A well-formed lowercase sha256 hex digest (also what keeps paths inside the folder)."""
    return bool(_SHA.match(value))


class ImageFiles:
    """The files themselves. Knows nothing about the database."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, sha: str) -> Path:
        if not is_sha256(sha):
            raise ValueError(f"not a sha256 digest: {sha[:80]!r}")
        return self.root / sha[:2] / sha

    async def exists(self, sha: str) -> bool:
        return await asyncio.to_thread(self.path_for(sha).is_file)

    async def write(self, sha: str, data: bytes) -> None:
        """Write the bytes unless a complete copy is already there."""
        await asyncio.to_thread(self._write_sync, self.path_for(sha), data)

    async def read(self, sha: str, expected_size: int | None = None) -> bytes | None:
        """The bytes, or None if the file is missing (or the wrong size: never half an image)."""
        return await asyncio.to_thread(self._read_sync, self.path_for(sha), expected_size)

    async def delete(self, sha: str) -> bool:
        """Remove the file; True if it existed."""
        return await asyncio.to_thread(self._delete_sync, self.path_for(sha))

    async def sweep_temporary(self, older_than_seconds: float = 3600.0) -> int:
        """Remove temporary files left by a crash mid-write; returns how many."""
        return await asyncio.to_thread(self._sweep_sync, older_than_seconds)

    # -- blocking helpers, run in a thread ---------------------------------------------------

    @staticmethod
    def _write_sync(path: Path, data: bytes) -> None:
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size == len(data):
                return  # content-addressed: same name, same bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{_TMP_SUFFIX}")
        try:
            with open(tmp, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)  # atomic: readers see no file or the whole file
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(path.parent)

    @staticmethod
    def _read_sync(path: Path, expected_size: int | None) -> bytes | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if expected_size is not None and len(data) != expected_size:
            return None
        return data

    @staticmethod
    def _delete_sync(path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def _sweep_sync(self, older_than_seconds: float) -> int:
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        for tmp in self.root.glob(f"*/.*{_TMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
        return removed


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
