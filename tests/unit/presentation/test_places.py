"""Tests for bot.presentation.places (where an interaction happened, and so how the bot may
answer) and for the targets where only the interaction reaches: nothing is ever posted in the
channel, a late result goes to the requester's DMs, and before the token runs out the progress
message says where the result will be. Recording doubles as in test_targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import discord
import pytest
from discord import app_commands

from bot.errors import UserError
from bot.presentation import targets
from bot.presentation.places import (
    PlaceKind,
    Reach,
    place_of,
    reach_of,
    require_batch_room,
)
from bot.presentation.targets import ExpiryWarning, InteractionTarget, ResumedTarget
from tests.unit.presentation.test_targets import (
    LATE,
    PROGRESS,
    T0,
    USER,
    Client,
    Clock,
    Interaction,
    Message,
    User,
    clock,
    consume,
    http_error,
    result_file,
)

__all__ = ["clock"]

GUILD = 55


class GuildClient(Client):
    def __init__(self, *, guilds: tuple[int, ...] = (GUILD,), cached: bool = True) -> None:
        super().__init__(cached=cached)
        self.guilds = set(guilds)

    def get_guild(self, guild_id: int) -> object | None:
        return object() if guild_id in self.guilds else None


class ClosedUser(User):
    async def send(self, **kwargs: Any) -> Message:
        raise http_error(discord.Forbidden, 403, "Forbidden", 50007, "Cannot send messages")


@dataclass
class Placed(Interaction):
    """An interaction with Discord's place fields (context, guild, app_permissions)."""

    guild_id: int | None = None
    context: app_commands.AppCommandContext = field(
        default_factory=app_commands.AppCommandContext
    )
    app_permissions: discord.Permissions = field(
        default_factory=lambda: discord.Permissions(view_channel=True, send_messages=True)
    )
    _integration_owners: dict[int, int] = field(default_factory=dict)

    async def original_response(self) -> Any:
        @dataclass
        class Shown:
            content: str
            embeds: list[Any] = field(default_factory=list)
            attachments: list[Any] = field(default_factory=list)

        return Shown((self.edits[-1].kwargs.get("content") or "") if self.edits else "")


def group_dm(client: Client) -> Placed:
    return Placed(
        client,
        context=app_commands.AppCommandContext(private_channel=True),
        app_permissions=discord.Permissions(attach_files=True, embed_links=True),
        _integration_owners={1: USER},
    )


# ---- place_of -----------------------------------------------------------------------------


def test_a_group_dm_is_reached_only_through_the_interaction() -> None:
    place = place_of(group_dm(GuildClient()))
    assert place.kind is PlaceKind.PRIVATE_CHANNEL and place.reach is Reach.INTERACTION
    assert not place.can_post and not place.can_read and not place.can_thread
    assert place.followup_limit == 5 and place.bot_server is None and place.installed_to_user


def test_the_bots_dm() -> None:
    ix = Placed(GuildClient(), context=app_commands.AppCommandContext(dm_channel=True),
                _integration_owners={0: 0})  # fmt: skip
    place = place_of(ix)
    assert place.kind is PlaceKind.BOT_DM and place.can_post and place.can_read
    assert not place.can_thread and place.followup_limit is None and place.bot_server is None


def test_a_server_without_the_bot() -> None:
    ix = Placed(GuildClient(guilds=()), guild_id=GUILD,
                context=app_commands.AppCommandContext(guild=True), _integration_owners={1: USER})  # fmt: skip
    place = place_of(ix)
    assert place.kind is PlaceKind.OTHER_SERVER and place.reach is Reach.INTERACTION
    assert place.guild_id == GUILD and place.bot_server is None and place.followup_limit == 5


def test_a_server_with_the_bot_and_its_permissions() -> None:
    ix = Placed(GuildClient(), guild_id=GUILD, context=app_commands.AppCommandContext(guild=True),
                _integration_owners={0: GUILD, 1: USER})  # fmt: skip
    place = place_of(ix)
    assert place.kind is PlaceKind.SERVER and place.can_post and place.can_thread
    assert place.bot_server == GUILD and place.followup_limit is None
    ix.app_permissions = discord.Permissions(view_channel=True)  # may read, not write
    place = place_of(ix)
    assert place.can_read and not place.can_post and place.reach is Reach.INTERACTION


def test_an_interaction_without_place_fields_is_a_server_channel_as_before() -> None:
    place = place_of(Interaction(Client()))
    assert place.kind is PlaceKind.SERVER and place.can_post and place.reach is Reach.CHANNEL


