"""Posting a finished result: fit the image to the upload limit, the embed, prompt.json and
the persistent buttons, and remember which message shows it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os

import discord

from bot.adapters import imaging
from bot.adapters.prompts.grid import grid_of
from bot.adapters.store import GenerationRow, Store
from bot.core.submission import public_spec
from bot.errors import UserError
from bot.presentation.buttons import action_view, result_actions
from bot.presentation.embeds import result_embed
from bot.presentation.targets import Target

log = logging.getLogger(__name__)

# Results processed at once (stored content, fit to the upload limit): each 4K one needs
# ~120 MB while it is worked on and the work is CPU-bound. Half the cores: the rest keep the
# event loop, Gemini's answers and Discord uploads moving; twenty 4K answers arriving
# together then stay within a few hundred MB.
HEAVY_SLOTS = max(1, (os.cpu_count() or 2) // 2)


def splittable(gen: GenerationRow) -> bool:
    """Split is offered on results whose spec declares a grid (layout.grid), not on tiles."""
    return gen.kind != "tile" and grid_of(gen.spec) is not None


def result_nonce(generation_id: int) -> str:
    """The same for every attempt to post one result (Discord allows 25 characters), so a
    process that posts it again after a restart gets the first message back, not a second."""
    return f"nb-result-{generation_id}"


class ResultPoster:
    def __init__(self, store: Store) -> None:
        self.store = store
        # Two bounds, so that one result's fitting overlaps its storing while twenty 4K
        # results arriving together still stay within a few hundred MB.
        self.heavy = asyncio.Semaphore(HEAVY_SLOTS)  # storing the model's content
        self._fitting = asyncio.Semaphore(HEAVY_SLOTS)

    async def fit(self, data: bytes, mime_type: str, limit: int) -> imaging.FittedImage:
        """The image re-encoded (if needed) to fit `limit` bytes, off the event loop."""
        async with self._fitting:
            return await asyncio.to_thread(imaging.fit_to_limit, data, mime_type, limit_bytes=limit)

    async def post(
        self,
        gen: GenerationRow,
        data: bytes,
        mime_type: str,
        target: Target,
        *,
        fitted: imaging.FittedImage | None = None,
    ) -> discord.Message | None:
        """Post (or re-post) a finished generation with its buttons, fitted to the target's
        upload limit (halved and tried again if Discord says the real limit is lower).
        `fitted`: already fitted to the target's limit (while the result was being stored)."""
        limit = target.upload_limit
        for attempt in range(3):
            if attempt > 0 or fitted is None:
                fitted = await self.fit(data, mime_type, limit)
            filename = f"nano-banana-{gen.id}.{fitted.extension}"
            parent_step = None
            if gen.parent_id is not None:
                parent = await self.store.get_generation(gen.parent_id)
                parent_step = parent.step if parent else None
            embed = result_embed(
                gen, image_filename=filename, fit_note=fitted.note, parent_step=parent_step
            )
            spec_json = json.dumps(public_spec(gen.spec, owner_view=gen.private), indent=2)
            files = [
                discord.File(io.BytesIO(fitted.data), filename=filename),
                discord.File(io.BytesIO(spec_json.encode()), filename="prompt.json"),
            ]
            view = action_view(
                gen.id, result_actions(in_chain=gen.chain_id is not None, grid=splittable(gen))
            )
            try:
                message = await target.finish(
                    content=None, embed=embed, files=files, view=view, nonce=result_nonce(gen.id)
                )
            except discord.HTTPException as exc:
                if exc.status == 413 or exc.code == 40005:
                    limit = limit // 2  # the channel's real limit is lower than we were told
                    log.warning(
                        "upload refused at %d bytes for %s; retrying smaller", limit, gen.id
                    )
                    continue
                raise
            # A private copy of a public result (a /history re-post) must not replace the
            # public message that links and replies point at.
            if message is not None and (gen.private or not target.private):
                await self.store.set_generation_message(
                    gen.id,
                    message_id=message.id,
                    channel_id=message.channel.id,
                    public=not gen.private,
                )
            return message
        raise UserError("The image could not be uploaded to this channel.")

