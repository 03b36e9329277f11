"""The fake gateway: HELLO, heartbeats, IDENTIFY -> READY + GUILD_CREATE, RESUME with event
replay, intents (privileged ones refused with 4014 unless enabled), and ordered dispatch.

A session outlives its WebSocket: events dispatched while the bot is disconnected are kept
and replayed when it RESUMEs, as Discord does. A clean close (1000/1001) by the bot ends
the session.

Sharding: IDENTIFY `shard: [shard_id, shard_count]` (an invalid one closes with 4010). A
session gets READY listing, and GUILD_CREATE for, only the guilds with
`(guild_id >> 22) % shard_count == shard_id`, and of the other events only those whose guild it
owns; events without a guild_id (DMs, DM interactions) go to shard 0. Sessions without `shard`
are shard [0, 1]. Several sessions (shards of one or more processes) may be connected at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord_state import APPLICATION_FLAGS, DiscordState

# Gateway intents.
I_GUILDS = 1 << 0
I_GUILD_MEMBERS = 1 << 1
I_GUILD_PRESENCES = 1 << 8
I_GUILD_MESSAGES = 1 << 9
I_GUILD_MESSAGE_REACTIONS = 1 << 10
I_DIRECT_MESSAGES = 1 << 12
I_DIRECT_MESSAGE_REACTIONS = 1 << 13
I_MESSAGE_CONTENT = 1 << 15
PRIVILEGED = I_GUILD_MEMBERS | I_GUILD_PRESENCES | I_MESSAGE_CONTENT

OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_PRESENCE, OP_VOICE = 0, 1, 2, 3, 4
OP_RESUME, OP_RECONNECT, OP_REQUEST_MEMBERS, OP_INVALID_SESSION = 6, 7, 8, 9
OP_HELLO, OP_HEARTBEAT_ACK = 10, 11

Transform = Callable[["GatewaySession", dict[str, Any]], dict[str, Any]]


def _frame(op: int, d: Any, t: str | None = None, s: int | None = None) -> str:
    return json.dumps({"op": op, "d": d, "s": s, "t": t}, separators=(",", ":"))


class GatewayConnection:
    """One WebSocket; frames go out in order through a single writer task."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.session: GatewaySession | None = None
        self.server_closed = False  # closed by the fake (the session stays resumable)
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write())

    def send(self, frame: str) -> None:
        self._outbox.put_nowait(frame)

    async def _write(self) -> None:
        while (frame := await self._outbox.get()) is not None:
            try:
                await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return

    async def stop(self) -> None:
        self._outbox.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._writer, 2)


def shard_for(guild_id: int | None, shard_count: int) -> int:
    """Discord's sharding formula; events without a guild go to shard 0."""
    return 0 if guild_id is None else (guild_id >> 22) % shard_count


class GatewaySession:
    def __init__(self, session_id: str, intents: int, shard: list[int] | None) -> None:
        self.session_id = session_id
        self.intents = intents
        self.shard = shard  # as sent in IDENTIFY (None: unsharded)
        self.shard_id, self.shard_count = (shard[0], shard[1]) if shard else (0, 1)
        self.seq = 0
        self.buffer: deque[tuple[int, str]] = deque(maxlen=5000)
        self.conn: GatewayConnection | None = None
        self.invalidated = False
        self.ready = False

    def has(self, intent: int) -> bool:
        return bool(self.intents & intent)

    def owns(self, guild_id: int | None) -> bool:
        """Whether this session's shard receives the events of `guild_id` (None: no guild)."""
        return shard_for(guild_id, self.shard_count) == self.shard_id

    def dispatch(self, t: str, d: Any) -> int:
        self.seq += 1
        frame = _frame(OP_DISPATCH, d, t, self.seq)
        self.buffer.append((self.seq, frame))
        if self.conn is not None:
            self.conn.send(frame)
        return self.seq


