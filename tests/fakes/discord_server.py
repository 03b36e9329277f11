"""A loopback fake Discord: REST API, gateway and CDN on one aiohttp server (127.0.0.1,
random port), enforcing the limits production enforces.

    fake = FakeDiscord(); await fake.start()
    # point discord.py at it: discord.http.Route.BASE = fake.api_base,
    # discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    await fake.wait_until_ready()
    alice = fake.user("alice"); ix = await alice.slash("imagine", prompt="a cat")

See tests/fakes/README.md for the whole surface.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote

from aiohttp import web

from tests.fakes import discord_schema
from tests.fakes.discord_gateway import (
    I_GUILD_MEMBERS,
    I_GUILD_MESSAGE_REACTIONS,
    I_GUILD_MESSAGES,
    I_GUILD_PRESENCES,
    I_GUILDS,
    I_MESSAGE_CONTENT,
    Gateway,
    GatewaySession,
)
from tests.fakes.discord_limits import (
    ACK_DEADLINE_S,
    DEFAULT_UPLOAD_LIMIT,
    FLAG_COMPONENTS_V2,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    MAX_ATTACHMENTS,
    TOKEN_LIFETIME_S,
    DiscordError,
    already_acknowledged,
    check_choices,
    check_commands,
    check_file_sizes,
    check_message,
    check_modal,
    check_thread_name,
    empty_message,
    form_error,
    invalid_webhook_token,
    missing_permissions,
    not_author,
    not_found,
    thread_exists,
    unauthorized,
    unknown_channel,
    unknown_interaction,
    unknown_message,
    unknown_webhook,
    walk_components,
    wrong_channel_type,
)
from tests.fakes.discord_state import (
    CH_PRIVATE_THREAD,
    CH_PUBLIC_THREAD,
    MT_CHAT_INPUT,
    MT_CONTEXT_MENU,
    MT_DEFAULT,
    MT_REPLY,
    AttachmentRecord,
    ChannelRecord,
    DiscordState,
    InteractionRecord,
    MessageRecord,
    UserRecord,
    image_size,
)

if TYPE_CHECKING:
    from tests.fakes.discord_driver import FakeUser

_EDITABLE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_COMPONENTS_V2
_CREATE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_COMPONENTS_V2
_API_PREFIX = re.compile(r"^/api(?:/v(\d+))?(/.*)$")
_TOKEN_IN_PATH = re.compile(r"/(aW50ZXJhY3Rpb246[^/]+)")


@dataclass
class UploadedFile:
    index: int
    filename: str
    data: bytes


@dataclass
class RestCall:
    """One REST request the bot made (fake.requests)."""

    method: str
    path: str
    status: int
    json: Any
    files: list[tuple[str, int]]
    time: float
    query: dict[str, str] = field(default_factory=dict)
    error_code: int | None = None

    def __repr__(self) -> str:
        extra = f" files={self.files}" if self.files else ""
        code = f" code={self.error_code}" if self.error_code is not None else ""
        return f"<{self.method} {self.path} -> {self.status}{code}{extra}>"


@dataclass
class _Req:
    method: str
    path: str
    params: dict[str, str]
    query: Mapping[str, str]
    json: Any
    files: list[UploadedFile]

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("1", "true")


@dataclass
class _RateLimitRule:
    substring: str
    retry_after: float
    global_: bool
    remaining: int
    method: str | None


Handler = Callable[[_Req], Awaitable[tuple[int, Any]]]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool
    spec: str | None


def _json_response(
    status: int, body: Any, headers: Mapping[str, str] | None = None
) -> web.Response:
    # Exactly "application/json": discord.py compares the header verbatim.
    out = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(status=status, body=json.dumps(body).encode(), headers=out)


def _bot_token(app_id: int) -> str:
    head = base64.b64encode(str(app_id).encode()).decode().rstrip("=")
    tail = hashlib.sha256(str(app_id).encode()).hexdigest()
    return f"{head}.Fake00.{tail[:38]}"


def _size(n: int) -> str:
    return f"{n / 1024:.1f}kB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f}MiB"


def _brief_json(body: Any) -> str:
    if not isinstance(body, dict):
        return f"[{len(body)} items]" if isinstance(body, list) else ""
    data: dict[str, Any] = body["data"] if isinstance(body.get("data"), dict) else body
    bits = []
    if "type" in body:
        bits.append(f"type={body['type']}")
    if isinstance(data.get("content"), str):
        bits.append(f"content={data['content'][:50]!r}")
    if data.get("embeds"):
        bits.append(f"embeds={len(data['embeds'])}")
    if data.get("components"):
        bits.append("components")
    if data.get("flags"):
        bits.append(f"flags={data['flags']}")
    if data.get("name"):
        bits.append(f"name={data['name']!r}")
    return " ".join(bits)


class FakeDiscord:
    """The fake Discord server plus test controls. One guild, persistent across bot restarts."""

    def __init__(
        self,
        *,
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
        ack_deadline: float = ACK_DEADLINE_S,
        validate_schema: bool = True,
    ) -> None:
        self.state = DiscordState()
        self.application_id = self.state.application_id
        self.guild_id = self.state.guild_id
        self.bot_user: UserRecord = self.state.bot_user
        self.token = _bot_token(self.application_id)
        self.upload_limit = upload_limit  # also sets the guild's boost tier to match
        self.ack_deadline = ack_deadline
        self.token_lifetime = TOKEN_LIFETIME_S
        self.validate_schema = validate_schema and discord_schema.available()
        self.requests: list[RestCall] = []
        self.schema_violations: list[dict[str, Any]] = []
        self.ack_latencies: list[float] = []
        self.unhandled: list[str] = []
        self.internal_errors: list[str] = []
        self.invalid_requests = 0
        self.traffic: deque[str] = deque(maxlen=400)
        self.gateway = Gateway(self.state, self.token, log=self._log, notify=self._notify)
        self.base_url = ""
        self.api_base = ""
        self.gateway_url = ""
        self._clock_offset = 0.0
        self._rate_limits: list[_RateLimitRule] = []
        self._changed = asyncio.Event()
        self._bot_events: list[tuple[int, int]] = []  # (event seq, message id)
        self._event_seq = 0
        self._mark = 0
        self._ready_floor = 0  # wait_until_ready needs more IDENTIFYs than this
        self._runner: web.AppRunner | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._routes = self._build_routes()

    # ==== lifecycle ==========================================================================
    async def start(self) -> FakeDiscord:
        app = web.Application(client_max_size=512 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/resume", self.gateway.handle)
        app.router.add_get("/attachments/{channel}/{attachment}/{filename}", self._cdn)
        app.router.add_get("/ephemeral-attachments/{channel}/{attachment}/{filename}", self._cdn)
        app.router.add_route("*", "/api/{tail:.*}", self._api)
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
        for timer in self._timers:
            timer.cancel()
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
        """Per-file upload limit (10 MiB; 50/100 MiB for boosted servers)."""
        return self._upload_limit

    @upload_limit.setter
    def upload_limit(self, value: int) -> None:
        self._upload_limit = value
        self.state.premium_tier = (
            3 if value >= 100 * 1024 * 1024 else 2 if value >= 50 * 1024 * 1024 else 0
        )

    # ==== read-only views for tests ==========================================================
    def user(self, name: str) -> FakeUser:
        from tests.fakes.discord_driver import FakeUser

        return FakeUser(self, self.state.user_by_name(name))

    def channel(self, name: str) -> int:
        return self.state.channel_by_ref(name).id

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

    def commands(self, *, guild: bool | None = None) -> list[dict[str, Any]]:
        """Synced command definitions: global, the guild's, or (None) both."""
        out: list[dict[str, Any]] = []
        if guild in (None, False):
            out += self.state.global_commands
        if guild in (None, True):
            out += self.state.guild_commands.get(self.guild_id, [])
        return out

    @property
    def resumes(self) -> int:
        return self.gateway.resume_count

    @property
    def identifies(self) -> int:
        return self.gateway.identify_count

    def now(self) -> float:
        """The fake clock (monotonic seconds); advance_clock() moves it forward."""
        return time.monotonic() + self._clock_offset

    def traffic_dump(self, last: int = 20) -> str:
        lines = list(self.traffic)[-last:]
        return "\n".join(f"  {line}" for line in lines) or "  (no traffic)"

    # ==== test controls ======================================================================
    def advance_clock(self, seconds: float) -> None:
        """Move the fake clock: interaction deadlines, webhook tokens, CDN link expiry."""
        self._clock_offset += seconds
        self.state.clock_offset = self._clock_offset
        self._log(f"CLOCK +{seconds}s")
        for ix in self.state.interactions.values():
            self._check_deadline(ix)
        self._notify()

    def set_thread_creation_allowed(self, allowed: bool) -> None:
        self.state.thread_creation_allowed = allowed

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
        self._rate_limits.append(
            _RateLimitRule(route_substring, retry_after, global_, count, method)
        )

    def set_privileged_intents(
        self, *, members: bool = True, message_content: bool = True, presences: bool = False
    ) -> None:
        """The portal's privileged-intent switches; asking for a disabled one closes with 4014."""
        mask = (I_GUILD_MEMBERS if members else 0) | (I_MESSAGE_CONTENT if message_content else 0)
        self.gateway.enabled_privileged = mask | (I_GUILD_PRESENCES if presences else 0)

    async def disconnect_bot(self) -> None:
        """Close the bot's WebSocket (resumable): discord.py reconnects and RESUMEs."""
        self._log("TEST disconnect_bot()")
        await self.gateway.disconnect()

    def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the bot closes and RESUMEs."""
        self.gateway.request_reconnect()

    def invalidate_sessions(self) -> None:
        self.gateway.invalidate_sessions()

    # ==== waiting ============================================================================
    async def wait_until_ready(self, timeout: float = 10, *, commands: bool = True) -> None:  # noqa: ASYNC109
        """Bot identified (READY + GUILD_CREATE sent on a live connection) and, unless
        commands=False, application commands have been synced at least once."""

        def ready() -> bool:
            synced = bool(self.state.global_commands or self.state.guild_commands)
            fresh = self.gateway.identify_count > self._ready_floor
            return fresh and self.gateway.attached_ready() and (synced or not commands)

        await self._wait(
            ready, timeout, "the bot to connect" + (" and sync commands" if commands else "")
        )

    async def wait_for_message(
        self,
        *,
        channel: int | str | None = None,
        predicate: Callable[[MessageRecord], bool] | None = None,
        timeout: float = 15,  # noqa: ASYNC109
        since: int | None = None,
        ephemeral: bool | None = None,
        include_deleted: bool = False,
    ) -> MessageRecord:
        """The next bot message created or edited after the last fake-user action (or
        after event number `since`) that matches; AssertionError with traffic on timeout."""
        channel_id = self.state.channel_by_ref(channel).id if channel is not None else None
        start = self._mark if since is None else since
        found: list[MessageRecord] = []

        def check() -> bool:
            for seq, mid in self._bot_events:
                if seq <= start:
                    continue
                msg = self.state.messages[mid]
                if channel_id is not None and msg.channel_id != channel_id:
                    continue
                if msg.deleted and not include_deleted:
                    continue
                if ephemeral is not None and msg.ephemeral != ephemeral:
                    continue
                if msg.loading:
                    continue
                if predicate is None or predicate(msg):
                    found.append(msg)
                    return True
            return False

        where = f" in channel {channel}" if channel is not None else ""
        await self._wait(check, timeout, f"a bot message{where} matching the predicate")
        return found[0]

    def reset_ready(self) -> None:
        """From now on wait_until_ready() waits for a new IDENTIFY (a restarted bot)."""
        self._ready_floor = self.gateway.identify_count

    @property
    def event_mark(self) -> int:
        """The current event number (pass as since= to wait_for_message)."""
        return self._event_seq

    async def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}. "
                    f"Recent traffic:\n{self.traffic_dump()}"
                )
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _log(self, line: str) -> None:
        self.traffic.append(f"{time.strftime('%H:%M:%S')} {line}")

    def _mark_action(self, description: str) -> None:
        self._mark = self._event_seq
        self._log(f"USER {description}")

    def _bot_message_event(self, msg: MessageRecord) -> None:
        if msg.author.id != self.bot_user.id:
            return
        self._event_seq += 1
        self._bot_events.append((self._event_seq, msg.id))
        self._notify()

    # ==== HTTP plumbing ======================================================================
    def _build_routes(self) -> list[_Route]:
        a, w, c = r"(?P<app_id>\d+)", r"(?P<token>[^/]+)", r"(?P<channel_id>\d+)"
        m, g = r"(?P<message_id>\d+)", r"(?P<guild_id>\d+)"
        table: list[tuple[str, str, Handler, bool, str | None]] = [
            ("GET", "/gateway", self._h_gateway, False, None),
            ("GET", "/gateway/bot", self._h_gateway_bot, True, None),
            ("GET", "/users/@me", self._h_me, True, None),
            ("GET", r"/users/(?P<user_id>\d+)", self._h_user, True, None),
            ("GET", "/applications/@me", self._h_application, True, None),
            ("GET", "/oauth2/applications/@me", self._h_application, True, None),
            ("GET", f"/applications/{a}/commands", self._h_get_commands, True, None),
            (
                "PUT",
                f"/applications/{a}/commands",
                self._h_put_commands,
                True,
                "/applications/{application_id}/commands",
            ),
            ("GET", f"/applications/{a}/guilds/{g}/commands", self._h_get_commands, True, None),
            (
                "PUT",
                f"/applications/{a}/guilds/{g}/commands",
                self._h_put_commands,
                True,
                "/applications/{application_id}/guilds/{guild_id}/commands",
            ),
            (
                "POST",
                rf"/interactions/(?P<interaction_id>\d+)/{w}/callback",
                self._h_callback,
                False,
                "/interactions/{interaction_id}/{interaction_token}/callback",
            ),
            (
                "POST",
                f"/webhooks/{a}/{w}",
                self._h_followup,
                False,
                "/webhooks/{webhook_id}/{webhook_token}",
            ),
            (
                "GET",
                f"/webhooks/{a}/{w}/messages/(?P<message_id>@original|\\d+)",
                self._h_webhook_get,
                False,
                None,
            ),
            (
                "PATCH",
                f"/webhooks/{a}/{w}/messages/@original",
                self._h_webhook_edit,
                False,
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
            ),
            (
                "PATCH",
                f"/webhooks/{a}/{w}/messages/(?P<message_id>\\d+)",
                self._h_webhook_edit,
                False,
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
            ),
            (
                "DELETE",
                f"/webhooks/{a}/{w}/messages/(?P<message_id>@original|\\d+)",
                self._h_webhook_delete,
                False,
                None,
            ),
            ("GET", f"/channels/{c}", self._h_get_channel, True, None),
            ("PATCH", f"/channels/{c}", self._h_edit_channel, True, None),
            ("GET", f"/channels/{c}/messages", self._h_list_messages, True, None),
            (
                "POST",
                f"/channels/{c}/messages",
                self._h_create_message,
                True,
                "/channels/{channel_id}/messages",
            ),
            ("GET", f"/channels/{c}/messages/{m}", self._h_get_message, True, None),
            (
                "PATCH",
                f"/channels/{c}/messages/{m}",
                self._h_edit_message,
                True,
                "/channels/{channel_id}/messages/{message_id}",
            ),
            ("DELETE", f"/channels/{c}/messages/{m}", self._h_delete_message, True, None),
            (
                "POST",
                f"/channels/{c}/messages/{m}/threads",
                self._h_thread_from_message,
                True,
                "/channels/{channel_id}/messages/{message_id}/threads",
            ),
            ("POST", f"/channels/{c}/threads", self._h_thread_without_message, True, None),
            ("POST", f"/channels/{c}/typing", self._h_no_content, True, None),
            ("PUT", f"/channels/{c}/thread-members/@me", self._h_no_content, True, None),
            (
                "PUT",
                f"/channels/{c}/messages/{m}/reactions/(?P<emoji>[^/]+)/@me",
                self._h_react,
                True,
                None,
            ),
            (
                "DELETE",
                f"/channels/{c}/messages/{m}/reactions/(?P<emoji>[^/]+)/@me",
                self._h_react,
                True,
                None,
            ),
            ("GET", f"/guilds/{g}", self._h_guild, True, None),
            ("GET", f"/guilds/{g}/channels", self._h_guild_channels, True, None),
            ("GET", f"/guilds/{g}/roles", self._h_guild_roles, True, None),
            ("GET", f"/guilds/{g}/threads/active", self._h_active_threads, True, None),
            ("GET", rf"/guilds/{g}/members/(?P<user_id>\d+)", self._h_member, True, None),
        ]
        return [
            _Route(meth, re.compile(f"^{pat}$"), h, auth, spec)
            for meth, pat, h, auth, spec in table
        ]

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in self._routes:
            if route.method == method:
                found = route.pattern.match(path)
                if found:
                    return route, {k: unquote(v) for k, v in found.groupdict().items()}
        return None, {}

    async def _read_body(self, request: web.Request) -> tuple[Any, list[UploadedFile]]:
        if request.content_type == "multipart/form-data":
            payload: Any = None
            files: list[UploadedFile] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                name = getattr(part, "name", None) or ""
                if name == "payload_json":
                    payload = json.loads(await part.text())  # type: ignore[union-attr]
                elif name.startswith("files[") or name == "file":
                    index = int(name[6:-1]) if name.startswith("files[") else 0
                    data = await part.read(decode=False)  # type: ignore[union-attr]
                    files.append(
                        UploadedFile(
                            index, getattr(part, "filename", None) or f"file{index}", bytes(data)
                        )
                    )
            return payload, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError as exc:
            raise DiscordError(400, 50109, "The request body contains invalid JSON.") from exc

    def _ratelimit_headers(self, route: str) -> dict[str, str]:
        bucket = hashlib.md5(route.encode()).hexdigest()
        return {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "49",
            "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
            "X-RateLimit-Reset-After": "1.000",
            "X-RateLimit-Bucket": bucket,
        }

    def _take_rate_limit(self, method: str, path: str) -> _RateLimitRule | None:
        for rule in self._rate_limits:
            if rule.method not in (None, method):
                continue
            if rule.substring in path or rule.substring in f"{method} {path}":
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rate_limits.remove(rule)
                return rule
        return None

    def _rate_limited(self, rule: _RateLimitRule, route_key: str) -> web.Response:
        headers = self._ratelimit_headers(route_key)
        headers.update(
            {
                "Via": "1.1 google",
                "Retry-After": str(max(1, int(rule.retry_after + 0.999))),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset-After": f"{rule.retry_after:.3f}",
                "X-RateLimit-Reset": f"{time.time() + rule.retry_after:.3f}",
                "X-RateLimit-Scope": "global" if rule.global_ else "user",
            }
        )
        if rule.global_:
            headers["X-RateLimit-Global"] = "true"
        body = {
            "message": "You are being rate limited.",
            "retry_after": rule.retry_after,
            "global": rule.global_,
            "code": 0,
        }
        return _json_response(429, body, headers)

    async def _api(self, request: web.Request) -> web.StreamResponse:
        prefix = _API_PREFIX.match(request.path)
        path = prefix.group(2) if prefix else request.path
        method = request.method
        route, params = self._match(method, path)
        req = _Req(method, path, params, request.query, None, [])
        route_key = f"{method} {route.pattern.pattern if route else path}"
        error_code: int | None = None
        try:
            req.json, req.files = await self._read_body(request)
            if route is None:
                self.unhandled.append(f"{method} {path}")
                raise not_found()
            if route.auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise unauthorized()
            rule = self._take_rate_limit(method, path)
            if rule is not None:
                response: web.StreamResponse = self._rate_limited(rule, route_key)
            else:
                if route.spec and self.validate_schema and req.json is not None:
                    self._validate(route.spec, method, path, req.json)
                status, body = await route.handler(req)
                headers = self._ratelimit_headers(route_key)
                response = (
                    web.Response(status=204, headers=headers)
                    if body is None
                    else _json_response(status, body, headers)
                )
        except DiscordError as err:
            error_code = err.code
            response = _json_response(err.status, err.body(), self._ratelimit_headers(route_key))
        except Exception as exc:
            # A bug in the fake (or a body it cannot parse). Not a 5xx: discord.py would retry
            # those for ~16 s. Tests should assert fake.internal_errors == [].
            self.internal_errors.append(f"{method} {path}: {traceback.format_exc()}")
            error_code = 0
            body = {"message": f"fake Discord internal error: {exc!r}", "code": 0}
            response = _json_response(400, body)
        status = response.status
        if status in (401, 403, 429):
            self.invalid_requests += 1
        files = [(f.filename, len(f.data)) for f in req.files]
        self.requests.append(
            RestCall(
                method, path, status, req.json, files, time.time(), dict(request.query), error_code
            )
        )
        file_note = (
            " files=[" + ", ".join(f"{n}:{_size(s)}" for n, s in files) + "]" if files else ""
        )
        code_note = f" code={error_code}" if error_code is not None else ""
        shown = _TOKEN_IN_PATH.sub(lambda t: f"/{t.group(1)[:4]}…{t.group(1)[-4:]}", path)
        self._log(
            f"REST {method} {shown} -> {status}{code_note} {_brief_json(req.json)}{file_note}"
        )
        return response

    def _validate(self, spec_route: str, method: str, path: str, body: Any) -> None:
        for problem in discord_schema.validate(spec_route, method, body):
            self.schema_violations.append(
                {"method": method, "path": path, "schema": spec_route, "error": problem}
            )
            self._log(f"SCHEMA violation {method} {path}: {problem}")

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        try:
            att_id = int(request.match_info["attachment"])
        except ValueError:
            return web.Response(status=404, text="Not Found")
        att = self.state.attachments.get(att_id)
        path = request.path
        expires_hex = request.query.get("ex", "")
        try:
            expires = int(expires_hex, 16)
        except ValueError:
            expires = -1
        valid_sig = att is not None and request.query.get("hm") == self.state.sign(path, expires)
        if att is None or not valid_sig:
            self._log(f"CDN GET {path} -> 404")
            return web.Response(status=404, text="Not Found")
        if time.time() + self._clock_offset > expires:
            self._log(f"CDN GET {path} -> 404 (signed URL expired)")
            return web.Response(status=404, text="This content is no longer available.")
        self._log(f"CDN GET {att.filename} ({_size(att.size)})")
        return web.Response(body=att.data, headers={"Content-Type": att.content_type})

    # ==== gateway helpers ====================================================================
    def _content_gate(
        self, msg: MessageRecord
    ) -> Callable[[GatewaySession, dict[str, Any]], dict[str, Any]] | None:
        """Without the MESSAGE_CONTENT intent Discord blanks other users' message bodies."""
        bot_id = self.bot_user.id
        if msg.author.id == bot_id or any(u.id == bot_id for u in msg.mentions):
            return None

        def gate(session: GatewaySession, d: dict[str, Any]) -> dict[str, Any]:
            if session.has(I_MESSAGE_CONTENT):
                return d
            return {**d, "content": "", "embeds": [], "attachments": [], "components": []}

        return gate

    def _dispatch_message(self, event: str, msg: MessageRecord) -> None:
        if msg.visible_to is not None:  # ephemeral messages never reach the gateway
            return
        payload = self.state.message_payload(msg, gateway=True)
        self.gateway.dispatch(
            event, payload, intent=I_GUILD_MESSAGES, transform=self._content_gate(msg)
        )

    def _dispatch_delete(self, msg: MessageRecord) -> None:
        if msg.visible_to is not None:
            return
        payload = {
            "id": str(msg.id),
            "channel_id": str(msg.channel_id),
            "guild_id": str(self.guild_id),
        }
        self.gateway.dispatch("MESSAGE_DELETE", payload, intent=I_GUILD_MESSAGES)

    # ==== messages: building and editing =====================================================
    async def _attachments_from(
        self, files: list[UploadedFile], meta: list[Mapping[str, Any]] | None, channel_id: int
    ) -> list[AttachmentRecord]:
        by_index = {}
        for entry in meta or []:
            with contextlib.suppress(TypeError, ValueError, KeyError):
                by_index[int(entry["id"])] = entry
        out = []
        for f in sorted(files, key=lambda f: f.index):
            info = by_index.get(f.index, {})
            filename = str(info.get("filename") or f.filename)
            size = image_size(f.data)
            out.append(
                self.state.make_attachment(
                    filename,
                    f.data,
                    channel_id=channel_id,
                    description=info.get("description"),
                    size=size,
                    title=info.get("title"),
                )
            )
        return out

    def _assign_component_ids(self, components: list[dict[str, Any]]) -> list[dict[str, Any]]:
        comps = json.loads(json.dumps(components))
        used = {c["id"] for c in walk_components(comps) if isinstance(c.get("id"), int)}
        counter = 1
        for comp in walk_components(comps):
            if not isinstance(comp.get("id"), int):
                while counter in used:
                    counter += 1
                comp["id"] = counter  # type: ignore[index]
                used.add(counter)
        return comps

    def _resolve_embeds(
        self, embeds: list[dict[str, Any]], pool: list[AttachmentRecord]
    ) -> tuple[list[dict[str, Any]], list[AttachmentRecord]]:
        """attachment://name in embeds -> the file's URL; such files belong to the embed."""
        by_name = {a.filename: a for a in pool}
        by_url = {a.url: a for a in pool}
        consumed: list[AttachmentRecord] = []
        out = []
        for embed in embeds:
            e = json.loads(json.dumps(embed))
            e.setdefault("type", "rich")
            slots: list[tuple[dict[str, Any], str]] = []
            for key in ("image", "thumbnail", "video"):
                if isinstance(e.get(key), dict):
                    slots.append((e[key], "url"))
            for key in ("author", "footer"):
                if isinstance(e.get(key), dict):
                    slots.append((e[key], "icon_url"))
            for holder, url_key in slots:
                url = holder.get(url_key)
                if not isinstance(url, str):
                    continue
                att = (
                    by_name.get(url[len("attachment://") :])
                    if url.startswith("attachment://")
                    else by_url.get(url)
                )
                if url.startswith("attachment://") and att is None:
                    self._log(f"WARN embed refers to {url} but no such file was uploaded: dropped")
                    holder.pop(url_key, None)
                    continue
                if att is not None:
                    holder[url_key] = att.url
                    holder["proxy_" + url_key] = att.url
                    if att.width is not None and url_key == "url":
                        holder.update(width=att.width, height=att.height)
                    if att not in consumed:
                        consumed.append(att)
            out.append(e)
        return out, consumed

    async def _new_message(
        self,
        data: Mapping[str, Any],
        files: list[UploadedFile],
        *,
        channel: ChannelRecord,
        author: UserRecord,
        msg_type: int = MT_DEFAULT,
        visible_to: int | None = None,
        extra_flags: int = 0,
        **fields: Any,
    ) -> MessageRecord:
        check_file_sizes((len(f.data) for f in files), self.upload_limit)
        check_message(data, file_count=len(files), creating=True)
        attachments = await self._attachments_from(files, data.get("attachments"), channel.id)
        embeds, consumed = self._resolve_embeds(list(data.get("embeds") or []), attachments)
        msg = MessageRecord(
            id=self.state.ids.next(),
            channel_id=channel.id,
            guild_id=self.guild_id,
            author=author,
            content=str(data.get("content") or ""),
            embeds=embeds,
            attachments=[a for a in attachments if a not in consumed],
            embed_attachments=consumed,
            components=self._assign_component_ids(list(data.get("components") or [])),
            flags=(int(data.get("flags") or 0) & _CREATE_FLAGS) | extra_flags,
            type=msg_type,
            visible_to=visible_to,
            mentions=self._mentions(str(data.get("content") or "")),
            **fields,
        )
        self.state.add_message(msg)
        return msg

    def _mentions(self, content: str) -> list[UserRecord]:
        ids = {int(x) for x in re.findall(r"<@!?(\d+)>", content)}
        return [u for uid, u in self.state.users.items() if uid in ids]

    async def _edit_message(
        self,
        msg: MessageRecord,
        data: Mapping[str, Any],
        files: list[UploadedFile],
        *,
        filling: bool = False,
    ) -> None:
        """Apply an edit with Discord's semantics (attachments list = what to keep)."""
        check_file_sizes((len(f.data) for f in files), self.upload_limit)
        check_message(data, file_count=len(files), creating=False)
        new = await self._attachments_from(files, data.get("attachments"), msg.channel_id)
        if "attachments" in data and data["attachments"] is not None:
            keep_ids = set()
            for entry in data["attachments"]:
                with contextlib.suppress(TypeError, ValueError, KeyError):
                    keep_ids.add(int(entry["id"]))
            kept = [a for a in msg.files if a.id in keep_ids]
        else:
            kept = list(msg.files)
        pool = kept + new
        if len(pool) > MAX_ATTACHMENTS:
            raise form_error(
                ["attachments"],
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_ATTACHMENTS} or fewer in length.",
            )
        raw_embeds = list(data["embeds"] or []) if "embeds" in data else msg.embeds
        embeds, consumed = self._resolve_embeds(raw_embeds, pool)
        content = str(data.get("content") or "") if "content" in data else msg.content
        components = (
            self._assign_component_ids(list(data["components"] or []))
            if "components" in data
            else msg.components
        )
        if not (content or embeds or pool or components):
            raise empty_message()
        if not filling:
            msg.edits.append(msg.snapshot())
            msg.edited_at = time.time()
        msg.content = content
        msg.embeds = embeds
        msg.attachments = [a for a in pool if a not in consumed]
        msg.embed_attachments = consumed
        msg.components = components
        if "content" in data:
            msg.mentions = self._mentions(content)
        if data.get("flags") is not None:
            msg.flags = (msg.flags & ~_EDITABLE_FLAGS) | (int(data["flags"]) & _EDITABLE_FLAGS)
        msg.flags &= ~FLAG_LOADING

    def _channel(self, channel_id: str | int) -> ChannelRecord:
        ch = self.state.channels.get(int(channel_id))
        if ch is None:
            raise unknown_channel()
        return ch

    def _channel_message(self, channel_id: str, message_id: str) -> MessageRecord:
        self._channel(channel_id)
        msg = self.state.messages.get(int(message_id))
        if (
            msg is None
            or msg.deleted
            or msg.channel_id != int(channel_id)
            or msg.visible_to is not None
        ):
            raise unknown_message()
        return msg

    # ==== REST handlers: identity ============================================================
    async def _h_gateway(self, req: _Req) -> tuple[int, Any]:
        return 200, {"url": self.gateway_url}

    async def _h_gateway_bot(self, req: _Req) -> tuple[int, Any]:
        limit = {"total": 1000, "remaining": 999, "reset_after": 86400000, "max_concurrency": 1}
        return 200, {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}

    async def _h_me(self, req: _Req) -> tuple[int, Any]:
        me = self.bot_user.payload()
        me.update(
            verified=True, mfa_enabled=False, email=None, locale="en-US", premium_type=0, bio=""
        )
        return 200, me

    async def _h_user(self, req: _Req) -> tuple[int, Any]:
        user = self.state.users.get(int(req.params["user_id"]))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return 200, user.payload()

    async def _h_application(self, req: _Req) -> tuple[int, Any]:
        return 200, self.state.application_payload()

    def _check_app(self, req: _Req) -> None:
        if int(req.params["app_id"]) != self.application_id:
            raise DiscordError(403, 50001, "Missing Access")
        if "guild_id" in req.params and int(req.params["guild_id"]) != self.guild_id:
            raise DiscordError(403, 50001, "Missing Access")

    async def _h_get_commands(self, req: _Req) -> tuple[int, Any]:
        self._check_app(req)
        if "guild_id" in req.params:
            return 200, self.state.guild_commands.get(self.guild_id, [])
        return 200, self.state.global_commands

    async def _h_put_commands(self, req: _Req) -> tuple[int, Any]:
        self._check_app(req)
        guild_id = int(req.params["guild_id"]) if "guild_id" in req.params else None
        check_commands(req.json, global_=guild_id is None)
        old = (
            self.state.guild_commands.get(self.guild_id, [])
            if guild_id
            else self.state.global_commands
        )
        old_ids = {(c["type"], c["name"]): c["id"] for c in old}
        stored = []
        for cmd in req.json:
            ctype = int(cmd.get("type") or 1)
            out = {k: v for k, v in cmd.items() if v is not None}
            out.update(
                id=old_ids.get((ctype, cmd["name"])) or str(self.state.ids.next()),
                application_id=str(self.application_id),
                version=str(self.state.ids.next()),
                type=ctype,
                description=cmd.get("description") or "",
                default_member_permissions=cmd.get("default_member_permissions"),
                nsfw=bool(cmd.get("nsfw", False)),
            )
            if guild_id is not None:
                out["guild_id"] = str(guild_id)
            stored.append(out)
        if guild_id is not None:
            self.state.guild_commands[guild_id] = stored
        else:
            self.state.global_commands = stored
        self._notify()
        return 200, stored

    # ==== REST handlers: interactions ========================================================
    _ALLOWED_RESPONSES: ClassVar[dict[int, set[int]]] = {
        1: {1},
        2: {4, 5, 9},
        3: {4, 5, 6, 7, 9},
        4: {8},
        5: {4, 5},
    }

    async def _h_callback(self, req: _Req) -> tuple[int, Any]:
        ix = self.state.interactions.get(int(req.params["interaction_id"]))
        if ix is None or ix.token != req.params["token"]:
            raise unknown_interaction()
        body = req.json if isinstance(req.json, dict) else {}
        rtype = body.get("type")
        if ix.acked:
            raise already_acknowledged()
        latency = self.now() - ix.created
        self.ack_latencies.append(latency)
        if ix.failed or latency > self.ack_deadline:
            self._fail(ix, f"acknowledged after {latency:.2f}s (limit {self.ack_deadline}s)")
            raise unknown_interaction()
        allowed = set(self._ALLOWED_RESPONSES.get(ix.type, set()))
        if ix.type == 5 and ix.message_id is not None:
            allowed |= {6, 7}
        if rtype not in allowed:
            raise form_error(
                ["type"],
                "INTERACTION_RESPONSE_TYPE_INVALID",
                f"Interaction response type {rtype} is not valid for interaction type {ix.type}",
            )
        data = body.get("data") or {}
        message: MessageRecord | None = None
        channel = self._channel(ix.channel_id)
        if rtype == 4:
            message = await self._new_interaction_message(ix, data, req.files, channel)
            self._dispatch_message("MESSAGE_CREATE", message)
        elif rtype == 5:
            ephemeral = bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL)
            message = self._loading_message(ix, channel, ephemeral)
            self._dispatch_message("MESSAGE_CREATE", message)
        elif rtype in (6, 7):
            message = self.state.messages.get(ix.message_id or 0)
            if message is None or message.deleted:
                raise unknown_message()
            if rtype == 7:
                await self._edit_message(message, data, req.files)
                self._dispatch_message("MESSAGE_UPDATE", message)
                self._bot_message_event(message)
            ix.original_id = message.id
        elif rtype == 8:
            check_choices(data.get("choices"))
            ix.choices = list(data["choices"])
        elif rtype == 9:
            check_modal(data)
            ix.modal = dict(data)
        ix.response_type = rtype
        ix.ack_latency = latency
        self._log(f"ACK interaction {ix.name or ix.type} type={rtype} after {latency * 1000:.0f}ms")
        self._notify()
        if not req.flag("with_response"):
            return 204, None
        info: dict[str, Any] = {"id": str(ix.id), "type": ix.type}
        if message is not None and rtype in (4, 5, 7):
            info.update(
                response_message_id=str(message.id),
                response_message_loading=rtype == 5,
                response_message_ephemeral=message.ephemeral,
            )
        out: dict[str, Any] = {"interaction": info}
        if message is not None and rtype in (4, 5, 7):
            out["resource"] = {"type": rtype, "message": self.state.message_payload(message)}
        return 200, out

    def _interaction_fields(
        self, ix: InteractionRecord, *, followup_of: int | None = None
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "id": str(ix.id),
            "type": ix.type,
            "user": ix.user.payload(),
            "authorizing_integration_owners": {"0": str(self.guild_id)},
        }
        if ix.type in (2, 4):
            metadata["name"] = ix.name
            metadata["command_type"] = int(ix.data.get("type") or 1)
            if ix.data.get("type") in (2, 3) and ix.data.get("target_id"):
                key = "target_message_id" if ix.data.get("type") == 3 else "target_user"
                metadata[key] = ix.data["target_id"]
        if ix.message_id is not None:
            metadata["interacted_message_id"] = str(ix.message_id)
        if ix.parent_id is not None:
            parent = self.state.interactions.get(ix.parent_id)
            if parent is not None:
                metadata["triggering_interaction_metadata"] = self._interaction_fields(parent)[
                    "interaction_metadata"
                ]
        if followup_of is not None:
            metadata["original_response_message_id"] = str(followup_of)
        legacy = {"id": str(ix.id), "type": ix.type, "name": ix.name, "user": ix.user.payload()}
        return {
            "interaction_metadata": metadata,
            "interaction_legacy": legacy,
            "webhook_id": self.application_id,
            "application_id": self.application_id,
            "interaction_id": ix.id,
        }

    def _message_type_for(self, ix: InteractionRecord) -> int:
        if ix.type == 2:
            return MT_CHAT_INPUT if int(ix.data.get("type") or 1) == 1 else MT_CONTEXT_MENU
        return MT_DEFAULT

    async def _new_interaction_message(
        self,
        ix: InteractionRecord,
        data: Mapping[str, Any],
        files: list[UploadedFile],
        channel: ChannelRecord,
        *,
        followup_of: int | None = None,
    ) -> MessageRecord:
        ephemeral = bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL)
        msg = await self._new_message(
            data,
            files,
            channel=channel,
            author=self.bot_user,
            msg_type=self._message_type_for(ix),
            visible_to=ix.user.id if ephemeral else None,
            extra_flags=FLAG_EPHEMERAL if ephemeral else 0,
            **self._interaction_fields(ix, followup_of=followup_of),
        )
        if followup_of is None:
            ix.original_id = msg.id
        self._bot_message_event(msg)
        return msg

    def _loading_message(
        self, ix: InteractionRecord, channel: ChannelRecord, ephemeral: bool
    ) -> MessageRecord:
        msg = MessageRecord(
            id=self.state.ids.next(),
            channel_id=channel.id,
            guild_id=self.guild_id,
            author=self.bot_user,
            flags=FLAG_LOADING | (FLAG_EPHEMERAL if ephemeral else 0),
            type=self._message_type_for(ix),
            visible_to=ix.user.id if ephemeral else None,
            **self._interaction_fields(ix),
        )
        self.state.add_message(msg)
        ix.original_id = msg.id
        ix.deferred_pending = True
        return msg

    def _webhook_interaction(self, req: _Req) -> InteractionRecord:
        ix = self.state.interactions_by_token.get(req.params["token"])
        if int(req.params["app_id"]) != self.application_id:
            raise unknown_webhook()
        if ix is None:
            raise invalid_webhook_token()
        if self.now() - ix.created > self.token_lifetime:
            raise invalid_webhook_token()
        if not ix.acked:
            raise unknown_webhook()
        return ix

    def _webhook_message(self, ix: InteractionRecord, ref: str) -> MessageRecord:
        mid = ix.original_id if ref == "@original" else int(ref)
        if mid is None or (mid != ix.original_id and mid not in ix.followup_ids):
            raise unknown_message()
        msg = self.state.messages.get(mid)
        if msg is None or msg.deleted:
            raise unknown_message()
        return msg

    async def _h_followup(self, req: _Req) -> tuple[int, Any]:
        ix = self._webhook_interaction(req)
        data = req.json if isinstance(req.json, dict) else {}
        if ix.deferred_pending and ix.original_id is not None:
            # The first followup after a "thinking" defer replaces the loading message.
            msg = self.state.messages[ix.original_id]
            check_message(data, file_count=len(req.files), creating=True)
            await self._edit_message(msg, data, req.files, filling=True)
            ix.deferred_pending = False
            self._dispatch_message("MESSAGE_UPDATE", msg)
            self._bot_message_event(msg)
        else:
            msg = await self._new_interaction_message(
                ix, data, req.files, self._channel(ix.channel_id), followup_of=ix.original_id
            )
            self._dispatch_message("MESSAGE_CREATE", msg)
        ix.followup_ids.append(msg.id)
        if not req.flag("wait"):
            return 204, None
        return 200, self.state.message_payload(msg)

    async def _h_webhook_get(self, req: _Req) -> tuple[int, Any]:
        ix = self._webhook_interaction(req)
        return 200, self.state.message_payload(self._webhook_message(ix, req.params["message_id"]))

    async def _h_webhook_edit(self, req: _Req) -> tuple[int, Any]:
        ix = self._webhook_interaction(req)
        msg = self._webhook_message(ix, req.params.get("message_id", "@original"))
        filling = msg.id == ix.original_id and ix.deferred_pending
        await self._edit_message(
            msg, req.json if isinstance(req.json, dict) else {}, req.files, filling=filling
        )
        if filling:
            ix.deferred_pending = False
        self._dispatch_message("MESSAGE_UPDATE", msg)
        self._bot_message_event(msg)
        return 200, self.state.message_payload(msg)

    async def _h_webhook_delete(self, req: _Req) -> tuple[int, Any]:
        ix = self._webhook_interaction(req)
        msg = self._webhook_message(ix, req.params["message_id"])
        msg.deleted = True
        if msg.id == ix.original_id:
            ix.original_deleted = True
            ix.deferred_pending = False
        self._dispatch_delete(msg)
        self._bot_message_event(msg)
        return 204, None

    # ==== REST handlers: channels and messages ===============================================
    async def _h_get_channel(self, req: _Req) -> tuple[int, Any]:
        return 200, self._channel(req.params["channel_id"]).payload()

    async def _h_edit_channel(self, req: _Req) -> tuple[int, Any]:
        ch = self._channel(req.params["channel_id"])
        if not ch.is_thread:
            raise missing_permissions()
        body = req.json if isinstance(req.json, dict) else {}
        if "name" in body:
            check_thread_name(body["name"])
            ch.name = body["name"]
        for key in ("archived", "locked"):
            if key in body:
                setattr(ch, key, bool(body[key]))
        if "auto_archive_duration" in body:
            ch.auto_archive_duration = int(body["auto_archive_duration"])
        self.gateway.dispatch("THREAD_UPDATE", ch.payload(), intent=I_GUILDS)
        return 200, ch.payload()

    async def _h_list_messages(self, req: _Req) -> tuple[int, Any]:
        ch = self._channel(req.params["channel_id"])
        limit = max(1, min(100, int(req.query.get("limit", "50"))))
        msgs = self.state.history(ch.id)
        if "before" in req.query:
            msgs = [m for m in msgs if m.id < int(req.query["before"])]
        if "after" in req.query:
            msgs = [m for m in msgs if m.id > int(req.query["after"])][:limit]
        if "around" in req.query:
            around = int(req.query["around"])
            older = [m for m in msgs if m.id <= around][-(limit // 2 + 1) :]
            newer = [m for m in msgs if m.id > around][: limit - len(older)]
            msgs = older + newer
        picked = msgs[-limit:]
        return 200, [self.state.message_payload(m) for m in reversed(picked)]

    async def _h_create_message(self, req: _Req) -> tuple[int, Any]:
        ch = self._channel(req.params["channel_id"])
        data = req.json if isinstance(req.json, dict) else {}
        fields: dict[str, Any] = {}
        msg_type = MT_DEFAULT
        ref = data.get("message_reference")
        if isinstance(ref, dict) and ref.get("message_id") is not None:
            target = self.state.messages.get(int(ref["message_id"]))
            ok = target is not None and not target.deleted and target.visible_to is None
            if (
                ok
                and target is not None
                and target.channel_id != ch.id
                and int(ref.get("type") or 0) == 0
            ):
                ok = False
            if not ok:
                if ref.get("fail_if_not_exists", True):
                    raise form_error(
                        ["message_reference"], "REPLIES_UNKNOWN_MESSAGE", "Unknown message"
                    )
            else:
                assert target is not None
                fields["message_reference"] = {
                    "type": int(ref.get("type") or 0),
                    "message_id": str(target.id),
                    "channel_id": str(target.channel_id),
                    "guild_id": str(self.guild_id),
                }
                msg_type = MT_REPLY
        msg = await self._new_message(
            data, req.files, channel=ch, author=self.bot_user, msg_type=msg_type, **fields
        )
        self._dispatch_message("MESSAGE_CREATE", msg)
        self._bot_message_event(msg)
        return 200, self.state.message_payload(msg)

    async def _h_get_message(self, req: _Req) -> tuple[int, Any]:
        return 200, self.state.message_payload(
            self._channel_message(req.params["channel_id"], req.params["message_id"])
        )

    async def _h_edit_message(self, req: _Req) -> tuple[int, Any]:
        msg = self._channel_message(req.params["channel_id"], req.params["message_id"])
        if msg.author.id != self.bot_user.id:
            raise not_author()
        await self._edit_message(msg, req.json if isinstance(req.json, dict) else {}, req.files)
        self._dispatch_message("MESSAGE_UPDATE", msg)
        self._bot_message_event(msg)
        return 200, self.state.message_payload(msg)

    async def _h_delete_message(self, req: _Req) -> tuple[int, Any]:
        msg = self._channel_message(req.params["channel_id"], req.params["message_id"])
        if msg.author.id != self.bot_user.id and not self.state.permissions(self.bot_user.id) & (
            1 << 13
        ):
            raise missing_permissions()
        msg.deleted = True
        self._dispatch_delete(msg)
        self._bot_message_event(msg)
        return 204, None

    async def _h_react(self, req: _Req) -> tuple[int, Any]:
        msg = self._channel_message(req.params["channel_id"], req.params["message_id"])
        emoji = req.params["emoji"]
        users = msg.reactions.setdefault(emoji, set())
        adding = req.method == "PUT"
        (users.add if adding else users.discard)(self.bot_user.id)
        event = {
            "user_id": str(self.bot_user.id),
            "channel_id": str(msg.channel_id),
            "message_id": str(msg.id),
            "guild_id": str(self.guild_id),
            "emoji": {"id": None, "name": emoji},
            "burst": False,
            "type": 0,
        }
        if adding:
            event["member"] = self.state.member_payload(self.bot_user.id)
        name = "MESSAGE_REACTION_ADD" if adding else "MESSAGE_REACTION_REMOVE"
        self.gateway.dispatch(name, event, intent=I_GUILD_MESSAGE_REACTIONS)
        return 204, None

    async def _h_no_content(self, req: _Req) -> tuple[int, Any]:
        self._channel(req.params["channel_id"])
        return 204, None

    # ==== REST handlers: threads =============================================================
    def _new_thread(
        self,
        parent: ChannelRecord,
        body: Mapping[str, Any],
        *,
        thread_id: int,
        from_message: int | None,
        thread_type: int = CH_PUBLIC_THREAD,
    ) -> ChannelRecord:
        if parent.is_thread:
            raise wrong_channel_type()
        if not self.state.thread_creation_allowed:
            raise missing_permissions()
        check_thread_name(body.get("name"))
        thread = ChannelRecord(
            id=thread_id,
            name=str(body["name"]),
            type=thread_type,
            guild_id=self.guild_id,
            parent_id=parent.id,
            owner_id=self.bot_user.id,
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
            member_ids={self.bot_user.id},
            from_message_id=from_message,
        )
        self.state.channels[thread.id] = thread
        self.state.channel_log[thread.id] = []
        created = {**thread.payload(), "newly_created": True}
        self.gateway.dispatch("THREAD_CREATE", created, intent=I_GUILDS)
        self._log(f"THREAD created {thread.name!r} id={thread.id} in #{parent.name}")
        self._notify()
        return thread

    async def _h_thread_from_message(self, req: _Req) -> tuple[int, Any]:
        parent = self._channel(req.params["channel_id"])
        msg = self._channel_message(req.params["channel_id"], req.params["message_id"])
        if self.state.thread_for_message(msg.id) is not None:
            raise thread_exists()
        body = req.json if isinstance(req.json, dict) else {}
        thread = self._new_thread(parent, body, thread_id=msg.id, from_message=msg.id)
        self._dispatch_message("MESSAGE_UPDATE", msg)
        return 201, thread.payload()

    async def _h_thread_without_message(self, req: _Req) -> tuple[int, Any]:
        parent = self._channel(req.params["channel_id"])
        body = req.json if isinstance(req.json, dict) else {}
        ttype = int(body.get("type") or CH_PRIVATE_THREAD)
        if ttype not in (CH_PUBLIC_THREAD, CH_PRIVATE_THREAD):
            raise form_error(["type"], "BASE_TYPE_CHOICES", "Value must be one of {11, 12}.")
        thread = self._new_thread(
            parent, body, thread_id=self.state.ids.next(), from_message=None, thread_type=ttype
        )
        return 201, thread.payload()

    # ==== REST handlers: guild ===============================================================
    def _check_guild(self, req: _Req) -> None:
        if int(req.params["guild_id"]) != self.guild_id:
            raise DiscordError(404, 10004, "Unknown Guild")

    async def _h_guild(self, req: _Req) -> tuple[int, Any]:
        self._check_guild(req)
        out = self.state.guild_payload()
        out.update(approximate_member_count=len(self.state.members), approximate_presence_count=0)
        return 200, out

    async def _h_guild_channels(self, req: _Req) -> tuple[int, Any]:
        self._check_guild(req)
        return 200, [c.payload() for c in self.state.text_channels()]

    async def _h_guild_roles(self, req: _Req) -> tuple[int, Any]:
        self._check_guild(req)
        return 200, [r.payload() for r in self.state.roles.values()]

    async def _h_active_threads(self, req: _Req) -> tuple[int, Any]:
        self._check_guild(req)
        threads = [t for t in self.state.threads() if not t.archived]
        return 200, {"threads": [t.payload() for t in threads], "members": []}

    async def _h_member(self, req: _Req) -> tuple[int, Any]:
        self._check_guild(req)
        uid = int(req.params["user_id"])
        if uid not in self.state.members:
            raise DiscordError(404, 10007, "Unknown Member")
        return 200, self.state.member_payload(uid)

    # ==== used by the driver =================================================================
    def _fail(self, ix: InteractionRecord, reason: str) -> None:
        if not ix.failed:
            ix.failed = True
            ix.fail_reason = reason
            self._log(f"FAILED interaction {ix.name or ix.type}: {reason}")
            self._notify()

    def _check_deadline(self, ix: InteractionRecord) -> None:
        if ix.acked or ix.failed:
            return
        if self.now() - ix.created > self.ack_deadline:
            self._fail(
                ix, f"not acknowledged within {self.ack_deadline}s ('This interaction failed')"
            )

    def _schedule_deadline(self, ix: InteractionRecord, delay: float) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self._check_deadline(ix)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _start_interaction(self, ix: InteractionRecord) -> None:
        """Register an interaction a fake user started and send INTERACTION_CREATE."""
        self.state.interactions[ix.id] = ix
        self.state.interactions_by_token[ix.token] = ix
        self.gateway.dispatch("INTERACTION_CREATE", ix.payload)
        self._schedule_deadline(ix, self.ack_deadline + 0.005)
        self._notify()

    async def _user_message(
        self,
        user: UserRecord,
        channel: ChannelRecord,
        content: str,
        files: Iterable[tuple[str, bytes, str | None]],
        *,
        reference: MessageRecord | None = None,
        mention_author: bool = True,
    ) -> MessageRecord:
        attachments = []
        for filename, data, content_type in files:
            size = image_size(data)
            attachments.append(
                self.state.make_attachment(
                    filename, data, channel_id=channel.id, content_type=content_type, size=size
                )
            )
        if len(attachments) > MAX_ATTACHMENTS:
            raise ValueError("a Discord message holds at most 10 attachments")
        mentions = self._mentions(content)
        fields: dict[str, Any] = {}
        if reference is not None:
            fields["message_reference"] = {
                "type": 0,
                "message_id": str(reference.id),
                "channel_id": str(reference.channel_id),
                "guild_id": str(self.guild_id),
            }
            # A reply pings the author, except for interaction responses (webhook messages):
            # Discord does not count those as mentioning the bot.
            if mention_author and reference.author not in mentions and reference.webhook_id is None:
                mentions.append(reference.author)
        msg = MessageRecord(
            id=self.state.ids.next(),
            channel_id=channel.id,
            guild_id=self.guild_id,
            author=user,
            content=content,
            attachments=attachments,
            type=MT_REPLY if reference is not None else MT_DEFAULT,
            mentions=mentions,
            **fields,
        )
        self.state.add_message(msg)
        self._dispatch_message("MESSAGE_CREATE", msg)
        self._notify()
        return msg
