"""What the gateway announces about messages: MESSAGE_CREATE / MESSAGE_UPDATE / MESSAGE_DELETE
with the intents that gate them, never for ephemeral messages, and with other users' message
bodies blanked for sessions without the MESSAGE_CONTENT intent (unless the bot is mentioned).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.fakes.discord_gateway import I_GUILD_MESSAGES, I_MESSAGE_CONTENT, GatewaySession
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
        payload = self.fake.state.message_payload(msg, gateway=True)
        self.fake.gateway.dispatch(
            event, payload, intent=I_GUILD_MESSAGES, transform=self.content_gate(msg)
        )

    def delete(self, msg: MessageRecord) -> None:
        if msg.visible_to is not None:
            return
        payload = {
            "id": str(msg.id),
            "channel_id": str(msg.channel_id),
            "guild_id": str(self.fake.guild_id),
        }
        self.fake.gateway.dispatch("MESSAGE_DELETE", payload, intent=I_GUILD_MESSAGES)
