"""Images: content-addressed bytes indexed by the `images` table; retention.

Where the bytes live is the one thing that differs between deployments, and only here:
content-addressed files beside the SQLite database (see bot.adapters.store.files for why), or
the `image_blobs` table (PostgreSQL: several processes, no shared disk). The index, the
references and retention are the same code for both.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import sqlalchemy as sa

from bot.adapters.store import content as content_json
from bot.adapters.store._base import StoreBase
from bot.adapters.store.db import Tx
from bot.adapters.store.files import is_sha256, sha256_hex
from bot.adapters.store.tables import (
    anchors,
    chains,
    generation_images,
    generations,
    image_blobs,
    images,
)

log = logging.getLogger(__name__)

_DAY_SECONDS = 86_400.0


def _expired_images(cutoff: float) -> sa.Select[Any]:
    """Images only old, finished, inactive records use (a retention purge deletes their bytes).

    Kept whatever their age: anchor images, images of queued/running generations, and those
    of generations finished or chains touched since `cutoff`."""
    g, c = generations.alias("g"), chains.alias("c")
    active = (
        sa.select(g.c.id, g.c.output_image)
        .select_from(g.outerjoin(c, c.c.id == g.c.chain_id))
        .where(
            sa.or_(
                g.c.status.in_(("queued", "running")),
                sa.func.coalesce(g.c.finished_at, g.c.created_at) >= cutoff,
                c.c.updated_at >= cutoff,
            )
        )
        .cte("active")
    )
    gi = generation_images.alias("gi")
    kept = sa.union(
        sa.select(active.c.output_image.label("sha")).where(active.c.output_image.is_not(None)),
        sa.select(gi.c.image_sha).select_from(gi.join(active, active.c.id == gi.c.generation_id)),
        sa.select(anchors.c.image_sha),
    ).cte("kept")
    return (
        sa.select(images.c.sha256)
        .where(
            images.c.purged_at.is_(None),
            images.c.last_used_at < cutoff,
            ~sa.exists().where(kept.c.sha == images.c.sha256),
        )
        .order_by(images.c.sha256)
    )


class ImagesMixin(StoreBase):
    async def put_image(self, data: bytes, mime_type: str) -> str:
        """Store image bytes; returns their sha256 hex. Idempotent (and revives purged bytes)."""
        if not data:
            raise ValueError("no image bytes")
        if not mime_type or len(mime_type) > 100:
            raise ValueError(f"bad mime type {mime_type!r}")
        sha = await asyncio.to_thread(sha256_hex, data)
        async with self._sha_lock(sha):
            if self._files is not None:
                # The file first: a row never points at bytes that are not there yet.
                await self._files.write(sha, data)
            now = self._now()
            stmt = self._insert(images).values(
                sha256=sha, mime_type=mime_type, size_bytes=len(data), created_at=now,
                last_used_at=now,
            )  # fmt: skip
            stmt = stmt.on_conflict_do_update(
                index_elements=[images.c.sha256],
                set_={"last_used_at": stmt.excluded.last_used_at, "purged_at": None},
            )
            async with self._db.transaction() as tx:
                await tx.execute(stmt)
                if self._files is None:
                    await tx.execute(
                        self._insert(image_blobs)
                        .values(sha256=sha, data=data)
                        .on_conflict_do_nothing(index_elements=[image_blobs.c.sha256])
                    )
        return sha

    async def get_image(self, sha: str) -> tuple[bytes, str] | None:
        """(bytes, mime type), or None if unknown, purged by retention, or missing."""
        if not is_sha256(sha):
            return None
        query = sa.select(images.c.mime_type, images.c.size_bytes, images.c.purged_at)
        if self._files is None:
            query = query.add_columns(image_blobs.c.data).select_from(
                images.outerjoin(image_blobs, image_blobs.c.sha256 == images.c.sha256)
            )
        async with self._db.reading() as tx:
            row = await tx.one(query.where(images.c.sha256 == sha))
        if row is None or row.purged_at is not None:
            return None
        if self._files is None:
            data = None if row.data is None else bytes(row.data)
            if data is not None and len(data) != int(row.size_bytes):
                data = None
        else:
            data = await self._files.read(sha, expected_size=int(row.size_bytes))
        if data is None:
            log.warning("image %s is recorded but its bytes are missing", sha)
            return None
        return data, str(row.mime_type)

    async def has_image(self, sha: str) -> bool:
        """True if the bytes are stored (not purged) — cheaper than get_image."""
        if not is_sha256(sha):
            return False
        query = sa.select(images.c.purged_at).where(images.c.sha256 == sha)
        if self._files is None:
            query = query.add_columns(
                sa.exists().where(image_blobs.c.sha256 == images.c.sha256).label("stored")
            )
        async with self._db.reading() as tx:
            row = await tx.one(query)
        if row is None or row.purged_at is not None:
            return False
        if self._files is None:
            return bool(row.stored)
        return await self._files.exists(sha)

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

    async def _drop_bytes_in(self, tx: Tx, sha: str) -> None:
        """Inside the transaction that marks the image purged (or deletes its record)."""
        await tx.execute(sa.delete(image_blobs).where(image_blobs.c.sha256 == sha))

    async def _drop_bytes_after(self, sha: str) -> bool:
        """After that transaction (files only); True if a file was deleted."""
        return self._files is not None and await self._files.delete(sha)

    async def purge_expired_images(self, *, retention_days: int, now: float | None = None) -> int:
        """Delete the bytes of images only old, finished, inactive records use; returns how many
        were deleted. The records stay (get_image then returns None). Anchor images, images of
        queued/running generations and of chains touched within the retention window are
        kept."""
        if retention_days < 0:
            raise ValueError("retention_days must be >= 0")
        now = self._now() if now is None else now
        cutoff = now - retention_days * _DAY_SECONDS
        async with self._db.transaction() as tx:
            shas = [str(r[0]) for r in await tx.all(_expired_images(cutoff))]
            marked: list[str] = []
            for sha in shas:
                # Re-checked row by row: on PostgreSQL a put_image in another process may have
                # revived the image since the SELECT (it moves last_used_at).
                if await tx.execute(
                    sa.update(images)
                    .where(
                        images.c.sha256 == sha,
                        images.c.purged_at.is_(None),
                        images.c.last_used_at < cutoff,
                    )
                    .values(purged_at=now)
                ):
                    marked.append(sha)
                    await self._drop_bytes_in(tx, sha)
        shas = marked
        if self._files is None:
            deleted = len(shas)  # gone with the transaction that marked them
        else:
            deleted = 0
            for sha in shas:
                async with self._sha_lock(sha):
                    # A put_image since the mark revived the image: its bytes stay.
                    async with self._db.reading() as tx:
                        still = await tx.one(
                            sa.select(images.c.sha256).where(
                                images.c.sha256 == sha, images.c.purged_at.is_not(None)
                            )
                        )
                    if still is not None and await self._drop_bytes_after(sha):
                        deleted += 1
        if deleted:
            log.info("retention: deleted %d images' bytes (%d days)", deleted, retention_days)
        return deleted
