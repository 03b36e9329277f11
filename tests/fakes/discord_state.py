"""The fake Discord's world: guilds (one by default, more with add_guild; some without the
bot, for user-installed apps), their channels, roles and members, DMs, group DMs, messages,
public and private threads and commands, plus the JSON payloads Discord would send for each.

Nothing here does I/O; the server (``discord_server``) mutates this state and the driver
(``discord_driver``) reads it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import mimetypes
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from tests.fakes.discord_limits import (
    DEFAULT_UPLOAD_LIMIT,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    walk_components,
)

DISCORD_EPOCH_MS = 1420070400000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
P_CREATE_INVITE = 1 << 0
P_ADMINISTRATOR = 1 << 3
P_MANAGE_GUILD = 1 << 5
P_ADD_REACTIONS = 1 << 6
P_MENTION_EVERYONE = 1 << 17
P_VIEW_CHANNEL = 1 << 10
P_SEND_MESSAGES = 1 << 11
P_MANAGE_MESSAGES = 1 << 13
P_EMBED_LINKS = 1 << 14
P_ATTACH_FILES = 1 << 15
P_READ_HISTORY = 1 << 16
P_EXTERNAL_EMOJIS = 1 << 18
P_CHANGE_NICKNAME = 1 << 26
P_USE_APP_COMMANDS = 1 << 31
P_MANAGE_THREADS = 1 << 34
P_CREATE_PUBLIC_THREADS = 1 << 35
P_CREATE_PRIVATE_THREADS = 1 << 36
P_SEND_IN_THREADS = 1 << 38
P_ALL = (1 << 53) - 1

EVERYONE_PERMS = (
    P_CREATE_INVITE
    | P_ADD_REACTIONS
    | P_VIEW_CHANNEL
    | P_SEND_MESSAGES
    | P_EMBED_LINKS
    | P_ATTACH_FILES
    | P_READ_HISTORY
    | P_EXTERNAL_EMOJIS
    | P_CHANGE_NICKNAME
    | P_USE_APP_COMMANDS
    | P_CREATE_PUBLIC_THREADS
    | P_SEND_IN_THREADS
)
BOT_ROLE_PERMS = EVERYONE_PERMS | P_MANAGE_THREADS | P_CREATE_PRIVATE_THREADS
# What the bot may do in a DM with a user (app_permissions of a bot-DM interaction): Discord
# documents ATTACH_FILES | EMBED_LINKS | MENTION_EVERYONE | USE_EXTERNAL_EMOJIS on top of the
# plain text-channel rights; no thread or moderation rights exist in a DM.
DM_PERMS = (
    P_VIEW_CHANNEL
    | P_SEND_MESSAGES
    | P_ADD_REACTIONS
    | P_EMBED_LINKS
    | P_ATTACH_FILES
    | P_READ_HISTORY
    | P_MENTION_EVERYONE
    | P_EXTERNAL_EMOJIS
    | P_USE_APP_COMMANDS
)

# What an app may do through an interaction where its bot is not (user-installed: group DMs,
# DMs between users): Discord documents ATTACH_FILES | EMBED_LINKS | MENTION_EVERYONE.
PRIVATE_CHANNEL_APP_PERMS = P_ATTACH_FILES | P_EMBED_LINKS | P_MENTION_EVERYONE
# In a server the bot is not in, app_permissions are @everyone's there plus these two (which
# interaction responses always have).
USER_INSTALL_APP_EXTRA = P_ATTACH_FILES | P_EMBED_LINKS
# Without being able to see a private thread, the bot's rights there lose these.
SEE_AND_SEND = P_VIEW_CHANNEL | P_SEND_MESSAGES | P_SEND_IN_THREADS | P_READ_HISTORY

# Channel types.
CH_TEXT = 0
CH_DM = 1
CH_GROUP_DM = 3
CH_PUBLIC_THREAD = 11
CH_PRIVATE_THREAD = 12
THREAD_TYPES = (CH_PUBLIC_THREAD, CH_PRIVATE_THREAD, 10)

# Message types.
MT_DEFAULT = 0
MT_REPLY = 19
MT_CHAT_INPUT = 20
MT_CONTEXT_MENU = 23

ATTACHMENT_URL_LIFETIME_S = 24 * 3600


class Snowflakes:
    """Time-based, strictly increasing snowflake ids like Discord's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._increment = 0
        self._worker = (os.getpid() % 32) << 12 | (1 << 17)

    def next(self) -> int:
        with self._lock:
            ms = max(int(time.time() * 1000), self._last_ms)
            if ms == self._last_ms:
                self._increment += 1
                if self._increment >= 4096:
                    ms += 1
                    self._increment = 0
            else:
                self._increment = 0
            self._last_ms = ms
            return ((ms - DISCORD_EPOCH_MS) << 22) | self._worker | self._increment

    def next_where(self, ok: Callable[[int], bool]) -> int:
        """The next id whose timestamp part satisfies `ok` (e.g. a shard formula), taking the
        first millisecond from now on that does; later ids stay larger."""
        with self._lock:
            ms = max(int(time.time() * 1000), self._last_ms + 1)
            while not ok((ms - DISCORD_EPOCH_MS) << 22):
                ms += 1
            self._last_ms = ms
            self._increment = 0
            return ((ms - DISCORD_EPOCH_MS) << 22) | self._worker


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG/JPEG/GIF/WEBP header (pure Python, no decoding)."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", data[6:10])
            return int(w), int(h)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8 ":
                w, h = struct.unpack("<HH", data[26:30])
                return int(w) & 0x3FFF, int(h) & 0x3FFF
            if chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8X":
                w = int.from_bytes(data[24:27], "little") + 1
                return w, int.from_bytes(data[27:30], "little") + 1
            return None
        if data[:2] == b"\xff\xd8":
            i = 2
            while i + 9 < len(data):
                if data[i] != 0xFF:
                    i += 1
                    continue
                marker = data[i + 1]
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                    i += 1 if marker == 0xFF else 2
                    continue
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                    return int(w), int(h)
                i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    except struct.error:
        return None
    return None


