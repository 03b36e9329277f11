"""What economy requests (Gemini's Batch API) look like: the state lines of their messages and
the target their results are posted to, hours later perhaps, from any process."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import discord

from bot.config import model_display_name
from bot.presentation.targets import (
    ChannelTarget,
    DiscordClient,
    ResumedTarget,
    _direct_message,
    _new_message,
    _partial_message,
)

log = logging.getLogger(__name__)

HALF_PRICE = "half price"
CHAINS_NOTE = (
    "Economy applies to /imagine, /prompt, /template use and /batch. Chain steps (replies, "
    "Refine, Undo), /edit, /blend and the buttons always run interactively."
)
CANCELLED = "🚫 Cancelled. Nothing was charged."
EXPIRED = (
    "⌛ Gemini's batch queue did not get to this within its 24 hours, so the request expired. "
    "Nothing was charged; Retry runs it again."
)


def _when(epoch: float, style: str = "R") -> str:
    return f"<t:{int(epoch)}:{style}>"


def gathering_text(model: str, *, images: int = 1) -> str:
    what = "this request" if images == 1 else f"these {images} images"
    return (
        f"🐢 Economy ({HALF_PRICE}): {what} for {model_display_name(model)} will go to "
        "Gemini's batch queue in a moment. The result is posted here when it is ready "
        "(within 24 hours), even after a restart."
    )


def state_text(
    *,
    gemini_state: str | None,
    submitted_at: float,
    expected_by: float,
    model: str,
    images: int = 1,
    field: str | None = None,
) -> str:
    """The message of an economy request (or /batch) while Gemini has it."""
    head = (
        f"🐢 Economy batch on `{field}` ({images} images, {model_display_name(model)})"
        if field is not None
        else f"🐢 Economy request ({model_display_name(model)}, {HALF_PRICE})"
    )
    times = f"Submitted {_when(submitted_at)} · expected by {_when(expected_by)}"
    if gemini_state == "JOB_STATE_RUNNING":
        status = "🎨 Gemini is working on it (too late to cancel)."
    else:
        status = "⏳ Waiting in Gemini's batch queue."
    return f"{head}\n{status}\n{times}\n-# Posted here when ready, even after a restart."


def batch_failed_text(detail: str | None) -> str:
    reason = f" ({detail})" if detail else ""
    return (
        f"❌ Gemini's Batch API could not run this request{reason}. Nothing was charged; "
        "Retry runs it again."
    )


class EconomyTarget(ResumedTarget):
    """Where an economy request shows itself, rebuilt from its job in whichever process polls
    its batch.

    While the interaction's token lasts, its own message (as any resumed job). Later, hours
    later typically, the result or failure is posted as a new message that mentions the
    requester (an edit would notify nobody) and the waiting message is removed; a private one
    goes to their DMs. A /batch variant (`label`) has no message of its own until its result: then a new
    one, headed by its label, without a mention (the contact sheet says the batch is done)."""

    def __init__(
        self, client: DiscordClient, info: dict[str, Any], *, user_id: int, label: str | None
    ) -> None:
        super().__init__(client, info, user_id=user_id)
        self.label = label

    async def show(self, content: str, *, view: discord.ui.View | None = None) -> None:
        if self.label is not None:
            return  # a variant: the batch's own message shows the state
        await super().show(content, view=view)

    async def finish(
        self,
        *,
        content: str | None = None,
        embed: discord.Embed | None = None,
        files: list[discord.File] | None = None,
        view: discord.ui.View | None = None,
        nonce: str | None = None,
    ) -> discord.Message | None:
        if self.label is not None:
            content = f"**{self.label}**" + (f" — {content}" if content else "")
            content = content[:2000]
        edited = await self._finish_through_token(content, embed, files, view)
        if edited is not None:
            return edited
        if self.private:
            return await _direct_message(
                self.client,
                self.user_id,
                self.channel_id,
                **_new_message(content, embed, files, view, nonce),
            )
        if self.label is not None:  # a variant: its first message
            return await ChannelTarget.finish(
                self, content=content, embed=embed, files=files, view=view, nonce=nonce
            )
        stale, self.message_id = self.message_id, None
        mention = f"<@{self.user_id}> your economy request is ready."
        message = await ChannelTarget.finish(
            self,
            content=f"{mention} {content}" if content else mention,
            embed=embed,
            files=files,
            view=view,
            nonce=nonce,
        )
        if stale is not None and message is not None and stale != message.id:
            # The waiting message would say "Waiting in Gemini's batch queue" for ever.
            with contextlib.suppress(discord.HTTPException):
                channel = await self._channel()
                await _partial_message(channel, stale).delete()
        return message
