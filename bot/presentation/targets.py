"""Where a job shows its progress and its result: an interaction's message or a channel message.

An interaction token lasts 15 minutes; a result that outlives it is posted as an ordinary
channel message (mentioning the requester) instead of being lost. Every target can describe
itself (`resume_info`) so that a restarted bot carries on in the same message
(`resumed_target`).

Where the bot can only answer through interactions (a group DM or another server through the
app installed to the user's account, a channel it may not see or write in: see
bot.presentation.places), no target ever posts in the channel: shortly before the token
expires the progress message says where the result will be, and a result that comes later
goes to the requester's DMs if they accept them; either way it waits in /history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

import discord

from bot.presentation.places import Reach, place_of, reach_of

log = logging.getLogger(__name__)


class DiscordClient(Protocol):
    """What services and targets need of the Discord client (discord.Client has it all)."""

    def get_channel(self, id: int, /) -> Any: ...

    async def fetch_channel(self, channel_id: int, /) -> Any: ...

    def get_user(self, id: int, /) -> Any: ...

    async def fetch_user(self, user_id: int, /) -> Any: ...

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
# Leave a margin before Discord's 15-minute token expiry.
TOKEN_LIFETIME = 14.5 * 60
# Discord's answers when an interaction token is no longer usable.
_TOKEN_GONE_CODES = frozenset({50027, 10015, 10062})
# Where only the interaction reaches: this long after the command, a message still in
# progress says where its result will be (the token then has a couple of minutes left).
EXPIRY_WARNING_AFTER = 13 * 60
DISCORD_TOKEN_LIFETIME = 15 * 60
EXPIRY_NOTE = (
    "-# Discord lets me update this message only until <t:{expires}:t>. If it isn't done by "
    "then, I'll send it to your DMs (if you accept them); /history has it either way."
)
LATE_ELSEWHERE = (
    "Your request from <t:{asked}:R> took longer than the 15 minutes Discord gives me to "
    "answer where you asked, so it is here."
)


def token_gone(exc: discord.HTTPException) -> bool:
    return exc.status == 401 or exc.code in _TOKEN_GONE_CODES


def _new_message(
    content: str | None,
    embed: discord.Embed | None,
    files: list[discord.File] | None,
    view: discord.ui.View | None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for sending a new message (send() rejects embed=None / view=None).

    A nonce makes the send idempotent: discord.py sends it with enforce_nonce, and Discord
    answers a repeat (a restarted bot posting the same result again) with the first message."""
    kwargs: dict[str, Any] = {"content": content, "files": files or []}
    if nonce is not None:
        kwargs["nonce"] = nonce
    if embed is not None:
        kwargs["embed"] = embed
    if view is not None:
        kwargs["view"] = view
    return kwargs


def _rewind(files: list[discord.File] | None) -> None:
    """A failed send has consumed the file buffers; rewind them for the next attempt."""
    for f in files or []:
        f.reset()


async def _channel(client: DiscordClient, channel_id: int) -> discord.abc.Messageable:
    channel = client.get_channel(channel_id)
    if channel is None:
        channel = await client.fetch_channel(channel_id)
    return channel


def _partial_message(channel: discord.abc.Messageable, message_id: int) -> discord.PartialMessage:
    return channel.get_partial_message(message_id)  # type: ignore[attr-defined]


def _guild_limit(client: DiscordClient, channel_id: int) -> int:
    guild = getattr(client.get_channel(channel_id), "guild", None)
    return int(guild.filesize_limit) if guild is not None else DEFAULT_UPLOAD_LIMIT


# Discord's answer when a user does not accept DMs from the bot.
CANNOT_DM = 50007
DMS_CLOSED_NOTICE = (
    "<@{user_id}> I couldn't send you your private result: your DMs are closed to me. "
    "It is saved; /history shows it (or allow DMs from server members and ask again)."
)


