"""Generations: one row per request, from queued to done/failed, plus the messages showing it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from bot.adapters.store import content as content_json
from bot.adapters.store._base import from_json, to_json
from bot.adapters.store._images import ImagesMixin
from bot.adapters.store.db import Record, Tx
from bot.adapters.store.rows import FAILED_STATUSES, GENERATION_KINDS, GenerationRow
from bot.adapters.store.tables import generation_images, generation_messages, generations

g = generations.alias("g")
GENERATION_COLUMNS = tuple(g.c)
_SELECT = sa.select(*GENERATION_COLUMNS)
_OPEN = ("queued", "running")


async def load_generations(tx: Tx, rows: Sequence[Record]) -> list[GenerationRow]:
    """Rows of `GENERATION_COLUMNS` -> GenerationRow, with their input images attached."""
    if not rows:
        return []
    ids = [int(r["id"]) for r in rows]
    inputs: dict[int, list[str]] = {i: [] for i in ids}
    gi = generation_images
    for r in await tx.all(
        sa.select(gi.c.generation_id, gi.c.image_sha)
        .where(gi.c.role == "input", gi.c.generation_id.in_(ids))
        .order_by(gi.c.generation_id, gi.c.position)
    ):
        inputs[int(r["generation_id"])].append(str(r["image_sha"]))
    return [_row(r, inputs[int(r["id"])]) for r in rows]


def _row(r: Record, input_images: list[str]) -> GenerationRow:
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


def check_generation(kind: str, spec: Any) -> None:
    if kind not in GENERATION_KINDS:
        raise ValueError(f"unknown generation kind {kind!r}")
    if not isinstance(spec, dict):
        raise TypeError("spec must be a dict")


async def insert_generation(
    tx: Tx,
    *,
    now: float,
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
    """The INSERTs of create_generation, inside the caller's transaction (admit uses it too)."""
    check_generation(kind, spec)
    generation_id = await tx.insert(
        sa.insert(generations).values(
            user_id=user_id, guild_id=guild_id, channel_id=channel_id, kind=kind,
            spec=to_json(spec), model=model, size=size, aspect=aspect, summary=summary,
            status="queued", chain_id=chain_id, parent_id=parent_id, batch_id=batch_id,
            private=bool(private), estimated_cost=float(estimated_cost), created_at=now,
        )
    )  # fmt: skip
    if input_images:
        await tx.execute(
            sa.insert(generation_images),
            [
                {"generation_id": generation_id, "role": "input", "position": i, "image_sha": sha}
                for i, sha in enumerate(input_images)
            ],
        )
    return generation_id


