"""Chains: iterative editing of one result, step by step, in a thread.

A chain is a tree of generations (each step has a parent); its head is the image the next
plain message edits. Steps of one chain run strictly one after another in arrival order
(a per-chain lock held until the step has finished), so two quick messages never race from
the same head; different chains run in parallel.

Each step is sent as a multi-turn request: a bounded window of earlier turns in which the
model's stored content goes back unchanged (Gemini 3 verifies its thought signatures).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord
from google.genai import types

from bot.config import estimate_cost
from bot.errors import UserError
from bot.gemini import content_from_json
from bot.generator import Generator, InputImage, Submission
from bot.preferences import preferences_for
from bot.prompts import (
    Defaults,
    InputRef,
    RequestOptions,
    ResolvedImage,
    SpecError,
    compile_request,
    prepare,
)
from bot.quotas import check_quota
from bot.resolver import RequestResolver, Upload
from bot.targets import Target

if TYPE_CHECKING:
    from bot.client import NanoBananaBot
    from bot.store import ChainRow, GenerationRow

log = logging.getLogger(__name__)

THREAD_NAME_LIMIT = 100


@dataclass
class StepRequest:
    user_id: int
    guild_id: int | None
    changes: str
    uploads: list[Upload]
    parent_id: int | None  # None: edit the chain's head


async def build_history(generator: Generator, parent_id: int) -> list[types.Content]:
    """The last N steps up to and including parent_id as alternating user/model turns."""
    window = generator.settings.chain_history_steps
    if window <= 0:
        return []
    lineage = await generator.store.chain_lineage(parent_id, limit=window)
    history: list[types.Content] = []
    for step in lineage:
        if step.status != "done" or not step.model_content:
            continue
        user_turn = await _user_turn(generator, step)
        # The store keeps image bytes out of the JSON; put them back, signatures intact.
        model_turn = await generator.store.hydrate_model_content(step.model_content)
        if model_turn is None:
            raise UserError(
                "An earlier image in this chain is past the retention period; "
                "start a new chain with /imagine or /edit."
            )
        history.append(user_turn)
        history.append(content_from_json(model_turn))
    return history


async def _user_turn(generator: Generator, gen: GenerationRow) -> types.Content:
    """Recompile a stored step's own request, images included (a window that starts
    mid-chain thus starts with a user turn carrying that step's image)."""
    spec = dict(gen.spec)
    metadata = dict(spec.get("metadata") or {})
    resolved = metadata.pop("resolved_inputs", [])
    spec["metadata"] = metadata
    if not metadata:
        spec.pop("metadata")
    images: list[ResolvedImage] = []
    for item in resolved:
        stored = await generator.store.get_image(item["sha"])
        if stored is None:
            raise UserError(
                "An earlier image in this chain is past the retention period; "
                "start a new chain with /imagine or /edit."
            )
        data, mime = stored
        images.append(
            ResolvedImage(
                data=data,
                mime_type=mime,
                description=item["description"],
                anchor_kind=item.get("anchor_kind"),
            )
        )
    prepared = prepare(spec, None, Defaults(model=gen.model, size=gen.size, aspect=gen.aspect))
    return compile_request(prepared, images).user_content()