async def _direct_message(
    client: DiscordClient, user_id: int, channel_id: int, **kwargs: Any
) -> discord.Message | None:
    """A private result that can no longer go to its ephemeral message goes to the DMs. If
    the user has closed them, a notice in the channel says so (never the result itself);
    None then, as no message shows the result."""
    user = client.get_user(user_id) or await client.fetch_user(user_id)
    try:
        return await user.send(**kwargs)
    except discord.Forbidden as exc:
        if exc.code != CANNOT_DM or not channel_id:
            raise
    log.info("user %s has closed DMs; telling them in channel %s", user_id, channel_id)
    channel = await _channel(client, channel_id)
    await channel.send(
        DMS_CLOSED_NOTICE.format(user_id=user_id),
        allowed_mentions=discord.AllowedMentions(users=True),
    )
    return None


async def _deliver_elsewhere(
    client: DiscordClient, user_id: int, asked_at: float, **kwargs: Any
) -> discord.Message | None:
    """Where only the interaction reached and its token is gone: the result (or the failure)
    goes to the requester's DMs with a line saying why; with DMs closed it only waits in
    /history (the progress message said so before the token ran out). Never raises for
    Discord's refusal."""
    note = LATE_ELSEWHERE.format(asked=int(asked_at))
    content = kwargs.pop("content", None)
    kwargs["content"] = f"{note}\n{content}" if content else note
    try:
        user = client.get_user(user_id) or await client.fetch_user(user_id)
        return await user.send(**kwargs)
    except discord.HTTPException as exc:
        log.info("user %s: late result not delivered (%s); it waits in /history", user_id, exc)
        return None


def _still_in_progress(message: Any) -> bool:
    content = getattr(message, "content", "") or ""
    return (
        content.startswith("⏳")
        and not getattr(message, "embeds", None)
        and not getattr(message, "attachments", None)
        and "/history" not in content
    )


class ExpiryWarning:
    """Where only the interaction reaches: when the token is nearly gone, the progress message
    (if it still is one) says where the result will be. Armed by the first progress shown,
    disarmed by the result."""

    def __init__(self, issued_at: float) -> None:
        self.issued_at = issued_at
        self.done = False
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def due(self) -> bool:
        return not self.done and time.time() - self.issued_at >= EXPIRY_WARNING_AFTER

    def decorate(self, content: str) -> str:
        if not self.due() or "/history" in content:
            return content
        note = EXPIRY_NOTE.format(expires=int(self.issued_at + DISCORD_TOKEN_LIFETIME))
        return f"{content}\n{note}"

    def arm(self, fire: Callable[[], Awaitable[None]]) -> None:
        if self._timer is not None or self.done:
            return
        now = time.time()
        if now - self.issued_at >= TOKEN_LIFETIME:
            return
        delay = max(0.0, self.issued_at + EXPIRY_WARNING_AFTER - now)

        def start() -> None:
            if not self.done:
                self._task = asyncio.ensure_future(fire())

        self._timer = asyncio.get_running_loop().call_later(delay, start)

    def disarm(self) -> None:
        self.done = True
        if self._timer is not None:
            self._timer.cancel()


class Target:
    """Shows progress and the final result of one job."""

    channel_id: int
    user_id: int
    private: bool = False
    message_id: int | None = None
    reach: Reach = Reach.CHANNEL  # INTERACTION: never post or edit in the channel itself

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
        nonce: str | None = None,
    ) -> discord.Message | None:
        raise NotImplementedError

    def resume_info(self) -> dict[str, Any]:
        """What a restarted bot needs to carry on in the same place (stored with the job),
        including whether the bot may post there itself (`reach`)."""
        return {
            "channel_id": self.channel_id,
            "message_id": self.message_id,
            "private": self.private,
            "reach": str(self.reach),
        }


