"""Identity anchors: personal and private.

Every query here has `owner_id = ?` in its WHERE clause, including updates and deletes, so no
code path can read, rename or delete another user's anchor — asking for someone else's name
simply finds nothing. Names compare case-insensitively ("Alice" is "alice").
"""

from __future__ import annotations

import sqlite3

from bot.adapters.store._base import name_key, prefix_upper_bound
from bot.adapters.store._images import ImagesMixin
from bot.adapters.store.rows import AnchorExistsError, AnchorRow, ImageMissingError

MAX_NAME_LENGTH = 100  # a Discord option value / autocomplete choice holds at most 100 chars

_COLUMNS = "id, owner_id, name, kind, note, image_sha, width, height, created_at"


def _anchor(r: sqlite3.Row) -> AnchorRow:
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
        async with self._db.transaction() as tx:
            image = await tx.one("SELECT purged_at FROM images WHERE sha256 = ?", (image_sha,))
            if image is None or image["purged_at"] is not None:
                raise ImageMissingError(f"image {image_sha} is not stored")
            taken = await tx.one(
                "SELECT 1 FROM anchors WHERE owner_id = ? AND name_key = ?",
                (owner_id, name_key(display)),
            )
            if taken is not None:
                raise AnchorExistsError(display)
            anchor_id = await tx.insert(
                "INSERT INTO anchors (owner_id, name, name_key, kind, note, image_sha, width,"
                " height, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (owner_id, display, name_key(display), kind, note, image_sha, width, height, now),
            )
            await tx.execute(
                "UPDATE images SET last_used_at = ? WHERE sha256 = ?", (now, image_sha)
            )
        return AnchorRow(anchor_id, owner_id, display, kind, note, image_sha, width, height, now)

    async def get_anchor(self, owner_id: int, name: str) -> AnchorRow | None:
        async with self._db.reading() as tx:
            row = await tx.one(
                f"SELECT {_COLUMNS} FROM anchors WHERE owner_id = ? AND name_key = ?",
                (owner_id, name_key(name)),
            )
        return None if row is None else _anchor(row)

    async def list_anchors(self, owner_id: int) -> list[AnchorRow]:
        """The owner's anchors, by name."""
        async with self._db.reading() as tx:
            rows = await tx.all(
                f"SELECT {_COLUMNS} FROM anchors WHERE owner_id = ? ORDER BY name_key",
                (owner_id,),
            )
        return [_anchor(r) for r in rows]

    async def count_anchors(self, owner_id: int) -> int:
        async with self._db.reading() as tx:
            return int(
                await tx.scalar("SELECT COUNT(*) FROM anchors WHERE owner_id = ?", (owner_id,))
            )

    async def anchor_names(self, owner_id: int, prefix: str, limit: int = 25) -> list[str]:
        """Autocomplete: the owner's anchor names starting with `prefix` (any case), by name.
        A range scan of the (owner_id, name_key) index, so it stays fast with many anchors."""
        key = name_key(prefix)
        async with self._db.reading() as tx:
            rows = await tx.all(
                "SELECT name FROM anchors WHERE owner_id = ? AND name_key >= ? AND name_key < ?"
                " ORDER BY name_key LIMIT ?",
                (owner_id, key, prefix_upper_bound(key), max(0, limit)),
            )
        return [str(r["name"]) for r in rows]

    async def rename_anchor(self, owner_id: int, old: str, new: str) -> bool:
        """False if the owner has no anchor `old`; AnchorExistsError if `new` is taken.
        Changing only the case of a name is allowed."""
        display = _clean_name(new)
        async with self._db.transaction() as tx:
            row = await tx.one(
                "SELECT id FROM anchors WHERE owner_id = ? AND name_key = ?",
                (owner_id, name_key(old)),
            )
            if row is None:
                return False
            clash = await tx.one(
                "SELECT id FROM anchors WHERE owner_id = ? AND name_key = ?",
                (owner_id, name_key(display)),
            )
            if clash is not None and int(clash["id"]) != int(row["id"]):
                raise AnchorExistsError(display)
            await tx.execute(
                "UPDATE anchors SET name = ?, name_key = ? WHERE owner_id = ? AND id = ?",
                (display, name_key(display), owner_id, int(row["id"])),
            )
        return True

    async def delete_anchor(self, owner_id: int, name: str) -> bool:
        """Delete the owner's anchor and its bytes (see _forget_anchor_image). False if the
        owner has no anchor of that name."""
        async with self._db.transaction() as tx:
            row = await tx.one(
                "SELECT id, image_sha FROM anchors WHERE owner_id = ? AND name_key = ?",
                (owner_id, name_key(name)),
            )
            if row is None:
                return False
            await tx.execute(
                "DELETE FROM anchors WHERE owner_id = ? AND id = ?", (owner_id, int(row["id"]))
            )
        await self._forget_anchor_image(str(row["image_sha"]))
        return True

    async def _forget_anchor_image(self, sha: str) -> None:
        """A deleted anchor's bytes go, even where old generations used them as an input
        (privacy: the face is gone; rerolling those says the image is no longer stored).
        Kept only while another anchor holds the same bytes or a generation produced them
        (an anchor saved from a result, which is in the channel anyway). The record of an
        image old generations refer to stays, marked purged, like after retention."""
        async with self._sha_lock(sha):
            async with self._db.transaction() as tx:
                kept = await tx.one(
                    "SELECT 1 WHERE EXISTS (SELECT 1 FROM anchors WHERE image_sha = ?)"
                    " OR EXISTS (SELECT 1 FROM generations WHERE output_image = ?)"
                    " OR EXISTS (SELECT 1 FROM generation_images"
                    " WHERE image_sha = ? AND role = 'content')",
                    (sha, sha, sha),
                )
                if kept is not None:
                    return
                used = await tx.one(
                    "SELECT 1 FROM generation_images WHERE image_sha = ?", (sha,)
                )
                if used is None:
                    await tx.execute("DELETE FROM images WHERE sha256 = ?", (sha,))
                else:
                    await tx.execute(
                        "UPDATE images SET purged_at = ? WHERE sha256 = ?", (self._now(), sha)
                    )
            await self._files.delete(sha)
