"""REST handlers: guilds (guild, channels, roles, active threads, one member) for every guild
the bot is in; 403 50001 for a guild it is not in, 404 10004 for an unknown one, 10007 for a
user who is not a member."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakes.discord_http import GUILD, Req, RouteSpec
from tests.fakes.discord_limits import DiscordError, missing_access
from tests.fakes.discord_state import GuildRecord

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord


class GuildRoutes:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def routes(self) -> list[RouteSpec]:
        g = GUILD
        return [
            ("GET", f"/guilds/{g}", self.guild, True, None),
            ("GET", f"/guilds/{g}/channels", self.channels, True, None),
            ("GET", f"/guilds/{g}/roles", self.roles, True, None),
            ("GET", f"/guilds/{g}/threads/active", self.active_threads, True, None),
            ("GET", rf"/guilds/{g}/members/(?P<user_id>\d+)", self.member, True, None),
        ]

    def _guild(self, req: Req) -> GuildRecord:
        guild = self.fake.state.guilds.get(int(req.params["guild_id"]))
        if guild is None:
            raise DiscordError(404, 10004, "Unknown Guild")
        if not guild.bot_member:
            raise missing_access()
        return guild

    async def guild(self, req: Req) -> tuple[int, Any]:
        guild = self._guild(req)
        out = self.fake.state.guild_payload(guild.id)
        out.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
        return 200, out

    async def channels(self, req: Req) -> tuple[int, Any]:
        guild = self._guild(req)
        return 200, [c.payload() for c in self.fake.state.text_channels(guild.id)]

    async def roles(self, req: Req) -> tuple[int, Any]:
        return 200, [r.payload() for r in self._guild(req).roles.values()]

    async def active_threads(self, req: Req) -> tuple[int, Any]:
        guild = self._guild(req)
        state = self.fake.state
        threads = [t for t in state.threads(guild.id) if not t.archived and state.bot_can_view(t)]
        return 200, {"threads": [t.payload() for t in threads], "members": []}

    async def member(self, req: Req) -> tuple[int, Any]:
        guild = self._guild(req)
        uid = int(req.params["user_id"])
        if uid not in guild.members:
            raise DiscordError(404, 10007, "Unknown Member")
        return 200, self.fake.state.member_payload(uid, guild_id=guild.id)