async def generation_in(tx: Tx, generation_id: int) -> GenerationRow | None:
    """One generation as `tx` sees it, with its input images and messages."""
    rows = await tx.all(_SELECT.where(g.c.id == generation_id))
    found = await load_generations(tx, rows)
    return found[0] if found else None


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
        check_generation(kind, spec)
        async with self._db.transaction() as tx:
            return await insert_generation(
                tx, now=self._now(), user_id=user_id, guild_id=guild_id, channel_id=channel_id,
                kind=kind, spec=spec, model=model, size=size, aspect=aspect, summary=summary,
                input_images=input_images, chain_id=chain_id, parent_id=parent_id,
                batch_id=batch_id, private=private, estimated_cost=estimated_cost,
            )  # fmt: skip

    async def mark_running(self, generation_id: int) -> bool:
        """queued -> running (started_at = now). False if it was not queued (e.g. cancelled)."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                sa.update(generations)
                .where(generations.c.id == generation_id, generations.c.status == "queued")
                .values(status="running", started_at=self._now())
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
        the image store (see bot.adapters.store.content). Returns False, changing nothing, if
        the generation is not queued/running any more (cancelled meanwhile, or finished twice)."""
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
                sa.update(generations)
                .where(generations.c.id == generation_id, generations.c.status.in_(_OPEN))
                .values(
                    status="done", output_image=output_image, output_mime=output_mime,
                    model_text=model_text,
                    model_content=None if stored_content is None else to_json(stored_content),
                    prompt_tokens=int(prompt_tokens), output_tokens=int(output_tokens),
                    thoughts_tokens=int(thoughts_tokens), cost=float(cost),
                    model_version=model_version, seconds=float(seconds),
                    warnings=to_json(list(warnings)), error_kind=None, error=None,
                    finished_at=self._now(),
                )
            )  # fmt: skip
            if changed != 1:
                return False
            if content_shas:
                await tx.execute(
                    sa.insert(generation_images),
                    [
                        {"generation_id": generation_id, "role": "content", "position": i,
                         "image_sha": sha}
                        for i, sha in enumerate(content_shas)
                    ],
                )  # fmt: skip
        return True

    async def fail_generation(
        self, generation_id: int, *, status: str, error_kind: str, error: str
    ) -> bool:
        """Status failed|blocked|cancelled with the reason. False if it was already finished."""
        if status not in FAILED_STATUSES:
            raise ValueError(f"status must be one of {FAILED_STATUSES}, not {status!r}")
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                sa.update(generations)
                .where(generations.c.id == generation_id, generations.c.status.in_(_OPEN))
                .values(status=status, error_kind=error_kind, error=error, finished_at=self._now())
            )
        return changed == 1

    async def set_generation_message(
        self, generation_id: int, *, message_id: int, channel_id: int, public: bool
    ) -> None:
        """Record a message that shows the generation (several may: a re-post keeps the old
        one's replies and buttons working). generations.message_id is the latest; `public`
        stays true once any public message showed it."""
        values: dict[str, Any] = {"message_id": message_id}
        if public:
            values["public"] = True
        upsert = self._insert(generation_messages).values(
            message_id=message_id, generation_id=generation_id, channel_id=channel_id,
            public=bool(public), created_at=self._now(),
        )  # fmt: skip
        upsert = upsert.on_conflict_do_update(
            index_elements=[generation_messages.c.message_id],
            set_={
                "generation_id": upsert.excluded.generation_id,
                "channel_id": upsert.excluded.channel_id,
                "public": upsert.excluded.public,
            },
        )
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                sa.update(generations).where(generations.c.id == generation_id).values(values)
            )
            if changed != 1:
                raise LookupError(f"no generation {generation_id}")
            await tx.execute(upsert)

    async def get_generation(self, generation_id: int) -> GenerationRow | None:
        async with self._db.reading() as tx:
            return await generation_in(tx, generation_id)

    async def generation_by_message(self, message_id: int) -> GenerationRow | None:
        """The generation a message shows (any message it was ever posted in)."""
        m = generation_messages
        async with self._db.reading() as tx:
            rows = await tx.all(
                _SELECT.join(m, m.c.generation_id == g.c.id).where(m.c.message_id == message_id)
            )
            found = await load_generations(tx, rows)
        return found[0] if found else None

    async def latest_result_in_channel(
        self, channel_id: int, *, user_id: int | None = None
    ) -> GenerationRow | None:
        """The finished generation whose message was posted last in a channel (a DM's
        conversation: what a plain message there refines), optionally only `user_id`'s."""
        m = generation_messages
        query = _SELECT.join(m, m.c.generation_id == g.c.id).where(
            m.c.channel_id == channel_id, g.c.status == "done"
        )
        if user_id is not None:
            query = query.where(g.c.user_id == user_id)
        async with self._db.reading() as tx:
            rows = await tx.all(query.order_by(m.c.message_id.desc()).limit(1))
            found = await load_generations(tx, rows)
        return found[0] if found else None

    async def recent_generations(self, user_id: int, limit: int = 10) -> list[GenerationRow]:
        """The user's latest generations, newest first."""
        async with self._db.reading() as tx:
            rows = await tx.all(
                _SELECT.where(g.c.user_id == user_id)
                .order_by(g.c.created_at.desc(), g.c.id.desc())
                .limit(max(0, limit))
            )
            return await load_generations(tx, rows)

    async def unfinished_generations(self) -> list[GenerationRow]:
        """Queued or running generations, oldest first (restart recovery)."""
        async with self._db.reading() as tx:
            rows = await tx.all(_SELECT.where(g.c.status.in_(_OPEN)).order_by(g.c.id))
            return await load_generations(tx, rows)

    async def batch_generations(self, batch_id: str) -> list[GenerationRow]:
        """Every generation of one /batch, in creation order."""
        async with self._db.reading() as tx:
            rows = await tx.all(_SELECT.where(g.c.batch_id == batch_id).order_by(g.c.id))
            return await load_generations(tx, rows)

    async def chain_lineage(self, generation_id: int, limit: int) -> list[GenerationRow]:
        """The generation and its ancestors via parent_id, oldest first: at most `limit` rows,
        the last being `generation_id` (empty if it does not exist)."""
        if limit < 1:
            return []
        start = (
            sa.select(generations.c.id, generations.c.parent_id, sa.literal(0).label("depth"))
            .where(generations.c.id == generation_id)
            .cte("lineage", recursive=True)
        )
        p = generations.alias("p")
        lineage = start.union_all(
            sa.select(p.c.id, p.c.parent_id, start.c.depth + 1)
            .join(start, p.c.id == start.c.parent_id)
            .where(start.c.depth + 1 < limit)
        )
        async with self._db.reading() as tx:
            rows = await tx.all(
                _SELECT.join(lineage, g.c.id == lineage.c.id).order_by(lineage.c.depth.desc())
            )
            return await load_generations(tx, rows)
