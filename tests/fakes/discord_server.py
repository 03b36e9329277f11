"""A loopback fake Discord: REST API, gateway and CDN on one aiohttp server (127.0.0.1,
random port), enforcing the limits production enforces.

    fake = FakeDiscord(); await fake.start()
    # point discord.py at it: discord.http.Route.BASE = fake.api_base,
    # discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    await fake.wait_until_ready()
    alice = fake.user("alice"); ix = await alice.slash("imagine", prompt="a cat")

This module holds FakeDiscord itself: construction and lifecycle, read-only views and test
controls. The parts it composes live beside it (see tests/fakes/README.md for the map and the
whole surface).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes import discord_schema
from tests.fakes.discord_cdn import Cdn
from tests.fakes.discord_dispatch import MessageEvents
from tests.fakes.discord_gateway import (
    I_GUILD_MEMBERS,
    I_GUILD_PRESENCES,
    I_GUILDS,
    I_MESSAGE_CONTENT,
    Gateway,
    shard_for,
)
from tests.fakes.discord_http import RestApi, RestCall, UploadedFile
from tests.fakes.discord_limits import (
    ACK_DEADLINE_S,
    DEFAULT_UPLOAD_LIMIT,
    NONCE_WINDOW_S,
    TOKEN_LIFETIME_S,
)
from tests.fakes.discord_messages import MessageBuilder
from tests.fakes.discord_rest_channels import ChannelRoutes
from tests.fakes.discord_rest_commands import CommandRoutes
from tests.fakes.discord_rest_dms import DmRoutes
from tests.fakes.discord_rest_guild import GuildRoutes
from tests.fakes.discord_rest_identity import IdentityRoutes
from tests.fakes.discord_rest_interactions import InteractionRoutes
from tests.fakes.discord_rest_threads import ThreadRoutes
from tests.fakes.discord_state import (
    AttachmentRecord,
    ChannelRecord,
    DiscordState,
    InteractionRecord,
    MessageRecord,
    UserRecord,
)
from tests.fakes.discord_user_actions import UserActions
from tests.fakes.discord_waits import Waiting

if TYPE_CHECKING:
    from tests.fakes.discord_driver import FakeUser

__all__ = ["FakeDiscord", "RestCall", "UploadedFile"]


def _bot_token(app_id: int) -> str:
    head = base64.b64encode(str(app_id).encode()).decode().rstrip("=")
    tail = hashlib.sha256(str(app_id).encode()).hexdigest()
    return f"{head}.Fake00.{tail[:38]}"


class FakeDiscord(Waiting):
    """The fake Discord server plus test controls. One guild (more with add_guild()), state
    persistent across bot restarts, any number of gateway sessions (shards)."""

    def __init__(
        self,
        *,
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
        ack_deadline: float = ACK_DEADLINE_S,
        validate_schema: bool = True,
    ) -> None:
        super().__init__()
        self.state = DiscordState()
        self.application_id = self.state.application_id
        self.guild_id = self.state.guild_id
        self.bot_user: UserRecord = self.state.bot_user
        self.token = _bot_token(self.application_id)
        self.upload_limit = upload_limit  # also sets the guild's boost tier to match
        self.cdn_latency = 0.0  # seconds every attachment download takes (test control)
        self.ack_deadline = ack_deadline
        self.token_lifetime = TOKEN_LIFETIME_S
        self.nonce_window = NONCE_WINDOW_S  # enforce_nonce looks back this far (fake clock)
        self.recommended_shards = 1  # GET /gateway/bot "shards"
        self.validate_schema = validate_schema and discord_schema.available()
        self.requests: list[RestCall] = []
        self.schema_violations: list[dict[str, Any]] = []
        self.ack_latencies: list[float] = []
        self.unhandled: list[str] = []
        self.internal_errors: list[str] = []
        self.invalid_requests = 0
        self.gateway = Gateway(self.state, self.token, log=self._log, notify=self._notify)
        self.base_url = ""
        self.api_base = ""
        self.gateway_url = ""
        self._clock_offset = 0.0
        self._runner: web.AppRunner | None = None
        # The parts (each in its own module).
        self.builder = MessageBuilder(self)
        self.events = MessageEvents(self)
        self.actions = UserActions(self)
        self.cdn = Cdn(self)
        self.rest = RestApi(
            self,
            [
                *IdentityRoutes(self).routes(),
                *CommandRoutes(self).routes(),
                *InteractionRoutes(self).routes(),
                *ChannelRoutes(self).routes(),
                *ThreadRoutes(self).routes(),
                *GuildRoutes(self).routes(),
                *DmRoutes(self).routes(),
            ],
        )

    # ==== lifecycle ==========================================================================
    async def start(self) -> FakeDiscord:
        app = web.Application(client_max_size=512 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/resume", self.gateway.handle)
        self.cdn.add_routes(app)
        app.router.add_route("*", "/api/{tail:.*}", self.rest.handle)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = int(self._runner.addresses[0][1])
        self.base_url = f"http://127.0.0.1:{port}"
        self.api_base = f"{self.base_url}/api/v10"
        self.gateway_url = f"ws://127.0.0.1:{port}/gateway"
        self.gateway.url = self.gateway_url
        self.gateway.resume_url = f"ws://127.0.0.1:{port}/resume"
        self.state.base_url = self.base_url
        return self

    async def stop(self) -> None:
        self.actions.cancel_timers()
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def upload_limit(self) -> int:
        """The default guild's per-file upload limit (10 MiB; 50/100 MiB for boosted servers;
        the guild's premium tier follows)."""
        return self.state.guild().upload_limit

    @upload_limit.setter
    def upload_limit(self, value: int) -> None:
        self.state.guild().upload_limit = value

    def upload_limit_in(self, channel: ChannelRecord) -> int:
        """The per-file limit where a message goes: its guild's, or 10 MiB in a DM."""
        if channel.guild_id is None:
            return DEFAULT_UPLOAD_LIMIT
        return self.state.guild(channel.guild_id).upload_limit

    # ==== read-only views for tests ==========================================================
    def user(self, name: str) -> FakeUser:
        from tests.fakes.discord_driver import FakeUser

        return FakeUser(self, self.state.user_by_name(name))

    def channel(self, name: str, *, guild: int | None = None) -> int:
        """A text channel's id by name (in `guild`; by default the default guild's first)."""
        return self.state.channel_by_ref(name, guild).id

    @property
    def guild_ids(self) -> list[int]:
        """Every guild the bot is in, the default one first."""
        return self.state.bot_guilds()

    @staticmethod
    def shard_for(guild_id: int | None, shard_count: int) -> int:
        """The shard that gets a guild's events: (guild_id >> 22) % shard_count (None: 0)."""
        return shard_for(guild_id, shard_count)

    def dm_channel(self, user: FakeUser | UserRecord | str | int) -> int:
        """The id of the bot's DM with `user` (opened now if neither side has opened it)."""
        return self.state.dm_channel(self._user_record(user)).id

    def messages_in(
        self, channel: int | str, *, include_deleted: bool = False
    ) -> list[MessageRecord]:
        return self.state.history(
            self.state.channel_by_ref(channel).id, include_deleted=include_deleted
        )

    def message(self, message_id: int | str) -> MessageRecord:
        msg = self.state.messages.get(int(message_id))
        if msg is None:
            raise KeyError(f"no message {message_id}")
        return msg

    def attachment_bytes(
        self, attachment: AttachmentRecord | Mapping[str, Any] | int | str
    ) -> bytes:
        if isinstance(attachment, AttachmentRecord):
            return attachment.data
        if isinstance(attachment, Mapping):
            attachment = attachment["id"]
        if isinstance(attachment, str) and "/" in attachment:
            attachment = attachment.split("?")[0].rstrip("/").split("/")[-2]
        assert isinstance(attachment, int | str)
        return self.state.attachments[int(attachment)].data

    @property
    def threads(self) -> list[ChannelRecord]:
        return self.state.threads()

    @property
    def interactions(self) -> list[InteractionRecord]:
        return list(self.state.interactions.values())

    def commands(
        self, *, guild: bool | None = None, guild_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Synced command definitions: global, a guild's (the default guild's unless
        `guild_id`), or (None) both."""
        out: list[dict[str, Any]] = []
        if guild in (None, False):
            out += self.state.global_commands
        if guild in (None, True):
            out += self.state.guild_commands.get(guild_id or self.guild_id, [])
        return out

    @property
    def resumes(self) -> int:
        return self.gateway.resume_count

    @property
    def identifies(self) -> int:
        return self.gateway.identify_count

    def _user_record(self, user: FakeUser | UserRecord | str | int) -> UserRecord:
        if isinstance(user, UserRecord):
            return user
        if isinstance(user, int):
            return self.state.users[user]
        if isinstance(user, str):
            return self.state.user_by_name(user)
        return user.record

    def now(self) -> float:
        """The fake clock (monotonic seconds); advance_clock() moves it forward."""
        return time.monotonic() + self._clock_offset

    # ==== test controls ======================================================================
    def advance_clock(self, seconds: float) -> None:
        """Move the fake clock: interaction deadlines, webhook tokens, CDN link expiry."""
        self._clock_offset += seconds
        self.state.clock_offset = self._clock_offset
        self._log(f"CLOCK +{seconds}s")
        for ix in self.state.interactions.values():
            self.actions.check_deadline(ix)
        self._notify()

    def add_guild(
        self,
        name: str = "Second Guild",
        *,
        channels: Iterable[str] = ("general",),
        members: Iterable[str] = (),
        roles: Mapping[str, int] | None = None,
        member_roles: Mapping[str, Iterable[str]] | None = None,
        owner: str | None = None,
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
        on_shard: tuple[int, int] | None = None,
        bot: bool = True,
    ) -> int:
        """Put the bot in another guild and return its id: text `channels`, `members` by name
        (new names become users; existing users such as "alice" are shared), extra `roles`
        (name -> permission bits) given to members by `member_roles`, an `owner` (default: the
        first member). `on_shard=(shard_id, shard_count)` picks an id that the sharding formula
        sends to that shard. A connected bot gets GUILD_CREATE (discord.py: on_guild_join).

        `bot=False` makes a guild the bot is NOT in: no GUILD_CREATE, its channels answer the
        bot 403 50001, their messages never reach the gateway; members who installed the app
        (install_app) still use its user-install commands there (context 0)."""
        gid = None
        if on_shard is not None:
            shard_id, count = on_shard
            gid = self.state.ids.next_where(lambda i: shard_for(i, count) == shard_id)
        guild = self.state.add_guild(
            name,
            guild_id=gid,
            channels=channels,
            members=members,
            roles=roles,
            member_roles=member_roles,
            owner=owner,
            upload_limit=upload_limit,
            bot=bot,
        )
        self._log(f"TEST add_guild({name!r}, bot={bot}) id={guild.id}")
        if bot:
            self.gateway.guild_joined(guild.id)
        self._notify()
        return guild.id

    # -- places without the bot, private threads, user installs ---------------------------
    def install_app(self, user: FakeUser | UserRecord | str | int) -> None:
        """The user installs the app to their account (user install): its commands whose
        integration_types include 1 are offered to them in every server, their DM with the
        bot and their group DMs (where the contexts allow)."""
        record = self._user_record(user)
        self.state.user_installs.add(record.id)
        self._log(f"TEST install_app({record.username})")

    def uninstall_app(self, user: FakeUser | UserRecord | str | int) -> None:
        record = self._user_record(user)
        self.state.user_installs.discard(record.id)
        self._log(f"TEST uninstall_app({record.username})")

    def add_group_dm(
        self, *members: str, name: str | None = None, owner: str | None = None
    ) -> int:
        """A group DM (type 3) of these users; returns its id. The bot is never in it: the
        bot's REST calls there get 403 50001 and its messages never reach the gateway; users
        who installed the app use its commands there (context 2)."""
        ch = self.state.add_group_dm(members, name=name, owner=owner)
        self._log(f"TEST add_group_dm({', '.join(members)}) id={ch.id}")
        return ch.id

    def add_private_thread(
        self,
        parent: int | str,
        name: str = "private",
        *,
        owner: str,
        members: Iterable[str] = (),
        bot: bool = False,
    ) -> int:
        """A private thread (type 12) a user started in `parent`; returns its id. Only its
        members see it; the bot only if `bot` (a member) or with Manage Threads: otherwise
        its REST calls there get 403 50001 and the thread's messages never reach it."""
        state = self.state
        thread = state.add_private_thread(
            state.channel_by_ref(parent),
            name,
            owner=state.user_by_name(owner),
            members=[state.user_by_name(m) for m in members],
        )
        if bot:
            thread.member_ids.add(self.bot_user.id)
        if state.bot_can_view(thread):
            self.gateway.dispatch(
                "THREAD_CREATE", {**thread.payload(), "newly_created": True}, intent=I_GUILDS
            )
        self._log(f"TEST add_private_thread({name!r}, bot={bot}) id={thread.id}")
        self._notify()
        return thread.id

    def add_thread_member(self, thread: int, user: str) -> None:
        """A member adds `user` (or "Nano Banana", the bot) to a thread."""
        ch = self.state.channels[int(thread)]
        record = self.state.user_by_name(user)
        was_visible = self.state.bot_can_view(ch)
        ch.member_ids.add(record.id)
        if record.id == self.bot_user.id and not was_visible:
            self.gateway.dispatch(
                "THREAD_CREATE", {**ch.payload(), "newly_created": False}, intent=I_GUILDS
            )
        self._log(f"TEST add_thread_member({ch.name!r}, {user})")
        self._notify()

    def set_private_threads_allowed(self, allowed: bool) -> None:
        """The bot's Create Private Threads right (off: private thread create -> 403 50013)."""
        self.state.private_threads_allowed = allowed

    def set_bot_permissions(self, permissions: int, *, guild_id: int | None = None) -> None:
        """Replace the bot's role permissions in a guild (GUILD_ROLE_UPDATE tells the bot)."""
        guild = self.state.guild(guild_id)
        role = guild.roles[guild.bot_role_id]
        role.permissions = permissions
        self.gateway.dispatch(
            "GUILD_ROLE_UPDATE", {"guild_id": str(guild.id), "role": role.payload()}, intent=I_GUILDS
        )
        self._notify()

    def set_thread_creation_allowed(self, allowed: bool) -> None:
        self.state.thread_creation_allowed = allowed

    def close_dms(self, user: FakeUser | UserRecord | str | int) -> None:
        """The user stops accepting DMs from the bot: its messages there get 403 50007."""
        record = self._user_record(user)
        self.state.closed_dms.add(record.id)
        self._log(f"TEST close_dms({record.username})")

    def open_dms(self, user: FakeUser | UserRecord | str | int) -> None:
        """Undo close_dms()."""
        record = self._user_record(user)
        self.state.closed_dms.discard(record.id)
        self._log(f"TEST open_dms({record.username})")

    def rate_limit_next(
        self,
        route_substring: str,
        retry_after: float = 0.2,
        global_: bool = False,
        *,
        count: int = 1,
        method: str | None = None,
    ) -> None:
        """Answer the next `count` matching REST calls with a 429 Discord would send."""
        self.rest.rate_limit_next(route_substring, retry_after, global_, count, method)

    def set_privileged_intents(
        self, *, members: bool = True, message_content: bool = True, presences: bool = False
    ) -> None:
        """The portal's privileged-intent switches; asking for a disabled one closes with 4014."""
        mask = (I_GUILD_MEMBERS if members else 0) | (I_MESSAGE_CONTENT if message_content else 0)
        self.gateway.enabled_privileged = mask | (I_GUILD_PRESENCES if presences else 0)

    async def disconnect_bot(self, *, shard_id: int | None = None) -> None:
        """Close the bot's WebSockets (or one shard's; resumable): discord.py RESUMEs."""
        self._log(f"TEST disconnect_bot(shard_id={shard_id})")
        await self.gateway.disconnect(shard_id=shard_id)

    def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the bot closes and RESUMEs."""
        self.gateway.request_reconnect()

    def invalidate_sessions(self) -> None:
        self.gateway.invalidate_sessions()