class Gateway:
    def __init__(
        self,
        state: DiscordState,
        token: str,
        *,
        log: Callable[[str], None],
        notify: Callable[[], None],
    ) -> None:
        self.state = state
        self.token = token
        self.log = log
        self.notify = notify
        self.url = ""
        self.resume_url = ""
        self.heartbeat_interval_ms = 41250
        self.enabled_privileged = I_GUILD_MEMBERS | I_MESSAGE_CONTENT
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: set[GatewayConnection] = set()
        self.identify_count = 0
        self.resume_count = 0
        self.heartbeats = 0
        self.close_codes: list[int] = []

    # -- state seen by tests -------------------------------------------------------------
    def live_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if not s.invalidated]

    def attached_ready(self, shards: int | None = None) -> bool:
        """A ready session is connected (with `shards`: one for every shard id of that count)."""
        ready = [s for s in self.live_sessions() if s.ready and s.conn is not None]
        if shards is None:
            return bool(ready)
        covered = {s.shard_id for s in ready if s.shard_count == shards}
        return covered >= set(range(shards))

    def current_intents(self) -> int:
        live = self.live_sessions()
        return live[-1].intents if live else 0

    # -- dispatch ------------------------------------------------------------------------
    def dispatch(
        self,
        t: str,
        d: dict[str, Any],
        *,
        intent: int | None = None,
        transform: Transform | None = None,
    ) -> None:
        """Send an event to every ready session whose shard owns its guild (the event's
        `guild_id`; a GUILD_* event's `id`; none: shard 0) and that has `intent`."""
        raw = d.get("id") if t.startswith("GUILD_") and "guild_id" not in d else d.get("guild_id")
        guild_id = int(raw) if raw is not None else None
        sent = False
        for session in self.live_sessions():
            if not session.ready or (intent is not None and not session.has(intent)):
                continue
            if not session.owns(guild_id):
                continue
            session.dispatch(t, transform(session, d) if transform else d)
            sent = True
        self.log(f"GW  -> {t} {_brief(d)}" + ("" if sent else " (no bot session: dropped)"))

    # -- connection handling -------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        conn = GatewayConnection(ws)
        self.connections.add(conn)
        conn.send(
            _frame(
                OP_HELLO,
                {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fake-gateway"]},
            )
        )
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                if not await self._on_frame(conn, payload):
                    break
        finally:
            code = ws.close_code
            self.connections.discard(conn)
            session = conn.session
            if session is not None and session.conn is conn:
                session.conn = None
                if code in (1000, 1001) and not conn.server_closed:
                    session.invalidated = True  # a clean close by the bot ends the session
            if code is not None:
                self.close_codes.append(code)
            await conn.stop()
            self.log(f"GW  connection closed (code {code})")
            self.notify()
        return ws

    async def _on_frame(self, conn: GatewayConnection, payload: dict[str, Any]) -> bool:
        op, d = payload.get("op"), payload.get("d")
        if op == OP_HEARTBEAT:
            self.heartbeats += 1
            conn.send(_frame(OP_HEARTBEAT_ACK, None))
            return True
        if op == OP_IDENTIFY:
            return await self._identify(conn, d or {})
        if op == OP_RESUME:
            return await self._resume(conn, d or {})
        if conn.session is None and op in (OP_PRESENCE, OP_REQUEST_MEMBERS, OP_VOICE):
            await conn.ws.close(code=4003, message=b"Not authenticated.")
            return False
        if op == OP_REQUEST_MEMBERS:
            self._members_chunk(conn.session, d or {})
            return True
        if op in (OP_PRESENCE, OP_VOICE):
            return True
        await conn.ws.close(code=4001, message=b"Unknown opcode.")
        return False

    async def _identify(self, conn: GatewayConnection, d: dict[str, Any]) -> bool:
        if conn.session is not None:
            await conn.ws.close(code=4005, message=b"Already authenticated.")
            return False
        if d.get("token") != self.token:
            self.log("GW  IDENTIFY with a wrong token -> close 4004")
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return False
        intents = int(d.get("intents") or 0)
        shard = d.get("shard")
        if shard is not None and not _valid_shard(shard):
            self.log(f"GW  IDENTIFY with an invalid shard {shard!r} -> close 4010")
            await conn.ws.close(code=4010, message=b"Invalid shard.")
            return False
        if intents & PRIVILEGED & ~self.enabled_privileged:
            self.log(
                f"GW  IDENTIFY asks for privileged intents not enabled ({intents}) -> close 4014"
            )
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return False
        session = GatewaySession(os.urandom(16).hex(), intents, shard)
        for old in self.sessions.values():
            # A new IDENTIFY for a shard means a new bot process for it: a disconnected old
            # session of that shard is gone (sessions of other shards are not affected).
            same_shard = (old.shard_id, old.shard_count) == (session.shard_id, session.shard_count)
            if old.conn is None and same_shard:
                old.invalidated = True
        self.sessions[session.session_id] = session
        session.conn = conn
        conn.session = session
        self.identify_count += 1
        session.dispatch("READY", self._ready_payload(session))
        owned = self.owned_guilds(session)
        for guild_id in owned:
            session.dispatch(
                "GUILD_CREATE",
                self.state.guild_create_payload(guild_id, members=session.has(I_GUILD_MEMBERS)),
            )
        session.ready = True
        where = f" shard {session.shard}" if shard is not None else ""
        self.log(f"GW  IDENTIFY ok{where} (intents {intents}) -> READY + {len(owned)} GUILD_CREATE")
        self.notify()
        return True

    async def _resume(self, conn: GatewayConnection, d: dict[str, Any]) -> bool:
        session = self.sessions.get(str(d.get("session_id")))
        if d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return False
        if session is None or session.invalidated:
            self.log("GW  RESUME of an unknown session -> INVALID_SESSION")
            conn.send(_frame(OP_INVALID_SESSION, False))
            return True
        if session.conn is not None and session.conn is not conn:
            old = session.conn
            old.server_closed = True
            await old.ws.close(code=4000, message=b"Session resumed elsewhere.")
        session.conn = conn
        conn.session = session
        last = int(d.get("seq") or 0)
        replay = [frame for seq, frame in session.buffer if seq > last]
        for frame in replay:
            conn.send(frame)
        self.resume_count += 1
        session.dispatch("RESUMED", {"_trace": ["fake-gateway"]})
        self.log(f"GW  RESUME ok, replayed {len(replay)} events")
        self.notify()
        return True

    def _ready_payload(self, session: GatewaySession) -> dict[str, Any]:
        user = self.state.bot_user.payload()
        user.update(verified=True, mfa_enabled=False, email=None)
        out: dict[str, Any] = {
            "v": 10,
            "user": user,
            "guilds": [{"id": str(g), "unavailable": True} for g in self.owned_guilds(session)],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_url,
            "application": {"id": str(self.state.application_id), "flags": APPLICATION_FLAGS},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["us-east"],
            "user_settings": {},
            "auth": {},
            "_trace": ["fake-gateway"],
        }
        if session.shard is not None:
            out["shard"] = session.shard
        return out

    def owned_guilds(self, session: GatewaySession) -> list[int]:
        return [g for g in self.state.bot_guilds() if session.owns(g)]

    def guild_joined(self, guild_id: int) -> None:
        """The bot was added to a guild: GUILD_CREATE to the shard owning it."""
        for session in self.live_sessions():
            if session.ready and session.owns(guild_id):
                payload = self.state.guild_create_payload(
                    guild_id, members=session.has(I_GUILD_MEMBERS)
                )
                payload.pop("unavailable")  # a join, not an outage ending
                session.dispatch("GUILD_CREATE", payload)
        self.log(f"GW  -> GUILD_CREATE id={guild_id} (bot added to the guild)")

    def _members_chunk(self, session: GatewaySession | None, d: dict[str, Any]) -> None:
        if session is None:
            return
        try:
            guild_id = int(d.get("guild_id") or self.state.guild_id)
        except (TypeError, ValueError):
            return
        guild = self.state.guilds.get(guild_id)
        if guild is None or not session.owns(guild_id):
            return
        wanted = {int(u) for u in d.get("user_ids") or []}
        query = str(d.get("query") or "")
        members = [
            self.state.member_payload(uid, guild_id=guild_id)
            for uid, m in guild.members.items()
            if (not wanted or uid in wanted) and m.user.username.startswith(query)
        ]
        chunk: dict[str, Any] = {
            "guild_id": str(guild_id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if d.get("nonce") is not None:
            chunk["nonce"] = d["nonce"]
        session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    # -- test controls -------------------------------------------------------------------
    async def disconnect(self, code: int = 4000, *, shard_id: int | None = None) -> None:
        """Drop every bot connection (or those of one shard id) without ending its session
        (the bot will RESUME)."""
        for conn in list(self.connections):
            if shard_id is not None and (conn.session is None or conn.session.shard_id != shard_id):
                continue
            conn.server_closed = True
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            await conn.ws.close(code=code, message=b"Fake disconnect.")
        self.notify()

    def request_reconnect(self) -> None:
        for conn in list(self.connections):
            conn.send(_frame(OP_RECONNECT, None))

    def invalidate_sessions(self) -> None:
        """Forget every session: a RESUME now gets INVALID_SESSION and the bot IDENTIFYs."""
        for session in self.sessions.values():
            session.invalidated = True

    async def close(self) -> None:
        for conn in list(self.connections):
            conn.server_closed = True
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"Fake Discord stopping.")
            await conn.stop()


def _valid_shard(shard: Any) -> bool:
    if not isinstance(shard, list) or len(shard) != 2:
        return False
    shard_id, count = shard
    ints = all(isinstance(x, int) and not isinstance(x, bool) for x in shard)
    return ints and count >= 1 and 0 <= shard_id < count


def _brief(d: Any) -> str:
    if not isinstance(d, dict):
        return ""
    bits = []
    for key in ("id", "channel_id", "type", "name"):
        if key in d:
            bits.append(f"{key}={d[key]}")
    if isinstance(d.get("content"), str) and d["content"]:
        bits.append(f"content={d['content'][:40]!r}")
    data = d.get("data")
    if isinstance(data, dict):
        for key in ("name", "custom_id"):
            if key in data:
                bits.append(f"data.{key}={data[key]!r}")
    return " ".join(bits)
