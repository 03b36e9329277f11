"""Identity anchors: personal and private.

Every query here has `owner_id = ?` in its WHERE clause, including updates and deletes, so no
code path can read, rename or delete another user's anchor — asking for someone else's name
simply finds nothing. Names compare case-insensitively ("Alice" is "alice").
"""

from __future__ import annotations

import sqlalchemy as sa

from bot.adapters.store._base import name_key, prefix_upper_bound
from bot.adapters.store._images import ImagesMixin
from bot.adapters.store.db import Record
from bot.adapters.store.rows import AnchorExistsError, AnchorRow, ImageMissingError
from bot.adapters.store.tables import anchors, generation_images, generations, images

MAX_NAME_LENGTH = 100  # a Discord option value / autocomplete choice holds at most 100 chars

_SELECT = sa.select(
    anchors.c.id, anchors.c.owner_id, anchors.c.name, anchors.c.kind, anchors.c.note,
    anchors.c.image_sha, anchors.c.width, anchors.c.height, anchors.c.created_at,
)  # fmt: skip
a = anchors.c


def _anchor(r: Record) -> AnchorRow:
    return AnchorRow(
        id=int(r["id"]),
        owner_id=int(r["owner_id"]),
        name=r["name"],
        kind=r["kind"],
        note=r["note"],
        image_sha=r["image_sha"],
        width=int(r["width"]),
        height=int(r["height"]),
        created_at=float(r["created_at"]),
    )


def _clean_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise ValueError("an anchor needs a name")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise ValueError(f"anchor names are at most {MAX_NAME_LENGTH} characters")
    return cleaned


class AnchorsMixin(ImagesMixin):
    async def save_anchor(
        self,
        *,
        owner_id: int,
        name: str,
        kind: str,
        note: str | None,
        image_sha: str,
        width: int,
        height: int,
    ) -> AnchorRow:
        """Save a new anchor (image already stored with put_image). Raises AnchorExistsError
        if the owner has one of that name, ImageMissingError if the bytes are not stored."""
        display = _clean_name(name)
        if not kind:
            raise ValueError("an anchor needs a kind")
        if width < 1 or height < 1:
            raise ValueError("anchor images have a positive width and height")
        now = self._now()
        key = name_key(display)
        async with self._db.transaction() as tx:
            image = await tx.one(sa.select(images.c.purged_at).where(images.c.sha256 == image_sha))
            if image is None or image["purged_at"] is not None:
                raise ImageMissingError(f"image {image_sha} is not stored")
            taken = await tx.one(sa.select(a.id).where(a.owner_id == owner_id, a.name_key == key))
            if taken is not None:
                raise AnchorExistsError(display)
            anchor_id = await tx.insert(
                sa.insert(anchors).values(
                    owner_id=owner_id, name=display, name_key=key, kind=kind, note=note,
                    image_sha=image_sha, width=width, height=height, created_at=now,
                )
            )  # fmt: skip
            await tx.execute(
                sa.update(images).where(images.c.sha256 == image_sha).values(last_used_at=now)
            )
        return AnchorRow(anchor_id, owner_id, display, kind, note, image_sha, width, height, now)

    async def get_anchor(self, owner_id: int, name: str) -> AnchorRow | None:
        async with self._db.reading() as tx:
            row = await tx.one(_SELECT.where(a.owner_id == owner_id, a.name_key == name_key(name)))
        return None if row is None else _anchor(row)

    async def list_anchors(self, owner_id: int) -> list[AnchorRow]:
        """The owner's anchors, by name."""
        async with self._db.reading() as tx:
            rows = await tx.all(_SELECT.where(a.owner_id == owner_id).order_by(a.name_key))
        return [_anchor(r) for r in rows]

    async def anchor_names(self, owner_id: int, prefix: str, limit: int = 25) -> list[str]:
        """Autocomplete: the owner's anchor names starting with `prefix` (any case), by name.
        A range scan of the (owner_id, name_key) index, so it stays fast with many anchors."""
        key = name_key(prefix)
        async with self._db.reading() as tx:
            rows = await tx.all(
                sa.select(a.name)
                .where(
                    a.owner_id == owner_id,
                    a.name_key >= key,
                    a.name_key < prefix_upper_bound(key),
                )
                .order_by(a.name_key)
                .limit(max(0, limit))
            )
        return [str(r["name"]) for r in rows]

    async def rename_anchor(self, owner_id: int, old: str, new: str) -> bool:
        """False if the owner has no anchor `old`; AnchorExistsError if `new` is taken.
        Changing only the case of a name is allowed."""
        display = _clean_name(new)
        async with self._db.transaction() as tx:
            row = await tx.one(
                sa.select(a.id).where(a.owner_id == owner_id, a.name_key == name_key(old))
            )
            if row is None:
                return False
            clash = await tx.one(
                sa.select(a.id).where(a.owner_id == owner_id, a.name_key == name_key(display))
            )
            if clash is not None and int(clash["id"]) != int(row["id"]):
                raise AnchorExistsError(display)
            await tx.execute(
                sa.update(anchors)
                .where(a.owner_id == owner_id, a.id == int(row["id"]))
                .values(name=display, name_key=name_key(display))
            )
        return True

    async def delete_anchor(self, owner_id: int, name: str) -> bool:
        """Delete the owner's anchor and its bytes (see _forget_anchor_image). False if the
        owner has no anchor of that name."""
        async with self._db.transaction() as tx:
            row = await tx.one(
                sa.select(a.id, a.image_sha).where(
                    a.owner_id == owner_id, a.name_key == name_key(name)
                )
            )
            if row is None:
                return False
            await tx.execute(
                sa.delete(anchors).where(a.owner_id == owner_id, a.id == int(row["id"]))
            )
        await self._forget_anchor_image(str(row["image_sha"]))
        return True

    async def _forget_anchor_image(self, sha: str) -> None:
        """A deleted anchor's bytes go, even where old generations used them as an input
        (privacy: the face is gone; rerolling those says the image is no longer stored).
        Kept only while another anchor holds the same bytes or a generation produced them
        (an anchor saved from a result, which is in the channel anyway). The record of an
        image old generations refer to stays, marked purged, like after retention."""
        gi = generation_images.c
        kept_query = sa.select(
            sa.or_(
                sa.exists().where(a.image_sha == sha),
                sa.exists().where(generations.c.output_image == sha),
                sa.exists().where(gi.image_sha == sha, gi.role == "content"),
            )
        )
        async with self._sha_lock(sha):
            async with self._db.transaction() as tx:
                if await tx.scalar(kept_query):
                    return
                await self._drop_bytes_in(tx, sha)
                used = await tx.one(sa.select(gi.image_sha).where(gi.image_sha == sha).limit(1))
                if used is None:
                    await tx.execute(sa.delete(images).where(images.c.sha256 == sha))
                else:
                    await tx.execute(
                        sa.update(images)
                        .where(images.c.sha256 == sha)
                        .values(purged_at=self._now())
                    )
            await self._drop_bytes_after(sha)
