"""REST handlers: DM channels. `POST /users/@me/channels {"recipient_id"}` opens (the first
time) and returns the bot's DM with a user: type 1, `recipients`, no guild. Discord's refusals:
400 50033 for an unknown recipient, 400 50007 for the bot itself. Opening a DM always works;
whether the bot may post in it (closed DMs: 403 50007) is decided when it posts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakes.discord_http import Req, RouteSpec
from tests.fakes.discord_limits import cannot_message_user, form_error, invalid_recipients

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord


class DmRoutes:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def routes(self) -> list[RouteSpec]:
        return [("POST", "/users/@me/channels", self.open_dm, True, "/users/@me/channels")]

    async def open_dm(self, req: Req) -> tuple[int, Any]:
        fake = self.fake
        raw = req.body.get("recipient_id")
        if raw is None:
            raise form_error(["recipient_id"], "BASE_TYPE_REQUIRED", "This field is required")
        try:
            user_id = int(raw)
        except (TypeError, ValueError):
            raise form_error(
                ["recipient_id"], "NUMBER_TYPE_COERCE", f'Value "{raw}" is not snowflake.'
            ) from None
        if user_id == fake.bot_user.id:
            raise cannot_message_user(400)
        user = fake.state.users.get(user_id)
        if user is None:
            raise invalid_recipients()
        channel = fake.state.dm_channel(user)
        fake._log(f"DM channel {channel.id} with {user.username}")
        return 200, channel.payload()
