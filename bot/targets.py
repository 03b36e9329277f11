"""Where a job shows its progress and its result: an interaction's message or a channel message.

An interaction token lasts 15 minutes; a result that outlives it is posted as an ordinary
channel message (mentioning the requester) instead of being lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import discord

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
# Leave a margin before Discord's 15-minute token expiry.
TOKEN_LIFETIME = 14.5 * 60


class Target:
    """Shows progress and the final result of one job."""

    channel_id: int
    user_id: int
    private: bool = False
    message_id: int | None = None

    @property
    def upload_limit(self) -> int:
        return DEFAULT_UPLOAD_LIMIT

    async def show(self, content: str, *, view: discord.ui.View | None = None) -> None:
        raise NotImplementedError

    async def finish(
        self,
        *,
        content: str | None = None,
        embed: discord.Embed | None = None,
        files: list[discord.File] | None = None,
        view: discord.ui.View | None = None,
    ) -> discord.Message | None:
        raise NotImplementedError


class InteractionTarget(Target):
    """The interaction's original response (deferred by the cog), then the channel."""

    def __init__(self, interaction: discord.Interaction, *, private: bool = False) -> None:
        self.interaction = interaction
        self.channel_id = interaction.channel_id or 0
        self.user_id = interaction.user.id
        self.private = private
        self.created = time.monotonic()
        self._expired = False

    @property
    def upload_limit(self) -> int:
        return int(getattr(self.interaction, "filesize_limit", 0) or DEFAULT_UPLOAD_LIMIT)

    def _token_valid(self) -> bool:
        return not self._expired and time.monotonic() - self.created < TOKEN_LIFETIME

    async def show(self, content: str, *, view: discord.ui.View | None = None) -> None:
        if not self._token_valid():
            return
        try:
            message = await self.interaction.edit_original_response(
                content=content, view=view, embed=None, attachments=[]
            )
            self.message_id = message.id
        except discord.HTTPException as exc:
            if exc.status == 401 or exc.code in (50027, 10015, 10062):
                self._expired = True
            log.debug("progress edit failed: %s", exc)

    async def finish(
        self,
        *,
        content: str | None = None,
        embed: discord.Embed | None = None,
        files: list[discord.File] | None = None,
        view: discord.ui.View | None = None,
    ) -> discord.Message | None:
        if self._token_valid():
            try:
                message = await self.interaction.edit_original_response(
                    content=content, embed=embed, attachments=files or [], view=view
                )
                self.message_id = message.id
                return message
            except discord.HTTPException as exc:
                if not (exc.status == 401 or exc.code in (50027, 10015, 10062)):
                    raise
                self._expired = True
                for f in files or []:
                    f.reset()
        return await self._post_in_channel(content=content, embed=embed, files=files, view=view)

    async def _post_in_channel(self, **kwargs: Any) -> discord.Message | None:
        client = self.interaction.client
        if self.private:
            # An ephemeral result cannot outlive its token; a DM keeps it private.
            user = await client.fetch_user(self.user_id)
            return await user.send(**kwargs)
        channel = client.get_channel(self.channel_id) or await client.fetch_channel(self.channel_id)
        mention = f"<@{self.user_id}> your result is ready."
        content = kwargs.pop("content", None)
        kwargs["content"] = f"{mention} {content}" if content else mention
        return await channel.send(**kwargs)  # type: ignore[union-attr]


class ChannelTarget(Target):
    """A bot message in a channel or thread (chain steps, restart recovery)."""

    def __init__(
        self,
        client: discord.Client,
        *,
        channel_id: int,
        user_id: int,
        reply_to: int | None = None,
        message_id: int | None = None,
    ) -> None:
        self.client = client
        self.channel_id = channel_id
        self.user_id = user_id
        self.reply_to = reply_to
        self.message_id = message_id
        self._lock = asyncio.Lock()

    async def _channel(self) -> discord.abc.Messageable:
        channel = self.client.get_channel(self.channel_id)
        if channel is None:
            channel = await self.client.fetch_channel(self.channel_id)
        return channel  # type: ignore[return-value]

    @property
    def upload_limit(self) -> int:
        channel = self.client.get_channel(self.channel_id)
        guild = getattr(channel, "guild", None)
        return int(guild.filesize_limit) if guild is not None else DEFAULT_UPLOAD_LIMIT

    async def _send(self, **kwargs: Any) -> discord.Message:
        channel = await self._channel()
        if self.reply_to is not None:
            kwargs["reference"] = discord.MessageReference(
                message_id=self.reply_to, channel_id=self.channel_id, fail_if_not_exists=False
            )
            kwargs["mention_author"] = False
        message = await channel.send(**kwargs)
        self.message_id = message.id
        return message

    async def show(self, content: str, *, view: discord.ui.View | None = None) -> None:
        async with self._lock:
            try:
                if self.message_id is None:
                    await self._send(content=content, view=view)
                else:
                    channel = await self._channel()
                    partial = channel.get_partial_message(self.message_id)  # type: ignore[attr-defined]
                    await partial.edit(content=content, view=view, embed=None, attachments=[])
            except discord.HTTPException as exc:
                log.debug("progress update failed: %s", exc)

    async def finish(
        self,
        *,
        content: str | None = None,
        embed: discord.Embed | None = None,
        files: list[discord.File] | None = None,
        view: discord.ui.View | None = None,
    ) -> discord.Message | None:
        async with self._lock:
            if self.message_id is not None:
                channel = await self._channel()
                partial = channel.get_partial_message(self.message_id)  # type: ignore[attr-defined]
                try:
                    return await partial.edit(
                        content=content, embed=embed, attachments=files or [], view=view
                    )
                except discord.NotFound:
                    # The progress message was deleted: post the result anew.
                    for f in files or []:
                        f.reset()
            return await self._send(content=content, embed=embed, files=files or [], view=view)


class FollowupTarget(Target):
    """A new followup message per result (batch variants); no progress of its own."""

    def __init__(
        self, interaction: discord.Interaction, *, label: str, private: bool = False
    ) -> None:
        self.interaction = interaction
        self.channel_id = interaction.channel_id or 0
        self.user_id = interaction.user.id
        self.private = private
        self.label = label
        self.created = time.monotonic()

    @property
    def upload_limit(self) -> int:
        return int(getattr(self.interaction, "filesize_limit", 0) or DEFAULT_UPLOAD_LIMIT)

    async def show(self, content: str, *, view: discord.ui.View | None = None) -> None:
        return None  # the batch's own message shows progress

    async def finish(
        self,
        *,
        content: str | None = None,
        embed: discord.Embed | None = None,
        files: list[discord.File] | None = None,
        view: discord.ui.View | None = None,
    ) -> discord.Message | None:
        text = f"**{self.label}**" + (f" — {content}" if content else "")
        kwargs: dict[str, Any] = {"content": text[:2000], "files": files or []}
        if embed is not None:
            kwargs["embed"] = embed
        if view is not None:
            kwargs["view"] = view
        if time.monotonic() - self.created < TOKEN_LIFETIME:
            return await self.interaction.followup.send(wait=True, ephemeral=self.private, **kwargs)
        channel = self.interaction.client.get_channel(self.channel_id)
        if channel is None:
            channel = await self.interaction.client.fetch_channel(self.channel_id)
        return await channel.send(**kwargs)  # type: ignore[union-attr]
