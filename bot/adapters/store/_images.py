"""Images: content-addressed bytes (files) indexed by the `images` table; retention."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.adapters.store import content as content_json
from bot.adapters.store._base import StoreBase
from bot.adapters.store.files import is_sha256, sha256_hex

log = logging.getLogger(__name__)

_DAY_SECONDS = 86_400.0

# Images some record still needs, whatever their age: a retention purge keeps these.
_EXPIRED_IMAGES = """
WITH active AS (
    SELECT g.id, g.output_image
    FROM generations g LEFT JOIN chains c ON c.id = g.chain_id
    WHERE g.status IN ('queued', 'running')
       OR COALESCE(g.finished_at, g.created_at) >= ?
       OR c.updated_at >= ?
),
kept AS (
    SELECT output_image AS sha FROM active WHERE output_image IS NOT NULL
    UNION
    SELECT gi.image_sha FROM generation_images gi JOIN active a ON a.id = gi.generation_id
    UNION
    SELECT image_sha FROM anchors
)
SELECT i.sha256 FROM images i
WHERE i.purged_at IS NULL
  AND i.last_used_at < ?
  AND NOT EXISTS (SELECT 1 FROM kept k WHERE k.sha = i.sha256)
ORDER BY i.sha256
"""


class ImagesMixin(StoreBase):
    async def put_image(self, data: bytes, mime_type: str) -> str:
        """Store image bytes; returns their sha256 hex. Idempotent (and revives purged bytes)."""
        if not data:
            raise ValueError("no image bytes")
        if not mime_type or len(mime_type) > 100:
            raise ValueError(f"bad mime type {mime_type!r}")
        sha = await asyncio.to_thread(sha256_hex, data)
        async with self._sha_lock(sha):
            await self._files.write(sha, data)
            now = self._now()
            async with self._db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO images (sha256, mime_type, size_bytes, created_at, last_used_at)"
                    " VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (sha256) DO UPDATE"
                    " SET last_used_at = excluded.last_used_at, purged_at = NULL",
                    (sha, mime_type, len(data), now, now),
                )
        return sha

    async def get_image(self, sha: str) -> tuple[bytes, str] | None:
        """(bytes, mime type), or None if unknown, purged by retention, or missing on disk."""
        if not is_sha256(sha):
            return None
        async with self._db.reading() as tx:
            row = await tx.one(
                "SELECT mime_type, size_bytes, purged_at FROM images WHERE sha256 = ?", (sha,)
            )
        if row is None or row["purged_at"] is not None:
            return None
        data = await self._files.read(sha, expected_size=int(row["size_bytes"]))
        if data is None:
            log.warning("image %s is recorded but its file is missing", sha)
            return None
        return data, str(row["mime_type"])

    async def has_image(self, sha: str) -> bool:
        """True if the bytes are stored (not purged) — cheaper than get_image."""
        if not is_sha256(sha):
            return False
        async with self._db.reading() as tx:
            row = await tx.one("SELECT purged_at FROM images WHERE sha256 = ?", (sha,))
        return row is not None and row["purged_at"] is None and await self._files.exists(sha)

    async def hydrate_model_content(self, model_content: dict[str, Any] | None) -> Any:
        """A stored model_content with its image bytes put back (ready for
        `types.Content.model_validate`), or None if any of them was purged."""
        if model_content is None:
            return None
        blobs: dict[str, bytes] = {}
        for sha in content_json.references(model_content):
            found = await self.get_image(sha)
            if found is None:
                return None
            blobs[sha] = found[0]
        return await asyncio.to_thread(content_json.hydrate, model_content, blobs)

    async def purge_expired_images(self, *, retention_days: int, now: float | None = None) -> int:
        """Delete the bytes of images only old, finished, inactive records use; returns how many
        files were deleted. The records stay (get_image then returns None). Anchor images,
        images of queued/running generations and of chains touched within the retention
        window are kept."""
        if retention_days < 0:
            raise ValueError("retention_days must be >= 0")
        now = self._now() if now is None else now
        cutoff = now - retention_days * _DAY_SECONDS
        async with self._db.transaction() as tx:
            shas = [str(r[0]) for r in await tx.all(_EXPIRED_IMAGES, (cutoff, cutoff, cutoff))]
            for sha in shas:
                await tx.execute(
                    "UPDATE images SET purged_at = ? WHERE sha256 = ? AND purged_at IS NULL",
                    (now, sha),
                )
        deleted = 0
        for sha in shas:
            async with self._sha_lock(sha):
                # A put_image since the mark revived the image: its bytes stay.
                async with self._db.reading() as tx:
                    still = await tx.one(
                        "SELECT 1 FROM images WHERE sha256 = ? AND purged_at IS NOT NULL", (sha,)
                    )
                if still is not None and await self._files.delete(sha):
                    deleted += 1
        if deleted:
            log.info("retention: deleted %d image files (%d days)", deleted, retention_days)
        return deleted