class InteractionTarget(Target):
    """The interaction's original response (deferred by the cog), then the channel."""

    def __init__(self, interaction: discord.Interaction, *, private: bool = False) -> None:
        self.interaction = interaction
        self.client = interaction.client
        self.channel_id = interaction.channel_id or 0
        self.user_id = interaction.user.id
        self.private = private
        self.message_id = None
        # The token's clock starts when Discord created the interaction, not when we got it.
        self.issued_at = interaction.created_at.timestamp()
        self._expired = False
        self.reach = place_of(interaction).reach
        self._warning = ExpiryWarning(self.issued_at)

    @property
    def upload_limit(self) -> int:
        return int(getattr(self.interaction, "filesize_limit", 0) or DEFAULT_UPLOAD_LIMIT)

    def _token_valid(self) -> bool:
        return not self._expired and time.time() - self.issued_at < TOKEN_LIFETIME

    async def _warn(self) -> None:
        """The token is nearly gone and the job is still in progress: say where it will be."""
        if self._warning.done or not self._token_valid():
            return
        with contextlib.suppress(discord.HTTPException):
            message = await self.interaction.original_response()
            if _still_in_progress(message) and not self._warning.done:
                await self.interaction.edit_original_response(
                    content=self._warning.decorate(message.content)
                )

    async def show(self, content: str, *, view: discord.ui.View | None = None) -> None:
        if self.reach is Reach.INTERACTION:
            self._warning.arm(self._warn)
            content = self._warning.decorate(content)
        if self._token_valid():
            try:
                message = await self.interaction.edit_original_response(
                    content=content, view=view, embed=None, attachments=[]
                )
                self.message_id = message.id
                return
            except discord.HTTPException as exc:
                if not token_gone(exc):
                    log.debug("progress edit failed: %s", exc)
                    return
                self._expired = True
        if self.private or self.message_id is None or self.reach is Reach.INTERACTION:
            return  # an ephemeral message (or any, where only the interaction reaches)
        # A public response is also an ordinary bot message: keep it current that way.
        with contextlib.suppress(discord.HTTPException):
            channel = await _channel(self.client, self.channel_id)
            await _partial_message(channel, self.message_id).edit(
                content=content, view=view, embed=None, attachments=[]
            )

    async def finish(
        self,
        *,
        content: str | None = None,
        embed: discord.Embed | None = None,
        files: list[discord.File] | None = None,
        view: discord.ui.View | None = None,
        nonce: str | None = None,
    ) -> discord.Message | None:
        self._warning.disarm()
        if self._token_valid():
            try:
                message = await self.interaction.edit_original_response(
                    content=content, embed=embed, attachments=files or [], view=view
                )
                self.message_id = message.id
                return message
            except discord.HTTPException as exc:
                if not token_gone(exc):
                    raise
                self._expired = True
                _rewind(files)
        return await self._post_late(**_new_message(content, embed, files, view, nonce))

    async def _post_late(self, **kwargs: Any) -> discord.Message | None:
        """The token is gone: a new message that pings the requester (they may have left)."""
        if self.reach is Reach.INTERACTION:
            kwargs.pop("nonce", None)
            return await _deliver_elsewhere(self.client, self.user_id, self.issued_at, **kwargs)
        if self.private:
            return await _direct_message(self.client, self.user_id, self.channel_id, **kwargs)
        channel = await _channel(self.client, self.channel_id)
        mention = f"<@{self.user_id}> your request is done."
        content = kwargs.pop("content", None)
        kwargs["content"] = f"{mention} {content}" if content else mention
        message = await channel.send(**kwargs)
        stale = self.message_id
        self.message_id = message.id
        if stale is not None and stale != message.id:
            # The old progress message would say "Generating…" forever.
            with contextlib.suppress(discord.HTTPException):
                await _partial_message(channel, stale).delete()
        return message

    def resume_info(self) -> dict[str, Any]:
        # The interaction's token (it expires 15 minutes after issue) lets another process, or
        # a restarted one, answer in the same message, ephemeral ones included.
        return {
            **super().resume_info(),
            "application_id": self.interaction.application_id,
            "token": self.interaction.token,
            "issued_at": self.issued_at,
        }


