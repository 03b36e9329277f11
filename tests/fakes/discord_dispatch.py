"""What the gateway announces about messages: MESSAGE_CREATE / MESSAGE_UPDATE / MESSAGE_DELETE
with the intents that gate them (GUILD_MESSAGES, or DIRECT_MESSAGES in a DM, where the events
carry no guild_id), never for ephemeral messages, and with other users' guild message bodies
blanked for sessions without the MESSAGE_CONTENT intent (unless the bot is mentioned; DMs are
never blanked). Nothing at all is announced from where the bot is not a member: group DMs,
guilds without it, private threads it was not added to (interaction responses included).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.fakes.discord_gateway import (
    I_DIRECT_MESSAGES,
    I_GUILD_MESSAGES,
    I_MESSAGE_CONTENT,
    GatewaySession,
)
from tests.fakes.discord_state import MessageRecord

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord


class MessageEvents:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def content_gate(
        self, msg: MessageRecord
    ) -> Callable[[GatewaySession, dict[str, Any]], dict[str, Any]] | None:
        """Without the MESSAGE_CONTENT intent Discord blanks other users' message bodies."""
        bot_id = self.fake.bot_user.id
        if msg.guild_id is None:  # the bot always sees the content of its DMs
            return None
        if msg.author.id == bot_id or any(u.id == bot_id for u in msg.mentions):
            return None

        def gate(session: GatewaySession, d: dict[str, Any]) -> dict[str, Any]:
            if session.has(I_MESSAGE_CONTENT):
                return d
            return {**d, "content": "", "embeds": [], "attachments": [], "components": []}

        return gate

    def message(self, event: str, msg: MessageRecord) -> None:
        """MESSAGE_CREATE or MESSAGE_UPDATE for a message (nothing for an ephemeral one)."""
        if msg.visible_to is not None:  # ephemeral messages never reach the gateway
            return
        if not self._bot_sees(msg):
            return
        creating = event == "MESSAGE_CREATE"
        payload = self.fake.state.message_payload(msg, gateway=True, nonce=creating)
        self.fake.gateway.dispatch(
            event, payload, intent=self.intent_for(msg), transform=self.content_gate(msg)
        )

    def _bot_sees(self, msg: MessageRecord) -> bool:
        state = self.fake.state
        channel = state.channels.get(msg.channel_id)
        return channel is None or state.bot_can_view(channel)

    def delete(self, msg: MessageRecord) -> None:
        if msg.visible_to is not None or not self._bot_sees(msg):
            return
        payload = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
        if msg.guild_id is not None:
            payload["guild_id"] = str(msg.guild_id)
        self.fake.gateway.dispatch("MESSAGE_DELETE", payload, intent=self.intent_for(msg))

    @staticmethod
    def intent_for(msg: MessageRecord) -> int:
        return I_GUILD_MESSAGES if msg.guild_id is not None else I_DIRECT_MESSAGES
