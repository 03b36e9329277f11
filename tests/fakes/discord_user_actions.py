"""What fake users' clients send (used by the driver): a new interaction goes out as
INTERACTION_CREATE and starts Discord's 3 s acknowledgement deadline (a timer, and the fake
clock), after which it is marked failed ("This interaction failed"); a user's message is stored
and announced as MESSAGE_CREATE.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tests.fakes.discord_limits import MAX_ATTACHMENTS
from tests.fakes.discord_state import (
    MT_DEFAULT,
    MT_REPLY,
    ChannelRecord,
    InteractionRecord,
    MessageRecord,
    UserRecord,
    image_size,
)

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord


class UserActions:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self._timers: set[asyncio.TimerHandle] = set()

    def cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    # -- interactions --------------------------------------------------------------------
    def fail(self, ix: InteractionRecord, reason: str) -> None:
        if not ix.failed:
            ix.failed = True
            ix.fail_reason = reason
            self.fake._log(f"FAILED interaction {ix.name or ix.type}: {reason}")
            self.fake._notify()

    def check_deadline(self, ix: InteractionRecord) -> None:
        if ix.acked or ix.failed:
            return
        deadline = self.fake.ack_deadline
        if self.fake.now() - ix.created > deadline:
            self.fail(ix, f"not acknowledged within {deadline}s ('This interaction failed')")

    def schedule_deadline(self, ix: InteractionRecord, delay: float) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self.check_deadline(ix)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def start_interaction(self, ix: InteractionRecord) -> None:
        """Register an interaction a fake user started and send INTERACTION_CREATE."""
        fake = self.fake
        fake.state.interactions[ix.id] = ix
        fake.state.interactions_by_token[ix.token] = ix
        fake.gateway.dispatch("INTERACTION_CREATE", ix.payload)
        self.schedule_deadline(ix, fake.ack_deadline + 0.005)
        fake._notify()

    # -- messages ------------------------------------------------------------------------
    async def user_message(
        self,
        user: UserRecord,
        channel: ChannelRecord,
        content: str,
        files: Iterable[tuple[str, bytes, str | None]],
        *,
        reference: MessageRecord | None = None,
        mention_author: bool = True,
    ) -> MessageRecord:
        fake, state = self.fake, self.fake.state
        attachments = []
        for filename, data, content_type in files:
            size = image_size(data)
            attachments.append(
                state.make_attachment(
                    filename, data, channel_id=channel.id, content_type=content_type, size=size
                )
            )
        if len(attachments) > MAX_ATTACHMENTS:
            raise ValueError("a Discord message holds at most 10 attachments")
        mentions = fake.builder.mentions(content)
        fields: dict[str, Any] = {}
        if reference is not None:
            fields["message_reference"] = state.reference_payload(reference)
            # A reply pings the author, except for interaction responses (webhook messages):
            # Discord does not count those as mentioning the bot.
            if mention_author and reference.author not in mentions and reference.webhook_id is None:
                mentions.append(reference.author)
        msg = MessageRecord(
            id=state.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=user,
            content=content,
            attachments=attachments,
            type=MT_REPLY if reference is not None else MT_DEFAULT,
            mentions=mentions,
            **fields,
        )
        state.add_message(msg)
        fake.events.message("MESSAGE_CREATE", msg)
        fake._notify()
        return msg
