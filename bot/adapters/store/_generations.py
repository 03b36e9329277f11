"""Generations: one row per request, from queued to done/failed, plus the messages showing it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

from bot.adapters.store import content as content_json
from bot.adapters.store._base import from_json, to_json
from bot.adapters.store._images import ImagesMixin
from bot.adapters.store.db import Tx, placeholders
from bot.adapters.store.rows import FAILED_STATUSES, GENERATION_KINDS, GenerationRow

GENERATION_COLUMNS = (
    "g.id, g.user_id, g.guild_id, g.channel_id, g.message_id, g.kind, g.spec, g.model, g.size,"
    " g.aspect, g.summary, g.status, g.error_kind, g.error, g.output_image, g.output_mime,"
    " g.model_text, g.model_content, g.prompt_tokens, g.output_tokens, g.thoughts_tokens,"
    " g.cost, g.model_version, g.seconds, g.warnings, g.chain_id, g.parent_id, g.step,"
    " g.batch_id, g.private, g.public, g.created_at, g.started_at, g.finished_at,"
    " g.estimated_cost"
)
_SELECT = f"SELECT {GENERATION_COLUMNS} FROM generations g"
_OPEN = "('queued', 'running')"


async def load_generations(tx: Tx, rows: Sequence[sqlite3.Row]) -> list[GenerationRow]:
    """Rows of `GENERATION_COLUMNS` -> GenerationRow, with their input images attached."""
    if not rows:
        return []
    ids = [int(r["id"]) for r in rows]
    inputs: dict[int, list[str]] = {i: [] for i in ids}
    for r in await tx.all(
        "SELECT generation_id, image_sha FROM generation_images"
        f" WHERE role = 'input' AND generation_id IN ({placeholders(len(ids))})"
        " ORDER BY generation_id, position",
        ids,
    ):
        inputs[int(r["generation_id"])].append(str(r["image_sha"]))
    return [_row(r, inputs[int(r["id"])]) for r in rows]


def _row(r: sqlite3.Row, input_images: list[str]) -> GenerationRow:
    return GenerationRow(
        id=int(r["id"]),
        user_id=int(r["user_id"]),
        guild_id=r["guild_id"],
        channel_id=int(r["channel_id"]),
        message_id=r["message_id"],
        kind=r["kind"],
        spec=from_json(r["spec"]),
        model=r["model"],
        size=r["size"],
        aspect=r["aspect"],
        summary=r["summary"],
        status=r["status"],
        error_kind=r["error_kind"],
        error=r["error"],
        input_images=input_images,
        output_image=r["output_image"],
        output_mime=r["output_mime"],
        model_text=r["model_text"],
        model_content=from_json(r["model_content"]),
        prompt_tokens=int(r["prompt_tokens"]),
        output_tokens=int(r["output_tokens"]),
        thoughts_tokens=int(r["thoughts_tokens"]),
        cost=float(r["cost"]),
        model_version=r["model_version"],
        seconds=r["seconds"],
        warnings=list(from_json(r["warnings"]) or []),
        chain_id=r["chain_id"],
        parent_id=r["parent_id"],
        step=r["step"],
        batch_id=r["batch_id"],
        private=bool(r["private"]),
        public=bool(r["public"]),
        created_at=float(r["created_at"]),
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        estimated_cost=float(r["estimated_cost"]),
    )


class GenerationsMixin(ImagesMixin):
    async def create_generation(
        self,
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        kind: str,
        spec: dict[str, Any],
        model: str,
        size: str,
        aspect: str,
        summary: str,
        input_images: Sequence[str] = (),
        chain_id: int | None = None,
        parent_id: int | None = None,
        batch_id: str | None = None,
        private: bool = False,
        estimated_cost: float = 0.0,
    ) -> int:
        """Record a request (status "queued"); returns its id. `input_images` are shas already
        stored with put_image, in the order they are sent. `estimated_cost` counts against
        quotas until the generation finishes (see reserved_today)."""
        if kind not in GENERATION_KINDS:
            raise ValueError(f"unknown generation kind {kind!r}")
        if not isinstance(spec, dict):
            raise TypeError("spec must be a dict")
        async with self._db.transaction() as tx:
            generation_id = await tx.insert(
                "INSERT INTO generations (user_id, guild_id, channel_id, kind, spec, model, size,"
                " aspect, summary, status, chain_id, parent_id, batch_id, private,"
                " estimated_cost, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                (
                    user_id,
                    guild_id,
                    channel_id,
                    kind,
                    to_json(spec),
                    model,
                    size,
                    aspect,
                    summary,
                    chain_id,
                    parent_id,
                    batch_id,
                    int(private),
                    float(estimated_cost),
                    self._now(),
                ),
            )
            for position, sha in enumerate(input_images):
                await tx.execute(
                    "INSERT INTO generation_images (generation_id, role, position, image_sha)"
                    " VALUES (?, 'input', ?, ?)",
                    (generation_id, position, sha),
                )
        return generation_id

    async def mark_running(self, generation_id: int) -> bool:
        """queued -> running (started_at = now). False if it was not queued (e.g. cancelled)."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE generations SET status = 'running', started_at = ?"
                " WHERE id = ? AND status = 'queued'",
                (self._now(), generation_id),
            )
        return changed == 1

    async def finish_generation(
        self,
        generation_id: int,
        *,
        output_image: str | None,
        output_mime: str | None,
        model_text: str,
        model_content: dict[str, Any] | None,
        prompt_tokens: int,
        output_tokens: int,
        thoughts_tokens: int,
        cost: float,
        model_version: str | None,
        seconds: float,
        warnings: Sequence[str] = (),
    ) -> bool:
        """Status "done" with the result. Inline images inside `model_content` are moved to
        the image files (see bot.store.content). Returns False, changing nothing, if the
        generation is not queued/running any more (cancelled meanwhile, or finished twice)."""
        stored_content: Any = None
        content_shas: list[str] = []
        if model_content is not None:
            # Decoding and hashing megabytes of base64 is CPU work: off the event loop.
            stored_content, blobs = await asyncio.to_thread(content_json.dehydrate, model_content)
            for blob in blobs:
                await self.put_image(blob.data, blob.mime_type)
            content_shas = content_json.references(stored_content)
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE generations SET status = 'done', output_image = ?, output_mime = ?,"
                " model_text = ?, model_content = ?, prompt_tokens = ?, output_tokens = ?,"
                " thoughts_tokens = ?, cost = ?, model_version = ?, seconds = ?, warnings = ?,"
                " error_kind = NULL, error = NULL, finished_at = ?"
                f" WHERE id = ? AND status IN {_OPEN}",
                (
                    output_image,
                    output_mime,
                    model_text,
                    None if stored_content is None else to_json(stored_content),
                    int(prompt_tokens),
                    int(output_tokens),
                    int(thoughts_tokens),
                    float(cost),
                    model_version,
                    float(seconds),
                    to_json(list(warnings)),
                    self._now(),
                    generation_id,
                ),
            )
            if changed != 1:
                return False
            for position, sha in enumerate(content_shas):
                await tx.execute(
                    "INSERT INTO generation_images (generation_id, role, position, image_sha)"
                    " VALUES (?, 'content', ?, ?)",
                    (generation_id, position, sha),
                )
        return True

    async def fail_generation(
        self, generation_id: int, *, status: str, error_kind: str, error: str
    ) -> bool:
        """Status failed|blocked|cancelled with the reason. False if it was already finished."""
        if status not in FAILED_STATUSES:
            raise ValueError(f"status must be one of {FAILED_STATUSES}, not {status!r}")
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE generations SET status = ?, error_kind = ?, error = ?, finished_at = ?"
                f" WHERE id = ? AND status IN {_OPEN}",
                (status, error_kind, error, self._now(), generation_id),
            )
        return changed == 1

    async def set_generation_message(
        self, generation_id: int, *, message_id: int, channel_id: int, public: bool
    ) -> None:
        """Record a message that shows the generation (several may: a re-post keeps the old
        one's replies and buttons working). generations.message_id is the latest; `public`
        stays true once any public message showed it."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE generations SET message_id = ?,"
                " public = CASE WHEN public = 1 OR ? = 1 THEN 1 ELSE 0 END WHERE id = ?",
                (message_id, int(public), generation_id),
            )
            if changed != 1:
                raise LookupError(f"no generation {generation_id}")
            await tx.execute(
                "INSERT INTO generation_messages (message_id, generation_id, channel_id, public,"
                " created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (message_id) DO UPDATE SET generation_id = excluded.generation_id,"
                " channel_id = excluded.channel_id, public = excluded.public",
                (message_id, generation_id, channel_id, int(public), self._now()),
            )

    async def get_generation(self, generation_id: int) -> GenerationRow | None:
        async with self._db.reading() as tx:
            rows = await tx.all(f"{_SELECT} WHERE g.id = ?", (generation_id,))
            found = await load_generations(tx, rows)
        return found[0] if found else None

    async def generation_by_message(self, message_id: int) -> GenerationRow | None:
        """The generation a message shows (any message it was ever posted in)."""
        async with self._db.reading() as tx:
            rows = await tx.all(
                f"{_SELECT} JOIN generation_messages m ON m.generation_id = g.id"
                " WHERE m.message_id = ?",
                (message_id,),
            )
            found = await load_generations(tx, rows)
        return found[0] if found else None

    async def recent_generations(self, user_id: int, limit: int = 10) -> list[GenerationRow]:
        """The user's latest generations, newest first."""
        async with self._db.reading() as tx:
            rows = await tx.all(
                f"{_SELECT} WHERE g.user_id = ? ORDER BY g.created_at DESC, g.id DESC LIMIT ?",
                (user_id, max(0, limit)),
            )
            return await load_generations(tx, rows)

    async def unfinished_generations(self) -> list[GenerationRow]:
        """Queued or running generations, oldest first (restart recovery)."""
        async with self._db.reading() as tx:
            rows = await tx.all(f"{_SELECT} WHERE g.status IN {_OPEN} ORDER BY g.id")
            return await load_generations(tx, rows)

    async def batch_generations(self, batch_id: str) -> list[GenerationRow]:
        """Every generation of one /batch, in creation order."""
        async with self._db.reading() as tx:
            rows = await tx.all(f"{_SELECT} WHERE g.batch_id = ? ORDER BY g.id", (batch_id,))
            return await load_generations(tx, rows)

    async def chain_lineage(self, generation_id: int, limit: int) -> list[GenerationRow]:
        """The generation and its ancestors via parent_id, oldest first: at most `limit` rows,
        the last being `generation_id` (empty if it does not exist)."""
        if limit < 1:
            return []
        async with self._db.reading() as tx:
            rows = await tx.all(
                "WITH RECURSIVE lineage (id, parent_id, depth) AS ("
                " SELECT id, parent_id, 0 FROM generations WHERE id = ?"
                " UNION ALL"
                " SELECT p.id, p.parent_id, l.depth + 1"
                " FROM generations p JOIN lineage l ON p.id = l.parent_id"
                " WHERE l.depth + 1 < ?"
                f") SELECT {GENERATION_COLUMNS}"
                " FROM generations g JOIN lineage l ON g.id = l.id ORDER BY l.depth DESC",
                (generation_id, limit),
            )
            return await load_generations(tx, rows)