def snowflake_time(snowflake: int) -> float:
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


@dataclass
class UserRecord:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "avatar_decoration_data": None,
            "banner": None,
            "accent_color": None,
            "public_flags": 0,
            "flags": 0,
            "collectibles": None,
            "primary_guild": None,
        }
        if self.bot:
            out["bot"] = True
        return out

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass
class RoleRecord:
    id: int
    name: str
    permissions: int
    position: int
    managed: bool = False
    bot_id: int | None = None

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }
        if self.bot_id is not None:
            out["tags"] = {"bot_id": str(self.bot_id)}
        return out


@dataclass
class MemberRecord:
    user: UserRecord
    role_ids: list[int]
    joined_at: float
    nick: str | None = None

    def payload(self, *, with_user: bool = True, permissions: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "roles": [str(r) for r in self.role_ids],
            "joined_at": iso(self.joined_at),
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            out["user"] = self.user.payload()
        if permissions is not None:
            out["permissions"] = str(permissions)
        return out


@dataclass
class GuildRecord:
    """A guild: roles (the @everyone role's id is the guild's), members, owner and boost level.
    Its channels live in DiscordState.channels with this guild_id. `bot_member` False: a guild
    the bot is not in (its members may still use the app installed to their account)."""

    id: int
    name: str
    created: float
    roles: dict[int, RoleRecord] = field(default_factory=dict)
    members: dict[int, MemberRecord] = field(default_factory=dict)
    owner_id: int = 0
    bot_role_id: int = 0
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    system_channel_id: int | None = None
    bot_member: bool = True

    @property
    def premium_tier(self) -> int:
        """The boost tier that gives this upload limit (50 MiB: tier 2, 100 MiB: tier 3)."""
        mib = 1024 * 1024
        return 3 if self.upload_limit >= 100 * mib else 2 if self.upload_limit >= 50 * mib else 0


@dataclass
class ChannelRecord:
    """A text channel, a thread (it has a parent_id; type 12 is private: members only), a DM
    with one user (type 1, no guild) or a group DM of users (type 3, no guild, never the bot)."""

    id: int
    name: str
    type: int
    guild_id: int | None
    position: int = 0
    parent_id: int | None = None
    owner_id: int | None = None
    auto_archive_duration: int = 1440
    archived: bool = False
    locked: bool = False
    created_at: float = field(default_factory=time.time)
    last_message_id: int | None = None
    message_count: int = 0
    member_ids: set[int] = field(default_factory=set)
    from_message_id: int | None = None
    invitable: bool = True  # a private thread's members may add others
    recipients: list[UserRecord] = field(default_factory=list)  # a DM's other user(s)

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES

    @property
    def is_private_thread(self) -> bool:
        return self.type == CH_PRIVATE_THREAD

    @property
    def is_dm(self) -> bool:
        return self.type == CH_DM

    @property
    def is_group_dm(self) -> bool:
        return self.type == CH_GROUP_DM

    @property
    def is_private(self) -> bool:
        """A DM or a group DM: no guild."""
        return self.type in (CH_DM, CH_GROUP_DM)

    def payload(self) -> dict[str, Any]:
        if self.is_group_dm:
            return {
                "id": str(self.id),
                "type": CH_GROUP_DM,
                "last_message_id": str(self.last_message_id) if self.last_message_id else None,
                "flags": 0,
                "recipients": [u.payload() for u in self.recipients],
                "name": self.name or None,
                "icon": None,
                "owner_id": str(self.owner_id),
            }
        if self.is_dm:
            return {
                "id": str(self.id),
                "type": CH_DM,
                "last_message_id": str(self.last_message_id) if self.last_message_id else None,
                "flags": 0,
                "recipients": [u.payload() for u in self.recipients],
            }
        base: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "last_message_id": str(self.last_message_id) if self.last_message_id else None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if not self.is_thread:
            base.update(
                position=self.position,
                permission_overwrites=[],
                parent_id=None,
                topic=None,
                nsfw=False,
                default_auto_archive_duration=1440,
                default_thread_rate_limit_per_user=0,
            )
            return base
        base.update(
            parent_id=str(self.parent_id),
            owner_id=str(self.owner_id),
            message_count=self.message_count,
            total_message_sent=self.message_count,
            member_count=max(1, len(self.member_ids)),
            thread_metadata={
                "archived": self.archived,
                "auto_archive_duration": self.auto_archive_duration,
                "archive_timestamp": iso(self.created_at),
                "locked": self.locked,
                "create_timestamp": iso(self.created_at),
                **({"invitable": self.invitable} if self.type == CH_PRIVATE_THREAD else {}),
            },
        )
        return base


@dataclass
class AttachmentRecord:
    id: int
    filename: str
    data: bytes = field(repr=False)
    content_type: str
    url: str
    description: str | None = None
    width: int | None = None
    height: int | None = None
    ephemeral: bool = False
    title: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
        }
        if self.width is not None and self.height is not None:
            out["width"] = self.width
            out["height"] = self.height
        if self.description is not None:
            out["description"] = self.description
        if self.title is not None:
            out["title"] = self.title
        if self.ephemeral:
            out["ephemeral"] = True
        return out