class ChannelTarget(Target):
    """A bot message in a channel or thread (chain steps, restart recovery)."""

    def __init__(
        self,
        client: DiscordClient,
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
        return await _channel(self.client, self.channel_id)

    @property
    def upload_limit(self) -> int:
        return _guild_limit(self.client, self.channel_id)

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
                    await _partial_message(channel, self.message_id).edit(
                        content=content, view=view, embed=None, attachments=[]
                    )
            except discord.HTTPException as exc:
                log.debug("progress update failed: %s", exc)

    async def finish(
        self,
        *,
        content: str | None = None,
        embed: discord.Embed | None = None,
        files: list[discord.File] | None = None,
        view: discord.ui.View | None = None,
        nonce: str | None = None,
    ) -> discord.Message | None:
        async with self._lock:
            if self.message_id is not None:
                channel = await self._channel()
                try:
                    return await _partial_message(channel, self.message_id).edit(
                        content=content, embed=embed, attachments=files or [], view=view
                    )
                except discord.NotFound:
                    # The progress message was deleted: post the result anew.
                    _rewind(files)
            return await self._send(**_new_message(content, embed, files, view, nonce))

    def resume_info(self) -> dict[str, Any]:
        return {**super().resume_info(), "reply_to": self.reply_to}


class ResumedTarget(ChannelTarget):
    """A job carried on by a process that does not hold its interaction (after a restart, or
    another process), where it was shown (`resume_info`).

    While the interaction's token lasts, its response is edited through the interaction's
    webhook (the original response, even before its message id is known). After that a
    public one is edited as an ordinary bot message (or posted anew, mentioning the
    requester), and a private one goes to the requester's DMs.
    """

    def __init__(self, client: DiscordClient, info: dict[str, Any], *, user_id: int) -> None:
        message_id = info.get("message_id")
        reply_to = info.get("reply_to")
        super().__init__(
            client,
            channel_id=int(info.get("channel_id") or 0),
            user_id=user_id,
            reply_to=int(reply_to) if reply_to else None,
            message_id=int(message_id) if message_id else None,
        )
        self.private = bool(info.get("private"))
        self.reach = reach_of(info)
        self._token: str | None = info.get("token")
        self._application_id = int(info.get("application_id") or 0)
        self._issued_at = float(info.get("issued_at") or 0.0)
        self._from_interaction = bool(self._token)
        self._asked_at = self._issued_at or float(info.get("created_at") or time.time())
        self._warning = ExpiryWarning(self._issued_at)

    def _webhook(self) -> discord.Webhook | None:
        usable = (
            self._token
            and self._application_id
            and time.time() - self._issued_at < TOKEN_LIFETIME
        )
        if not usable:
            return None
        assert self._token is not None
        return discord.Webhook.partial(
            self._application_id, self._token, client=cast(discord.Client, self.client)
        )

    def _response_ref(self) -> int:
        # Before its id is known, the interaction's response is "@original" (an id Discord's
        # webhook routes accept in place of a message id).
        return self.message_id if self.message_id is not None else "@original"  # type: ignore[return-value]

    async def _warn(self) -> None:
        hook = self._webhook()
        if hook is None or self._warning.done:
            return
        with contextlib.suppress(discord.HTTPException):
            message = await hook.fetch_message(self._response_ref())
            if _still_in_progress(message) and not self._warning.done:
                await hook.edit_message(
                    self._response_ref(), content=self._warning.decorate(message.content)
                )

    async def show(self, content: str, *, view: discord.ui.View | None = None) -> None:
        hook = self._webhook()
        if self.reach is Reach.INTERACTION and hook is not None:
            self._warning.arm(self._warn)
            content = self._warning.decorate(content)
        if hook is not None:
            try:
                message = await hook.edit_message(
                    self._response_ref(), content=content, embed=None, view=view
                )
                self.message_id = message.id
                return
            except discord.HTTPException as exc:
                if not token_gone(exc):
                    log.debug("progress edit through the interaction failed: %s", exc)
                    return
                self._token = None
        if self.private or self.reach is Reach.INTERACTION:
            return  # an ephemeral message cannot be reached without the token
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
        self._warning.disarm()
        edited = await self._finish_through_token(content, embed, files, view)
        if edited is not None:
            return edited
        if self.reach is Reach.INTERACTION:
            return await _deliver_elsewhere(
                self.client,
                self.user_id,
                self._asked_at,
                **_new_message(content, embed, files, view),
            )
        if self.private:
            return await _direct_message(
                self.client,
                self.user_id,
                self.channel_id,
                **_new_message(content, embed, files, view, nonce),
            )
        if self.message_id is None and self._from_interaction:
            # A new message for someone who asked a while ago: ping them (they may have left).
            mention = f"<@{self.user_id}> your request is done."
            content = f"{mention} {content}" if content else mention
        return await super().finish(
            content=content, embed=embed, files=files, view=view, nonce=nonce
        )

    async def _finish_through_token(
        self,
        content: str | None,
        embed: discord.Embed | None,
        files: list[discord.File] | None,
        view: discord.ui.View | None,
    ) -> discord.Message | None:
        """The final edit through the interaction's webhook while its token lasts; None (the
        files rewound for another try) once the token is gone."""
        hook = self._webhook()
        if hook is None:
            return None
        try:
            message = await hook.edit_message(
                self._response_ref(), content=content, embed=embed, attachments=files or [], view=view
            )
        except discord.HTTPException as exc:
            if not token_gone(exc):
                raise
            self._token = None
            _rewind(files)
            return None
        self.message_id = message.id
        return message

    def resume_info(self) -> dict[str, Any]:
        info = super().resume_info()
        if self._token:
            info.update(
                application_id=self._application_id, token=self._token, issued_at=self._issued_at
            )
        return info


class FollowupTarget(Target):
    """A new followup message per result (batch variants); no progress of its own."""

    def __init__(
        self,
        interaction: discord.Interaction,
        *,
        label: str,
        private: bool = False,
        batch: dict[str, Any] | None = None,
    ) -> None:
        self.interaction = interaction
        self.channel_id = interaction.channel_id or 0
        self.user_id = interaction.user.id
        self.private = private
        self.label = label
        self.batch = batch  # the batch it belongs to, kept with the job for a restart
        self.issued_at = interaction.created_at.timestamp()
        self.reach = place_of(interaction).reach

    def resume_info(self) -> dict[str, Any]:
        info = super().resume_info()
        if self.batch is not None:
            info["batch"] = self.batch
        return info

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
        nonce: str | None = None,
    ) -> discord.Message | None:
        text = f"**{self.label}**" + (f" — {content}" if content else "")
        kwargs = _new_message(text[:2000], embed, files, view, nonce)
        if time.time() - self.issued_at < TOKEN_LIFETIME:
            hook_kwargs = {k: v for k, v in kwargs.items() if k != "nonce"}  # webhooks take none
            try:
                return await self.interaction.followup.send(
                    wait=True, ephemeral=self.private, **hook_kwargs
                )
            except discord.HTTPException as exc:
                if not token_gone(exc):
                    raise
                _rewind(files)
        if self.reach is Reach.INTERACTION:
            kwargs.pop("nonce", None)
            return await _deliver_elsewhere(
                self.interaction.client, self.user_id, self.issued_at, **kwargs
            )
        if self.private:
            return await _direct_message(
                self.interaction.client, self.user_id, self.channel_id, **kwargs
            )
        channel = await _channel(self.interaction.client, self.channel_id)
        return await channel.send(**kwargs)
