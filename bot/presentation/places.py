"""Where an interaction happened, and so what the bot may do there (product.md §10, "Works
wherever Discord lets it").

Discord lets the app work in four kinds of place:

- a **server** the bot is in (guild install): channels and threads, public or private. The
  bot posts, edits its own messages, reads replies and opens threads, as far as its
  permissions there allow (a private thread it was not added to: it sees nothing there);
- its **DM** with the user: it posts and reads (a reply refines); no threads;
- a **private channel** (a group DM, or a DM between users), only through the app installed
  to the user's account: the bot is never a member;
- **another server**, where the bot is not a member, also through a user install.

Where the bot cannot post (the last two, and channels it may not see or write in), every
answer goes through the interaction: its response, edits and followups while the 15-minute
token lasts (and an interaction only a user install authorized gets at most 5 followups).
Nothing may try what Discord would refuse there (403 50001 / 50013), so every target and
chain asks its `Place`. `Place.reach` is what a job's payload remembers, so that another
process (or a restarted one) knows it too.

Also here: the installation types and contexts every command declares (`EVERYWHERE`,
`ANY_INSTALL`; server administration: `SERVERS_ONLY`, `GUILD_INSTALL`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import discord
from discord import app_commands

from bot.errors import UserError

# Every command, unless it says otherwise: installable to servers and to users' accounts,
# usable in servers, the bot's DM and private channels (group DMs).
EVERYWHERE = app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True)
ANY_INSTALL = app_commands.AppInstallationType(guild=True, user=True)
# Server administration (/quota): only where the server installed the app.
SERVERS_ONLY = app_commands.AppCommandContext(guild=True, dm_channel=False, private_channel=False)
GUILD_INSTALL = app_commands.AppInstallationType(guild=True, user=False)

# Discord: an interaction only a user install authorized may create at most 5 followups.
USER_INSTALL_FOLLOWUPS = 5

# authorizing_integration_owners key of a guild install (a user install is 1).
_GUILD_INSTALL = 0


class PlaceKind(StrEnum):
    SERVER = "server"  # a channel or thread of a server the bot is in
    BOT_DM = "dm"  # the bot's DM with the user
    PRIVATE_CHANNEL = "private_channel"  # a group DM or a DM between users (user install)
    OTHER_SERVER = "other_server"  # a server the bot is not in (user install)


class Reach(StrEnum):
    """How the bot reaches a place once the interaction's token is gone."""

    CHANNEL = "channel"  # it posts and edits there itself
    INTERACTION = "interaction"  # only through the interaction: after 15 minutes, not at all


@dataclass(frozen=True)
class Place:
    kind: PlaceKind
    channel_id: int
    guild_id: int | None  # the interaction's server (None in DMs and group DMs)
    can_post: bool  # the bot may post and edit its messages there without the token
    can_read: bool  # messages there reach the bot (replies refine)
    in_thread: bool = False
    private_thread: bool = False
    followup_limit: int | None = None  # user-installed interactions: 5

    @property
    def reach(self) -> Reach:
        return Reach.CHANNEL if self.can_post else Reach.INTERACTION

    @property
    def bot_server(self) -> int | None:
        """The server whose settings apply here (templates, quotas set by its admins): only a
        server the bot is in."""
        return self.guild_id if self.kind is PlaceKind.SERVER else None

    @property
    def can_thread(self) -> bool:
        """Whether a chain may try to open a thread here (the permissions are checked then)."""
        return self.kind is PlaceKind.SERVER and self.can_post

    @property
    def installed_to_user(self) -> bool:
        """A place the app reaches only as installed to the user's account."""
        return self.kind in (PlaceKind.PRIVATE_CHANNEL, PlaceKind.OTHER_SERVER)


def _owners(interaction: Any) -> dict[int, int]:
    # discord.py keeps authorizing_integration_owners privately (is_user_integration() and
    # is_guild_integration() use it); the followup limit depends on which installs it names.
    owners = getattr(interaction, "_integration_owners", None)
    return dict(owners) if isinstance(owners, dict) else {}


def place_of(interaction: Any) -> Place:
    """Where `interaction` happened: from its context (guild / bot DM / private channel),
    whether the bot is a member of its server (the client has the guild), and the bot's
    permissions there (app_permissions). An interaction without these (a test double, an old
    payload) counts as a server channel where the bot can post, as before."""
    channel_id = int(getattr(interaction, "channel_id", None) or 0)
    guild_id = getattr(interaction, "guild_id", None)
    channel = getattr(interaction, "channel", None)
    context = getattr(interaction, "context", None)
    owners = _owners(interaction)
    limit = USER_INSTALL_FOLLOWUPS if owners and _GUILD_INSTALL not in owners else None
    private_channel = bool(getattr(context, "private_channel", False))
    if guild_id is None:
        if private_channel or isinstance(channel, discord.GroupChannel):
            return Place(PlaceKind.PRIVATE_CHANNEL, channel_id, None, False, False,
                         followup_limit=limit)  # fmt: skip
        if getattr(context, "dm_channel", False) or isinstance(channel, discord.DMChannel):
            return Place(PlaceKind.BOT_DM, channel_id, None, True, True, followup_limit=limit)
        return Place(PlaceKind.SERVER, channel_id, None, True, True)  # unknown: as before
    client = getattr(interaction, "client", None)
    get_guild = getattr(client, "get_guild", None)
    if callable(get_guild) and get_guild(guild_id) is None:
        return Place(PlaceKind.OTHER_SERVER, channel_id, guild_id, False, False,
                     followup_limit=limit)  # fmt: skip
    in_thread = isinstance(channel, discord.Thread)
    private_thread = (
        isinstance(channel, discord.Thread) and channel.type is discord.ChannelType.private_thread
    )
    can_see = can_send = True
    raw = getattr(interaction, "app_permissions", None)
    if isinstance(raw, discord.Permissions) and raw.value:
        can_see = raw.view_channel
        can_send = raw.send_messages_in_threads if in_thread else raw.send_messages
    return Place(
        PlaceKind.SERVER,
        channel_id,
        guild_id,
        can_post=can_see and can_send,
        can_read=can_see,
        in_thread=in_thread,
        private_thread=private_thread,
        followup_limit=limit,
    )


def reach_of(info: dict[str, Any]) -> Reach:
    """The reach a job's payload remembers (payloads from before: the channel)."""
    try:
        return Reach(str(info.get("reach") or Reach.CHANNEL))
    except ValueError:
        return Reach.CHANNEL


BATCH_TOO_BIG_HERE = (
    "Here Discord lets me send only {limit} messages for one command (I'm installed to your "
    "account, not to this place), so a batch here can have at most {limit} values; you gave "
    "{count}. In a server that has added me, a batch can have up to 10."
)


def require_batch_room(interaction: Any, variants: int) -> None:
    """A batch posts each variant as a followup: refuse, before anything is queued, one that
    a user-installed interaction's followup limit could not carry."""
    limit = place_of(interaction).followup_limit
    if limit is not None and variants > limit:
        raise UserError(BATCH_TOO_BIG_HERE.format(limit=limit, count=variants))


NOT_A_BOT_SERVER = (
    "Server templates live in a server that has added me; here you can use the built-in ones "
    "(/template list), or keep your JSON and send it with /prompt."
)


def require_bot_server(interaction: Any) -> None:
    """Server templates are saved and deleted only in a server the bot is in (not in DMs,
    group DMs, or servers where the app is only installed to someone's account)."""
    if place_of(interaction).bot_server is None:
        raise UserError(NOT_A_BOT_SERVER)