@dataclass
class MessageEdit:
    """A message's state just before one edit (its edit history)."""

    at: float
    content: str
    embeds: list[dict[str, Any]]
    attachment_names: list[str]
    components: list[dict[str, Any]]
    flags: int


@dataclass
class MessageRecord:
    id: int
    channel_id: int
    guild_id: int | None
    author: UserRecord
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[AttachmentRecord] = field(default_factory=list)
    embed_attachments: list[AttachmentRecord] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    type: int = MT_DEFAULT
    message_reference: dict[str, Any] | None = None
    interaction_metadata: dict[str, Any] | None = None
    interaction_legacy: dict[str, Any] | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    mentions: list[UserRecord] = field(default_factory=list)
    edited_at: float | None = None
    edits: list[MessageEdit] = field(default_factory=list)
    deleted: bool = False
    visible_to: int | None = None  # ephemeral: only this user sees it
    position: int | None = None
    reactions: dict[str, set[int]] = field(default_factory=dict)
    interaction_id: int | None = None
    nonce: int | str | None = None  # echoed in the create response and MESSAGE_CREATE only

    # -- conveniences for tests ---------------------------------------------------------
    @property
    def created_at(self) -> float:
        return snowflake_time(self.id)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & FLAG_LOADING)

    @property
    def reference_id(self) -> int | None:
        ref = self.message_reference
        return int(ref["message_id"]) if ref and ref.get("message_id") else None

    @property
    def files(self) -> list[AttachmentRecord]:
        """Every file the message carries: listed attachments and those shown in embeds."""
        return [*self.attachments, *self.embed_attachments]

    @property
    def attachment_names(self) -> list[str]:
        return [a.filename for a in self.attachments]

    @property
    def embed(self) -> dict[str, Any] | None:
        return self.embeds[0] if self.embeds else None

    @property
    def text(self) -> str:
        """Content plus all embed and text-display text, for loose assertions."""
        parts = [self.content]
        for e in self.embeds:
            parts += [e.get("title") or "", e.get("description") or ""]
            parts += [f"{f.get('name', '')} {f.get('value', '')}" for f in e.get("fields") or []]
            parts.append((e.get("footer") or {}).get("text") or "")
            parts.append((e.get("author") or {}).get("name") or "")
        parts += [
            str(c.get("content")) for c in walk_components(self.components) if c.get("type") == 10
        ]
        return "\n".join(p for p in parts if p)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        return [dict(c) for c in walk_components(self.components) if c.get("type") == 2]

    @property
    def button_labels(self) -> list[str]:
        return [str(b.get("label") or "") for b in self.buttons]

    def snapshot(self) -> MessageEdit:
        return MessageEdit(
            at=time.time(),
            content=self.content,
            embeds=[dict(e) for e in self.embeds],
            attachment_names=[a.filename for a in self.files],
            components=list(self.components),
            flags=self.flags,
        )

    def __repr__(self) -> str:
        bits = [f"id={self.id}", f"author={self.author.username}", f"content={self.content[:60]!r}"]
        if self.attachments:
            bits.append(f"files={self.attachment_names}")
        if self.embeds:
            bits.append(f"embeds={len(self.embeds)}")
        if self.buttons:
            bits.append(f"buttons={self.button_labels}")
        if self.flags:
            bits.append(f"flags={self.flags}")
        if self.deleted:
            bits.append("deleted")
        return f"<FakeMessage {' '.join(bits)}>"


