"""REST handlers: who the bot is and where the gateway is (`/gateway`, `/gateway/bot` with the
recommended shard count, `/users/@me`, `/users/{id}`, `/applications/@me`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakes.discord_http import Req, RouteSpec
from tests.fakes.discord_limits import DiscordError

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord


class IdentityRoutes:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def routes(self) -> list[RouteSpec]:
        return [
            ("GET", "/gateway", self.gateway, False, None),
            ("GET", "/gateway/bot", self.gateway_bot, True, None),
            ("GET", "/users/@me", self.me, True, None),
            ("GET", r"/users/(?P<user_id>\d+)", self.user, True, None),
            ("GET", "/applications/@me", self.application, True, None),
            ("GET", "/oauth2/applications/@me", self.application, True, None),
        ]

    async def gateway(self, req: Req) -> tuple[int, Any]:
        return 200, {"url": self.fake.gateway_url}

    async def gateway_bot(self, req: Req) -> tuple[int, Any]:
        limit = {"total": 1000, "remaining": 999, "reset_after": 86400000, "max_concurrency": 1}
        shards = self.fake.recommended_shards
        return 200, {"url": self.fake.gateway_url, "shards": shards, "session_start_limit": limit}

    async def me(self, req: Req) -> tuple[int, Any]:
        me = self.fake.bot_user.payload()
        me.update(
            verified=True, mfa_enabled=False, email=None, locale="en-US", premium_type=0, bio=""
        )
        return 200, me

    async def user(self, req: Req) -> tuple[int, Any]:
        user = self.fake.state.users.get(int(req.params["user_id"]))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return 200, user.payload()

    async def application(self, req: Req) -> tuple[int, Any]:
        return 200, self.fake.state.application_payload()
