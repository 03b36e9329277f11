"""REST handlers: threads (from a message, thread id == message id; without a message, public
or private; joining one, adding a member). Refuses a thread in a DM (50003), a second thread on
a message (160004), a thread inside a thread (50024), a thread without Create Public Threads /
Create Private Threads (50013), anything where the bot is not a member (50001: a group DM, a
guild without it, a private thread it is not in), adding someone without Send Messages in
Threads (50013) or who is not in the guild (10007)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tests.fakes.discord_gateway import I_GUILDS
from tests.fakes.discord_http import CHANNEL, MESSAGE, Req, RouteSpec
from tests.fakes.discord_limits import (
    DiscordError,
    check_thread_name,
    dm_action,
    form_error,
    missing_permissions,
    thread_exists,
    wrong_channel_type,
)
from tests.fakes.discord_state import (
    CH_PRIVATE_THREAD,
    CH_PUBLIC_THREAD,
    P_CREATE_PRIVATE_THREADS,
    P_CREATE_PUBLIC_THREADS,
    P_SEND_IN_THREADS,
    ChannelRecord,
)

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord


class ThreadRoutes:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def routes(self) -> list[RouteSpec]:
        c, m = CHANNEL, MESSAGE
        return [
            (
                "POST",
                f"/channels/{c}/messages/{m}/threads",
                self.thread_from_message,
                True,
                "/channels/{channel_id}/messages/{message_id}/threads",
            ),
            ("POST", f"/channels/{c}/threads", self.thread_without_message, True, None),
            ("PUT", f"/channels/{c}/thread-members/@me", self.join, True, None),
            (
                "PUT",
                rf"/channels/{c}/thread-members/(?P<user_id>\d+)",
                self.add_member,
                True,
                None,
            ),
        ]

    def new_thread(
        self,
        parent: ChannelRecord,
        body: Mapping[str, Any],
        *,
        thread_id: int,
        from_message: int | None,
        thread_type: int = CH_PUBLIC_THREAD,
    ) -> ChannelRecord:
        fake, state = self.fake, self.fake.state
        if parent.is_dm:
            raise dm_action()
        if parent.is_thread:
            raise wrong_channel_type()
        needed = P_CREATE_PRIVATE_THREADS if thread_type == CH_PRIVATE_THREAD else P_CREATE_PUBLIC_THREADS
        if not state.bot_channel_permissions(parent) & needed:
            raise missing_permissions()
        check_thread_name(body.get("name"))
        thread = ChannelRecord(
            id=thread_id,
            name=str(body["name"]),
            type=thread_type,
            guild_id=parent.guild_id,
            parent_id=parent.id,
            owner_id=fake.bot_user.id,
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
            member_ids={fake.bot_user.id},
            from_message_id=from_message,
            invitable=bool(body.get("invitable", True)),
        )
        state.channels[thread.id] = thread
        state.channel_log[thread.id] = []
        created = {**thread.payload(), "newly_created": True}
        fake.gateway.dispatch("THREAD_CREATE", created, intent=I_GUILDS)
        fake._log(f"THREAD created {thread.name!r} id={thread.id} in #{parent.name}")
        fake._notify()
        return thread

    async def thread_from_message(self, req: Req) -> tuple[int, Any]:
        fake = self.fake
        parent = fake.builder.bot_channel(req.params["channel_id"])
        msg = fake.builder.channel_message(req.params["channel_id"], req.params["message_id"])
        if fake.state.thread_for_message(msg.id) is not None:
            raise thread_exists()
        thread = self.new_thread(parent, req.body, thread_id=msg.id, from_message=msg.id)
        fake.events.message("MESSAGE_UPDATE", msg)
        return 201, thread.payload()

    async def thread_without_message(self, req: Req) -> tuple[int, Any]:
        parent = self.fake.builder.bot_channel(req.params["channel_id"])
        body = req.body
        ttype = int(body.get("type") or CH_PRIVATE_THREAD)
        if ttype not in (CH_PUBLIC_THREAD, CH_PRIVATE_THREAD):
            raise form_error(["type"], "BASE_TYPE_CHOICES", "Value must be one of {11, 12}.")
        thread = self.new_thread(
            parent, body, thread_id=self.fake.state.ids.next(), from_message=None, thread_type=ttype
        )
        return 201, thread.payload()

    async def join(self, req: Req) -> tuple[int, Any]:
        self.fake.builder.bot_channel(req.params["channel_id"])
        return 204, None

    async def add_member(self, req: Req) -> tuple[int, Any]:
        fake, state = self.fake, self.fake.state
        thread = fake.builder.bot_channel(req.params["channel_id"])
        if not thread.is_thread:
            raise wrong_channel_type()
        if not state.bot_channel_permissions(thread) & P_SEND_IN_THREADS:
            raise missing_permissions()
        user_id = int(req.params["user_id"])
        guild = state.guild(thread.guild_id)
        if user_id not in guild.members:
            raise DiscordError(404, 10007, "Unknown Member")
        thread.member_ids.add(user_id)
        fake._log(f"THREAD {thread.name!r}: member {user_id} added")
        fake._notify()
        return 204, None
