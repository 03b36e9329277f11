"""REST handlers: application command sync (GET and bulk PUT of global and guild commands),
with Discord's validation (discord_limits.check_commands) and stable ids across re-syncs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakes.discord_http import APP, GUILD, Req, RouteSpec
from tests.fakes.discord_limits import DiscordError, check_commands

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord


class CommandRoutes:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def routes(self) -> list[RouteSpec]:
        return [
            ("GET", f"/applications/{APP}/commands", self.get_commands, True, None),
            (
                "PUT",
                f"/applications/{APP}/commands",
                self.put_commands,
                True,
                "/applications/{application_id}/commands",
            ),
            ("GET", f"/applications/{APP}/guilds/{GUILD}/commands", self.get_commands, True, None),
            (
                "PUT",
                f"/applications/{APP}/guilds/{GUILD}/commands",
                self.put_commands,
                True,
                "/applications/{application_id}/guilds/{guild_id}/commands",
            ),
        ]

    def _check_app(self, req: Req) -> None:
        fake = self.fake
        if int(req.params["app_id"]) != fake.application_id:
            raise DiscordError(403, 50001, "Missing Access")
        if "guild_id" in req.params and int(req.params["guild_id"]) not in fake.state.bot_guilds():
            raise DiscordError(403, 50001, "Missing Access")

    async def get_commands(self, req: Req) -> tuple[int, Any]:
        self._check_app(req)
        state = self.fake.state
        if "guild_id" in req.params:
            return 200, state.guild_commands.get(int(req.params["guild_id"]), [])
        return 200, state.global_commands

    async def put_commands(self, req: Req) -> tuple[int, Any]:
        self._check_app(req)
        fake, state = self.fake, self.fake.state
        guild_id = int(req.params["guild_id"]) if "guild_id" in req.params else None
        check_commands(req.json, global_=guild_id is None)
        old = state.guild_commands.get(guild_id, []) if guild_id else state.global_commands
        old_ids = {(c["type"], c["name"]): c["id"] for c in old}
        stored = []
        for cmd in req.json:
            ctype = int(cmd.get("type") or 1)
            out = {k: v for k, v in cmd.items() if v is not None}
            out.update(
                id=old_ids.get((ctype, cmd["name"])) or str(state.ids.next()),
                application_id=str(fake.application_id),
                version=str(state.ids.next()),
                type=ctype,
                description=cmd.get("description") or "",
                default_member_permissions=cmd.get("default_member_permissions"),
                nsfw=bool(cmd.get("nsfw", False)),
            )
            if guild_id is not None:
                out["guild_id"] = str(guild_id)
            stored.append(out)
        if guild_id is not None:
            state.guild_commands[guild_id] = stored
        else:
            state.global_commands = stored
        fake._notify()
        return 200, stored
