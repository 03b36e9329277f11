"""REST handlers: threads (from a message, thread id == message id; without a message, public
or private; joining one). Refuses a thread in a DM (50003), a second thread on a message
(160004), a thread inside a thread (50024) and, when switched off, thread creation (50013)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tests.fakes.discord_gateway import I_GUILDS
from tests.fakes.discord_http import CHANNEL, MESSAGE, Req, RouteSpec
from tests.fakes.discord_limits import (
    check_thread_name,
    dm_action,
    form_error,
    missing_permissions,
    thread_exists,
    wrong_channel_type,
)
from tests.fakes.discord_state import CH_PRIVATE_THREAD, CH_PUBLIC_THREAD, ChannelRecord

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
        if not state.thread_creation_allowed:
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
        parent = fake.builder.channel(req.params["channel_id"])
        msg = fake.builder.channel_message(req.params["channel_id"], req.params["message_id"])
        if fake.state.thread_for_message(msg.id) is not None:
            raise thread_exists()
        thread = self.new_thread(parent, req.body, thread_id=msg.id, from_message=msg.id)
        fake.events.message("MESSAGE_UPDATE", msg)
        return 201, thread.payload()

    async def thread_without_message(self, req: Req) -> tuple[int, Any]:
        parent = self.fake.builder.channel(req.params["channel_id"])
        body = req.body
        ttype = int(body.get("type") or CH_PRIVATE_THREAD)
        if ttype not in (CH_PUBLIC_THREAD, CH_PRIVATE_THREAD):
            raise form_error(["type"], "BASE_TYPE_CHOICES", "Value must be one of {11, 12}.")
        thread = self.new_thread(
            parent, body, thread_id=self.fake.state.ids.next(), from_message=None, thread_type=ttype
        )
        return 201, thread.payload()

    async def join(self, req: Req) -> tuple[int, Any]:
        self.fake.builder.channel(req.params["channel_id"])
        return 204, None