def test_reach_from_a_job_payload() -> None:
    assert reach_of({"reach": "interaction"}) is Reach.INTERACTION
    assert reach_of({}) is Reach.CHANNEL  # payloads from before
    assert reach_of({"reach": "nonsense"}) is Reach.CHANNEL


def test_a_batch_within_the_followup_limit() -> None:
    ix = group_dm(GuildClient())
    require_batch_room(ix, 5)
    with pytest.raises(UserError, match="at most 5 values"):
        require_batch_room(ix, 6)
    require_batch_room(Placed(GuildClient(), guild_id=GUILD, _integration_owners={0: GUILD}), 10)


# ---- targets where only the interaction reaches --------------------------------------------


async def test_a_late_result_goes_to_the_dms_never_the_channel(clock: Clock) -> None:
    client = GuildClient()
    interaction = group_dm(client)
    target = InteractionTarget(interaction)  # type: ignore[arg-type]
    await target.show("⏳ Generating…")
    clock.now = LATE
    message = await target.finish(content=None, files=[result_file()], nonce="nb-result-1")
    assert client.channel.sent == [] and client.channel.edits == []
    [dm] = client.user.dms
    assert "15 minutes" in dm.kwargs["content"] and dm.files == [targets_image()]
    assert "nonce" not in dm.kwargs
    assert message is not None and target.resume_info()["reach"] == "interaction"


async def test_a_late_result_with_dms_closed_is_left_for_history(clock: Clock) -> None:
    client = GuildClient()
    client.user = ClosedUser(USER)
    target = InteractionTarget(group_dm(client))  # type: ignore[arg-type]
    clock.now = LATE
    assert await target.finish(content="❌ failed") is None  # no raise: it waits in /history
    assert client.channel.sent == []


async def test_progress_after_the_token_is_not_shown_anywhere(clock: Clock) -> None:
    client = GuildClient()
    target = InteractionTarget(group_dm(client))  # type: ignore[arg-type]
    await target.show("⏳ Queued")
    clock.now = LATE
    await target.show("⏳ Generating… 900 s")
    assert client.channel.edits == [] and client.channel.sent == []


async def test_progress_near_the_end_of_the_token_says_where_the_result_will_be(
    clock: Clock,
) -> None:
    target = InteractionTarget(group_dm(GuildClient()))  # type: ignore[arg-type]
    interaction = target.interaction
    await target.show("⏳ Queued — next in line")
    assert "/history" not in interaction.edits[-1].kwargs["content"]
    clock.now = T0 + targets.EXPIRY_WARNING_AFTER + 1
    await target.show("⏳ Generating… 780 s")
    shown = interaction.edits[-1].kwargs["content"]
    assert shown.startswith("⏳ Generating") and "/history" in shown and "your DMs" in shown
    assert f"<t:{int(T0 + 15 * 60)}:t>" in shown


async def test_the_warning_timer_edits_a_message_still_in_progress(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    interaction = group_dm(GuildClient())
    target = InteractionTarget(interaction)  # type: ignore[arg-type]
    clock.now = T0 + targets.EXPIRY_WARNING_AFTER + 1
    await target._warn()  # what the timer runs: nothing shown yet, nothing to decorate
    assert interaction.edits == []
    await target.show("⏳ Queued — 3rd in line")
    edits = len(interaction.edits)
    await target._warn()  # already decorated by show(): left alone
    assert len(interaction.edits) == edits
    await target.finish(content=None, files=[result_file()])
    await target._warn()  # the result is out: never touched again
    assert "/history" not in str(interaction.edits[-1].kwargs.get("content"))


def test_the_expiry_warning_decorates_only_when_due(clock: Clock) -> None:
    warning = ExpiryWarning(T0)
    assert warning.decorate("⏳ Queued") == "⏳ Queued"
    clock.now = T0 + targets.EXPIRY_WARNING_AFTER
    assert "/history" in warning.decorate("⏳ Queued")
    warning.disarm()
    assert warning.decorate("⏳ Queued") == "⏳ Queued"


async def test_a_resumed_interaction_only_job_never_posts_in_the_channel(clock: Clock) -> None:
    client = GuildClient()
    info = {"channel_id": 20, "message_id": PROGRESS, "private": False, "reach": "interaction",
            "created_at": T0}  # fmt: skip
    target = ResumedTarget(client, info, user_id=USER)
    await target.show("⏳ Generating…")
    message = await target.finish(content=None, files=[result_file()])
    assert client.channel.edits == [] and client.channel.sent == []
    [dm] = client.user.dms
    assert "15 minutes" in dm.kwargs["content"] and message is not None


def targets_image() -> bytes:
    return consume({"files": [result_file()]})[0]