@dataclass
class InteractionRecord:
    """One interaction a fake user started, and everything the bot did with it."""

    id: int
    token: str
    type: int
    user: UserRecord
    channel_id: int
    data: dict[str, Any]
    created: float  # fake clock
    payload: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    message_id: int | None = None  # the message a component/modal interaction came from
    parent_id: int | None = None  # the interaction whose modal was submitted
    response_type: int | None = None
    ack_latency: float | None = None
    failed: bool = False
    fail_reason: str = ""
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    followups_created: int = 0  # followup webhook calls that created or filled a message
    modal: dict[str, Any] | None = None
    choices: list[dict[str, Any]] | None = None
    deferred_pending: bool = False  # type-5 defer whose loading message awaits its content
    original_deleted: bool = False

    @property
    def acked(self) -> bool:
        return self.response_type is not None


class DiscordState:
    """The guilds and everything in them. Ids are fresh per instance. `guild_id`, `roles`,
    `members`, `owner_id` and `premium_tier` are the default guild's ("Test Guild")."""

    def __init__(self) -> None:
        self.ids = Snowflakes()
        self.base_url = ""
        self.secret = os.urandom(16)
        self.clock_offset = 0.0  # shared with the server's fake clock (wall-clock flavour)
        self.application_id = self.ids.next()
        self.bot_user = UserRecord(self.application_id, "Nano Banana", "Nano Banana", bot=True)
        self.guild_id = self.ids.next()
        self.guild_name = "Test Guild"
        self.created = time.time()
        self.users: dict[int, UserRecord] = {self.bot_user.id: self.bot_user}
        self.guilds: dict[int, GuildRecord] = {}
        self.channels: dict[int, ChannelRecord] = {}
        self.messages: dict[int, MessageRecord] = {}
        self.channel_log: dict[int, list[int]] = {}
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.interactions: dict[int, InteractionRecord] = {}
        self.interactions_by_token: dict[str, InteractionRecord] = {}
        self.attachments: dict[int, AttachmentRecord] = {}
        self.thread_creation_allowed = True
        self.private_threads_allowed = True  # the bot's CREATE_PRIVATE_THREADS
        # (channel id, author id, str(nonce)) -> (message id, fake-clock time it was created)
        self.nonces: dict[tuple[int, int, str], tuple[int, float]] = {}
        self.dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self.closed_dms: set[int] = set()  # users who do not accept DMs from the bot
        self.user_installs: set[int] = set()  # users who installed the app to their account
        self._position = itertools.count()
        default = self.add_guild(
            self.guild_name,
            guild_id=self.guild_id,
            channels=("general", "art"),
            members=("alice", "bob", "carol", "admin"),
            roles={"Admin": EVERYONE_PERMS | P_MANAGE_GUILD},
            member_roles={"admin": ("Admin",)},
            owner="admin",
        )
        self.roles = default.roles  # the same dicts: writing to them changes the guild
        self.members = default.members
        self.admin_role_id = next(r.id for r in default.roles.values() if r.name == "Admin")
        self.bot_role_id = default.bot_role_id

    # -- world ---------------------------------------------------------------------------
    def add_guild(
        self,
        name: str,
        *,
        guild_id: int | None = None,
        channels: Iterable[str] = ("general",),
        members: Iterable[str] = (),
        roles: Mapping[str, int] | None = None,
        member_roles: Mapping[str, Iterable[str]] | None = None,
        owner: str | None = None,
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
        bot: bool = True,
    ) -> GuildRecord:
        """A guild with the bot in it: @everyone (ordinary member rights), the extra `roles`
        (name -> permission bits), the bot's managed role, text `channels` and `members` (by
        name; unknown names become new users). `owner` (default: the first member) has every
        permission. `bot=False`: a guild without the bot (no bot role or member)."""
        gid = guild_id if guild_id is not None else self.ids.next()
        guild = GuildRecord(gid, name, time.time(), upload_limit=upload_limit, bot_member=bot)
        guild.roles[gid] = RoleRecord(gid, "@everyone", EVERYONE_PERMS, 0)
        by_name: dict[str, int] = {}
        for pos, (role_name, perms) in enumerate((roles or {}).items(), start=2):
            role = RoleRecord(self.ids.next(), role_name, perms, pos)
            guild.roles[role.id] = role
            by_name[role_name] = role.id
        if bot:
            bot_role = RoleRecord(
                self.ids.next(),
                self.bot_user.username,
                BOT_ROLE_PERMS,
                1,
                managed=True,
                bot_id=self.bot_user.id,
            )
            guild.roles[bot_role.id] = bot_role
            guild.bot_role_id = bot_role.id
            guild.members[self.bot_user.id] = MemberRecord(
                self.bot_user, [bot_role.id], guild.created
            )
        names = list(members)
        for member_name in names:
            user = self._user_named(member_name)
            wanted = (member_roles or {}).get(member_name, ())
            unknown = [r for r in wanted if r not in by_name]
            if unknown:
                raise KeyError(f"no role(s) {unknown} in guild {name!r}; roles: {sorted(by_name)}")
            guild.members[user.id] = MemberRecord(user, [by_name[r] for r in wanted], guild.created)
        owner_name = owner or (names[0] if names else None)
        guild.owner_id = self.user_by_name(owner_name).id if owner_name else self.bot_user.id
        self.guilds[gid] = guild
        for pos, channel_name in enumerate(channels):
            ch = ChannelRecord(self.ids.next(), channel_name, CH_TEXT, gid, position=pos)
            self.channels[ch.id] = ch
            self.channel_log[ch.id] = []
            if guild.system_channel_id is None:
                guild.system_channel_id = ch.id
        return guild

    def _user_named(self, name: str) -> UserRecord:
        for user in self.users.values():
            if user.username == name:
                return user
        user = UserRecord(self.ids.next(), name, name.capitalize())
        self.users[user.id] = user
        return user

    def guild(self, guild_id: int | None = None) -> GuildRecord:
        """A guild by id (the default guild for None); KeyError if the bot is not in it."""
        return self.guilds[self.guild_id if guild_id is None else guild_id]

    @property
    def owner_id(self) -> int:
        return self.guild().owner_id

    @property
    def premium_tier(self) -> int:
        return self.guild().premium_tier

    def user_by_name(self, name: str) -> UserRecord:
        for user in self.users.values():
            if user.username == name:
                return user
        raise KeyError(
            f"no fake user {name!r}; have {sorted(u.username for u in self.users.values())}"
        )

    def channel_by_ref(self, ref: int | str, guild_id: int | None = None) -> ChannelRecord:
        """A channel or thread by id, or a text channel by name (in `guild_id`, else the
        default guild first, then the others)."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            ch = self.channels.get(int(ref))
            if ch is None:
                raise KeyError(f"no channel or thread with id {ref}")
            return ch
        name = ref.lstrip("#")
        order = [guild_id] if guild_id is not None else [self.guild_id, *self.guilds]
        for gid in order:
            for ch in self.channels.values():
                if ch.name == name and ch.type == CH_TEXT and ch.guild_id == gid:
                    return ch
        raise KeyError(f"no channel named {ref!r}")

    def text_channels(self, guild_id: int | None = None) -> list[ChannelRecord]:
        """The text channels of a guild (the default guild for None)."""
        gid = self.guild_id if guild_id is None else guild_id
        return [c for c in self.channels.values() if c.type == CH_TEXT and c.guild_id == gid]

    def dm_channel(self, user: UserRecord) -> ChannelRecord:
        """The DM between the bot and `user`, created the first time either side opens it."""
        existing = self.dm_channels.get(user.id)
        if existing is not None:
            return self.channels[existing]
        ch = ChannelRecord(self.ids.next(), "", CH_DM, None, recipients=[user])
        self.channels[ch.id] = ch
        self.channel_log[ch.id] = []
        self.dm_channels[user.id] = ch.id
        return ch

    def accepts_dms(self, user: UserRecord) -> bool:
        """Whether the bot may post in its DM with `user` (not a bot, DMs not closed)."""
        return not user.bot and user.id not in self.closed_dms

    def bot_guilds(self) -> list[int]:
        """The guilds the bot is a member of (the default one first)."""
        return [gid for gid, g in self.guilds.items() if g.bot_member]

    def add_group_dm(
        self, members: Iterable[str], *, name: str | None = None, owner: str | None = None
    ) -> ChannelRecord:
        """A group DM of these users (by name; new names become users). The bot is never in
        one: only an app installed to a member's account works there, through interactions."""
        users = [self._user_named(n) for n in members]
        if len(users) < 2:
            raise ValueError("a group DM has at least two users")
        owner_user = self.user_by_name(owner) if owner else users[0]
        ch = ChannelRecord(
            self.ids.next(),
            name or "",
            CH_GROUP_DM,
            None,
            owner_id=owner_user.id,
            recipients=users,
            member_ids={u.id for u in users},
        )
        self.channels[ch.id] = ch
        self.channel_log[ch.id] = []
        return ch

    def add_private_thread(
        self,
        parent: ChannelRecord,
        name: str,
        *,
        owner: UserRecord,
        members: Iterable[UserRecord] = (),
    ) -> ChannelRecord:
        """A private thread (type 12) started by a user, without a starter message."""
        if parent.guild_id is None or parent.is_thread:
            raise ValueError("a private thread needs a guild text channel as its parent")
        thread = ChannelRecord(
            id=self.ids.next(),
            name=name,
            type=CH_PRIVATE_THREAD,
            guild_id=parent.guild_id,
            parent_id=parent.id,
            owner_id=owner.id,
            member_ids={owner.id, *(m.id for m in members)},
        )
        self.channels[thread.id] = thread
        self.channel_log[thread.id] = []
        return thread

    def bot_can_view(self, channel: ChannelRecord) -> bool:
        """Whether the bot can see (read, post in) a channel: its own DMs; channels of guilds it
        is in; private threads only as a member (or with Manage Threads). Never a group DM."""
        if channel.is_group_dm:
            return False
        if channel.is_dm:
            return True  # the fake's DMs are all with the bot
        guild = self.guilds.get(channel.guild_id or 0)
        if guild is None or not guild.bot_member:
            return False
        if channel.is_private_thread and self.bot_user.id not in channel.member_ids:
            return bool(self.permissions(self.bot_user.id, guild.id) & P_MANAGE_THREADS)
        return True

    def user_can_view(self, user: UserRecord, channel: ChannelRecord) -> bool:
        """Whether a user sees a channel: DMs and group DMs they are in, channels of their
        guilds, private threads they are a member of (or moderate)."""
        if channel.is_private:
            return user in channel.recipients
        guild = self.guilds.get(channel.guild_id or 0)
        if guild is None or user.id not in guild.members:
            return False
        if channel.is_private_thread and user.id not in channel.member_ids:
            return bool(self.permissions(user.id, guild.id) & P_MANAGE_THREADS)
        return True

    def bot_channel_permissions(self, channel: ChannelRecord) -> int:
        """The bot's rights where an interaction came from (its app_permissions): in its own
        guilds its role's (a private thread it cannot see leaves it no right to see or post
        there); in a guild without it, @everyone's plus attach/embed; in group DMs the few
        an interaction response has."""
        if channel.is_group_dm:
            return PRIVATE_CHANNEL_APP_PERMS
        if channel.is_dm:
            return DM_PERMS
        guild = self.guild(channel.guild_id)
        if not guild.bot_member:
            return guild.roles[guild.id].permissions | USER_INSTALL_APP_EXTRA
        perms = self.permissions(self.bot_user.id, guild.id)
        if not self.bot_can_view(channel):
            perms &= ~SEE_AND_SEND
        return perms

    def threads(self, guild_id: int | None = None) -> list[ChannelRecord]:
        """Threads of one guild, or (None) of every guild."""
        return [
            c
            for c in self.channels.values()
            if c.is_thread and (guild_id is None or c.guild_id == guild_id)
        ]

    def permissions(self, user_id: int, guild_id: int | None = None) -> int:
        """A member's guild-wide permissions (in the default guild for None)."""
        guild = self.guild(guild_id)
        if user_id == guild.owner_id:
            return P_ALL
        member = guild.members.get(user_id)
        perms = guild.roles[guild.id].permissions
        for role_id in member.role_ids if member else []:
            perms |= guild.roles[role_id].permissions
        if user_id == self.bot_user.id and not self.thread_creation_allowed:
            perms &= ~(P_CREATE_PUBLIC_THREADS | P_CREATE_PRIVATE_THREADS)
        if user_id == self.bot_user.id and not self.private_threads_allowed:
            perms &= ~P_CREATE_PRIVATE_THREADS
        if perms & P_ADMINISTRATOR:
            return P_ALL
        return perms

    # -- attachments ---------------------------------------------------------------------
    def make_attachment(
        self,
        filename: str,
        data: bytes,
        *,
        channel_id: int,
        content_type: str | None = None,
        description: str | None = None,
        ephemeral: bool = False,
        size: tuple[int, int] | None = None,
        title: str | None = None,
    ) -> AttachmentRecord:
        att_id = self.ids.next()
        kind = "ephemeral-attachments" if ephemeral else "attachments"
        issued = int(time.time() + self.clock_offset)
        expires = issued + ATTACHMENT_URL_LIFETIME_S
        path = f"/{kind}/{channel_id}/{att_id}/{quote(filename)}"
        sig = self.sign(path, expires)
        url = f"{self.base_url}{path}?ex={expires:x}&is={issued:x}&hm={sig}&"
        guessed = mimetypes.guess_type(filename)[0]
        record = AttachmentRecord(
            id=att_id,
            filename=filename,
            data=data,
            content_type=content_type or guessed or "application/octet-stream",
            url=url,
            description=description,
            width=size[0] if size else None,
            height=size[1] if size else None,
            ephemeral=ephemeral,
            title=title,
        )
        self.attachments[att_id] = record
        return record

    def sign(self, path: str, expires: int) -> str:
        return hmac.new(self.secret, f"{path}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    # -- messages ------------------------------------------------------------------------
    def add_message(self, msg: MessageRecord) -> None:
        self.messages[msg.id] = msg
        if msg.visible_to is not None:
            return
        self.channel_log.setdefault(msg.channel_id, []).append(msg.id)
        channel = self.channels.get(msg.channel_id)
        if channel is not None:
            channel.last_message_id = msg.id
            if channel.is_thread:
                msg.position = channel.message_count
                channel.message_count += 1
                if msg.webhook_id is None:  # an interaction response joins nobody
                    channel.member_ids.add(msg.author.id)

    def history(self, channel_id: int, *, include_deleted: bool = False) -> list[MessageRecord]:
        out = [self.messages[m] for m in self.channel_log.get(channel_id, [])]
        return out if include_deleted else [m for m in out if not m.deleted]

    @staticmethod
    def reference_payload(target: MessageRecord, ref_type: int = 0) -> dict[str, Any]:
        """The message_reference of a reply to `target` (no guild_id in a DM)."""
        out: dict[str, Any] = {
            "type": ref_type,
            "message_id": str(target.id),
            "channel_id": str(target.channel_id),
        }
        if target.guild_id is not None:
            out["guild_id"] = str(target.guild_id)
        return out

    def thread_for_message(self, message_id: int) -> ChannelRecord | None:
        ch = self.channels.get(message_id)
        return ch if ch is not None and ch.is_thread and ch.from_message_id == message_id else None

    # -- payloads ------------------------------------------------------------------------
    def member_payload(
        self,
        user_id: int,
        *,
        with_user: bool = True,
        permissions: bool = False,
        guild_id: int | None = None,
    ) -> dict[str, Any]:
        member = self.guild(guild_id).members[user_id]
        perms = self.permissions(user_id, guild_id) if permissions else None
        return member.payload(with_user=with_user, permissions=perms)

    def message_payload(
        self, msg: MessageRecord, *, gateway: bool = False, depth: int = 0, nonce: bool = False
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": str(msg.id),
            "channel_id": str(msg.channel_id),
            "type": msg.type,
            "content": msg.content,
            "author": msg.author.payload(),
            "attachments": [a.payload() for a in msg.attachments],
            "embeds": [dict(e) for e in msg.embeds],
            "mentions": [u.payload() for u in msg.mentions],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "timestamp": iso(msg.created_at),
            "edited_timestamp": iso(msg.edited_at),
            "flags": msg.flags,
            "components": [dict(c) for c in msg.components],
        }
        if nonce and msg.nonce is not None:
            out["nonce"] = msg.nonce
        if msg.webhook_id is not None:
            out["webhook_id"] = str(msg.webhook_id)
        if msg.application_id is not None:
            out["application_id"] = str(msg.application_id)
        if msg.position is not None:
            out["position"] = msg.position
        if msg.reactions:
            out["reactions"] = [
                {
                    "emoji": {"id": None, "name": name},
                    "count": len(users),
                    "count_details": {"burst": 0, "normal": len(users)},
                    "me": self.bot_user.id in users,
                    "me_burst": False,
                    "burst_colors": [],
                }
                for name, users in msg.reactions.items()
                if users
            ]
        if msg.message_reference is not None:
            out["message_reference"] = dict(msg.message_reference)
            ref_id = msg.reference_id
            if depth == 0 and ref_id is not None:
                ref = self.messages.get(ref_id)
                out["referenced_message"] = (
                    self.message_payload(ref, depth=1)
                    if ref is not None and not ref.deleted
                    else None
                )
        if msg.interaction_metadata is not None:
            out["interaction_metadata"] = dict(msg.interaction_metadata)
        if msg.interaction_legacy is not None:
            out["interaction"] = dict(msg.interaction_legacy)
        thread = self.thread_for_message(msg.id)
        if thread is not None:
            out["thread"] = thread.payload()
        if gateway and msg.guild_id is not None:
            out["guild_id"] = str(msg.guild_id)
            guild = self.guilds.get(msg.guild_id)
            if msg.webhook_id is None and guild is not None and msg.author.id in guild.members:
                out["member"] = self.member_payload(
                    msg.author.id, with_user=False, guild_id=msg.guild_id
                )
        return out

    def guild_payload(self, guild_id: int | None = None) -> dict[str, Any]:
        guild = self.guild(guild_id)
        system = guild.system_channel_id
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "region": "us-east",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": guild.premium_tier,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "system_channel_id": str(system) if system is not None else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "application_id": None,
            "features": [],
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "roles": [r.payload() for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "incidents_data": None,
        }

    def guild_create_payload(self, guild_id: int | None = None, *, members: bool) -> dict[str, Any]:
        guild = self.guild(guild_id)
        out = self.guild_payload(guild.id)
        member_ids = list(guild.members) if members else [self.bot_user.id]
        out.update(
            joined_at=iso(guild.created),
            large=False,
            unavailable=False,
            lazy=True,
            member_count=len(guild.members),
            members=[self.member_payload(uid, guild_id=guild.id) for uid in member_ids],
            channels=[c.payload() for c in self.text_channels(guild.id)],
            threads=[
                t.payload()
                for t in self.threads(guild.id)
                if not t.archived and self.bot_can_view(t)
            ],
            presences=[],
            voice_states=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
            embedded_activities=[],
            activity_instances=[],
        )
        return out

    def application_payload(self) -> dict[str, Any]:
        owner = self.users[self.owner_id]
        return {
            "id": str(self.application_id),
            "name": self.bot_user.username,
            "icon": None,
            "description": "Fake application for tests",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": owner.payload(),
            "team": None,
            "flags": APPLICATION_FLAGS,
            "bot": self.bot_user.payload(),
            "approximate_guild_count": len(self.bot_guilds()),
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "tags": [],
            "install_params": None,
            # installable to servers (0) and to users' accounts (1)
            "integration_types_config": {"0": {}, "1": {}},
        }


# GATEWAY_PRESENCE_LIMITED | GATEWAY_GUILD_MEMBERS_LIMITED | GATEWAY_MESSAGE_CONTENT_LIMITED
# | APPLICATION_COMMAND_BADGE: an unverified bot in under 100 servers with the intents on.
APPLICATION_FLAGS = (1 << 13) | (1 << 15) | (1 << 19) | (1 << 23)