class Chains:
    """Chain bookkeeping and the per-chain step pipeline."""

    def __init__(self, bot: NanoBananaBot) -> None:
        self.bot = bot
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._told_no_threads: set[int] = set()

    async def chain_for(self, gen: GenerationRow) -> ChainRow:
        """The chain a result belongs to, creating it (with the result as step 0) if needed."""
        store = self.bot.store
        chain = await store.chain_for_generation(gen.id)
        if chain is not None:
            return chain
        chain_id = await store.create_chain(
            root_generation_id=gen.id,
            guild_id=gen.guild_id,
            channel_id=gen.channel_id,
            thread_id=None,
            owner_id=gen.user_id,
        )
        chain = await store.get_chain(chain_id)  # the root is step 0 and the head
        assert chain is not None
        return chain

    async def ensure_thread(self, chain: ChainRow, root: GenerationRow) -> tuple[int, bool]:
        """The channel a chain's steps are posted in, and whether it is a thread.

        The thread is created lazily on the result message; where that is impossible
        (no permission, already in a thread, a forum) the chain continues as replies."""
        if chain.thread_id is not None:
            return chain.thread_id, True
        prefs = await preferences_for(
            self.bot.store, self.bot.settings, root.user_id, root.guild_id
        )
        channel = self.bot.get_channel(root.channel_id)
        can_thread = (
            prefs.threads
            and root.message_id is not None
            and isinstance(channel, discord.TextChannel)
        )
        if can_thread and isinstance(channel, discord.TextChannel) and root.message_id:
            name = (root.summary or f"Chain {chain.id}").strip()[:THREAD_NAME_LIMIT] or "Chain"
            try:
                thread = await channel.get_partial_message(root.message_id).create_thread(
                    name=name, auto_archive_duration=1440
                )
                await self.bot.store.set_chain_thread(chain.id, thread.id)
                return thread.id, True
            except discord.HTTPException as exc:
                log.info("no thread for chain %s: %s", chain.id, exc)
        return root.channel_id, False

    def should_tell_no_threads(self, chain_id: int) -> bool:
        if chain_id in self._told_no_threads:
            return False
        self._told_no_threads.add(chain_id)
        return True

    async def run_step(
        self, chain: ChainRow, request: StepRequest, target: Target, *, private: bool = False
    ) -> int | None:
        """Queue one step and hold the chain until it has finished (arrival order)."""
        lock = self._locks[chain.id]
        async with lock:
            current = await self.bot.store.get_chain(chain.id)
            assert current is not None
            parent_id = request.parent_id or current.head_generation_id
            parent = await self.bot.store.get_generation(parent_id) if parent_id else None
            if parent is None or parent.output_image is None:
                raise UserError("There is no finished image to refine here yet.")
            sub = await self.step_submission(current, parent, request, private=private)
            gen_id = await self.bot.generator.submit(sub, target)
            await self.bot.generator.wait_for(gen_id)
            return gen_id

    async def step_submission(
        self, chain: ChainRow, parent: GenerationRow, request: StepRequest, *, private: bool
    ) -> Submission:
        inputs = [InputRef(type="image", data="chain:latest", role="edit_target")]
        inputs += [
            InputRef(type="image", data=f"attachment:{i}", role="reference")
            for i in range(1, len(request.uploads) + 1)
        ]
        raw = {"task": "edit_image", "chain_id": str(chain.id), "changes": request.changes}
        try:
            prepared = prepare(
                raw,
                RequestOptions(inputs=inputs),
                Defaults(model=parent.model, size=parent.size, aspect=parent.aspect),
            )
        except SpecError as exc:
            raise UserError(f"That change has a problem:\n{exc}") from None
        resolver = RequestResolver(
            self.bot.store,
            user_id=request.user_id,
            uploads=request.uploads,
            chain_image=(parent.output_image or "", parent.step),
        )
        try:
            resolved: list[InputImage] = await resolver.resolve_all(prepared.spec)
        except SpecError as exc:
            raise UserError(str(exc)) from None
        history = await build_history(self.bot.generator, parent.id)
        await check_quota(
            self.bot.store,
            self.bot.settings,
            user_id=request.user_id,
            guild_id=request.guild_id,
            images=1,
            cost=estimate_cost(prepared.model, prepared.size),
        )
        return Submission(
            user_id=request.user_id,
            guild_id=request.guild_id,
            channel_id=target_channel(chain),
            kind="refine",
            prepared=prepared,
            inputs=resolved,
            history=history,
            chain_id=chain.id,
            parent_id=parent.id,
            private=private,
        )

    async def undo(self, chain: ChainRow) -> GenerationRow:
        """Move the head back one step; returns the new head."""
        store = self.bot.store
        head = (
            await store.get_generation(chain.head_generation_id)
            if chain.head_generation_id
            else None
        )
        if head is None or head.parent_id is None:
            raise UserError("Nothing to undo: this is the first image of the chain.")
        parent = await store.get_generation(head.parent_id)
        assert parent is not None
        await store.set_chain_head(chain.id, parent.id)
        return parent


def target_channel(chain: ChainRow) -> int:
    return chain.thread_id or chain.channel_id
