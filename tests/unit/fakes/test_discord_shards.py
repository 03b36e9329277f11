"""More than one guild and gateway shards on the fake Discord, against the real discord.py
(sharded Clients as separate "processes", an AutoShardedClient) and raw WebSockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
import pytest
import pytest_asyncio
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord_fixtures import discord_py_pointed_at, fake_discord
from tests.fakes.discord_gateway import shard_for
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import P_MANAGE_GUILD, P_MANAGE_MESSAGES

__all__ = ["fake_discord"]


@dataclass
class Seen:
    messages: list[discord.Message] = field(default_factory=list)
    interactions: list[discord.Interaction] = field(default_factory=list)
    joined: list[discord.Guild] = field(default_factory=list)


def make_bot(
    fake: FakeDiscord,
    seen: Seen,
    *,
    shard: tuple[int, int] | None = None,
    sync: bool = True,
    extra_guild: int | None = None,
) -> commands.Bot:
    intents = discord.Intents.default()
    intents.message_content = True
    intents.members = True
    kwargs: dict[str, Any] = {}
    if shard is not None:
        kwargs.update(shard_id=shard[0], shard_count=shard[1])
    bot = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.1, **kwargs)

    @bot.tree.command(description="Where am I")
    async def where(interaction: discord.Interaction) -> None:
        seen.interactions.append(interaction)
        guild = interaction.guild.name if interaction.guild else "DM"
        await interaction.response.send_message(f"{guild} / shard {bot.shard_id}")

    if extra_guild is not None:

        @bot.tree.command(description="Second guild only", guild=discord.Object(extra_guild))
        @app_commands.default_permissions(manage_guild=True)
        async def moderate(interaction: discord.Interaction) -> None:
            seen.interactions.append(interaction)
            await interaction.response.send_message("moderating")

    @bot.event
    async def on_message(message: discord.Message) -> None:
        if not message.author.bot:
            seen.messages.append(message)

    @bot.event
    async def on_guild_join(guild: discord.Guild) -> None:
        seen.joined.append(guild)

    async def setup_hook() -> None:
        if sync:
            await bot.tree.sync()
            if extra_guild is not None:
                await bot.tree.sync(guild=discord.Object(extra_guild))

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


@dataclass
class Running:
    bot: commands.Bot
    seen: Seen
    task: asyncio.Task[None]

    async def stop(self) -> None:
        await self.bot.close()
        await asyncio.wait_for(self.task, 5)


async def start(fake: FakeDiscord, bot: commands.Bot, seen: Seen) -> Running:
    task = asyncio.create_task(bot.start(fake.token))
    await eventually(lambda: bot.is_ready() or task.done(), timeout=10)
    if task.done():
        task.result()
    return Running(bot, seen, task)


async def eventually(condition: Any, timeout: float = 5) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


@pytest_asyncio.fixture
async def pointed(fake_discord: FakeDiscord) -> AsyncIterator[FakeDiscord]:
    with discord_py_pointed_at(fake_discord):
        yield fake_discord
    assert fake_discord.internal_errors == [] and fake_discord.unhandled == []
    assert fake_discord.schema_violations == []


# ---- the formula and the world -------------------------------------------------------------


def test_shard_formula_is_discords() -> None:
    gid = 1234567890123456789
    for count in (1, 2, 3, 16):
        assert shard_for(gid, count) == (gid >> 22) % count
        assert FakeDiscord.shard_for(gid, count) == (gid >> 22) % count
    assert shard_for(None, 4) == 0  # events without a guild: the first shard


def test_default_world_is_one_guild_and_add_guild_places_it_on_a_shard() -> None:
    fake = FakeDiscord()
    assert fake.guild_ids == [fake.guild_id]
    for shard_id, count in [(0, 2), (1, 2), (2, 3), (1, 3)]:
        gid = fake.add_guild(f"g{shard_id}/{count}", on_shard=(shard_id, count))
        assert (gid >> 22) % count == shard_id
    assert len(fake.guild_ids) == 5 and fake.guild_ids[0] == fake.guild_id
    other = fake.add_guild(
        "Second Guild",
        channels=("lobby", "general"),
        members=("dave", "alice"),
        roles={"Mod": P_MANAGE_MESSAGES},
        member_roles={"alice": ["Mod"]},
    )
    state = fake.state
    assert fake.channel("general") in [c.id for c in state.text_channels(fake.guild_id)]
    assert fake.channel("general", guild=other) in [c.id for c in state.text_channels(other)]
    assert fake.channel("lobby") == fake.channel("lobby", guild=other)
    dave, alice = fake.user("dave"), fake.user("alice")
    guild = state.guild(other)
    assert set(guild.members) == {fake.bot_user.id, dave.id, alice.id}
    assert guild.owner_id == dave.id and state.permissions(dave.id, other) == (1 << 53) - 1
    assert state.permissions(alice.id, other) & P_MANAGE_MESSAGES
    assert not state.permissions(alice.id) & P_MANAGE_MESSAGES  # not in the default guild
    assert dave.id not in state.members  # the default guild's members are unchanged
    with pytest.raises(KeyError, match="no role"):
        fake.add_guild("x", members=("eve",), member_roles={"eve": ["Nope"]})


async def test_gateway_bot_reports_the_recommended_shard_count(fake_discord: FakeDiscord) -> None:
    headers = {"Authorization": f"Bot {fake_discord.token}"}
    url = f"{fake_discord.api_base}/gateway/bot"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers) as resp:
            body = await resp.json()
        assert body["shards"] == 1 and body["url"] == fake_discord.gateway_url
        assert body["session_start_limit"]["max_concurrency"] == 1
        fake_discord.recommended_shards = 3
        async with session.get(url, headers=headers) as resp:
            assert (await resp.json())["shards"] == 3


async def test_identify_with_an_invalid_shard_closes_4010(fake_discord: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as session:
        for shard in ([2, 2], [0, 0], [-1, 2], "0,1"):
            async with session.ws_connect(fake_discord.gateway_url) as ws:
                hello = await ws.receive_json()
                assert hello["op"] == 10
                identify = {"token": fake_discord.token, "intents": 513, "shard": shard}
                await ws.send_json({"op": 2, "d": identify})
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4010, shard


# ---- two guilds, one unsharded bot ---------------------------------------------------------


async def test_second_guild_channels_members_roles_and_commands(pointed: FakeDiscord) -> None:
    fake = pointed
    other = fake.add_guild(
        "Second Guild",
        channels=("lobby",),
        members=("dave", "alice"),
        roles={"Mod": P_MANAGE_GUILD},
        member_roles={"alice": ["Mod"]},
        owner="dave",
        upload_limit=50 * 1024 * 1024,
    )
    seen = Seen()
    running = await start(fake, make_bot(fake, seen, extra_guild=other), seen)
    try:
        await fake.wait_until_ready()
        bot = running.bot
        assert {g.id for g in bot.guilds} == {fake.guild_id, other}
        second = bot.get_guild(other)
        assert second is not None and second.name == "Second Guild"
        assert [c.name for c in second.text_channels] == ["lobby"]
        assert {m.name for m in second.members} == {"dave", "alice", bot.user.name}  # type: ignore[union-attr]
        assert second.owner_id == fake.user("dave").id and second.premium_tier == 2
        assert "Mod" in {r.name for r in second.roles}
        first = bot.get_guild(fake.guild_id)
        assert first is not None and "Mod" not in {r.name for r in first.roles}
        assert [c["name"] for c in fake.commands(guild=True, guild_id=other)] == ["moderate"]
        assert fake.commands(guild=True) == []

        alice, dave, bob = fake.user("alice"), fake.user("dave"), fake.user("bob")
        lobby = fake.channel("lobby")
        ix = await alice.slash("moderate", channel=lobby)  # alice is a Mod in the second guild
        assert (await ix.original()).content == "moderating"
        got = seen.interactions[-1]
        assert got.guild_id == other and isinstance(got.user, discord.Member)
        assert got.user.guild_permissions.manage_guild
        assert ix.record.payload["attachment_size_limit"] == 50 * 1024 * 1024
        ix = await dave.slash("where", channel=lobby)
        assert (await ix.original()).content == "Second Guild / shard None"
        with pytest.raises(AssertionError, match="not available"):
            await alice.slash("moderate")  # a guild command of the other guild
        with pytest.raises(AssertionError, match="not a member"):
            await bob.say(lobby, "hi")
        with pytest.raises(AssertionError, match="not a member"):
            await dave.say("general", "hi")

        await dave.say(lobby, "hello second guild")
        await eventually(lambda: seen.messages)
        assert seen.messages[-1].guild is not None and seen.messages[-1].guild.id == other
        assert isinstance(seen.messages[-1].author, discord.Member)

        third = fake.add_guild("Late Guild", members=("erin",))
        await eventually(lambda: seen.joined)
        assert seen.joined[0].id == third and bot.get_guild(third) is not None
    finally:
        await running.stop()


async def test_guild_rest_routes_per_guild(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    other = fake.add_guild("Second Guild", channels=("lobby",), members=("dave",))
    headers = {"Authorization": f"Bot {fake.token}"}
    dave = fake.user("dave")

    async def get(path: str) -> tuple[int, Any]:
        async with session.get(fake.api_base + path, headers=headers) as resp:
            return resp.status, await resp.json()

    async with aiohttp.ClientSession() as session:
        status, guild = await get(f"/guilds/{other}")
        assert status == 200 and guild["name"] == "Second Guild"
        assert guild["approximate_member_count"] == 2
        assert guild["system_channel_id"] == str(fake.channel("lobby"))
        status, channels = await get(f"/guilds/{other}/channels")
        assert [c["name"] for c in channels] == ["lobby"]
        status, roles = await get(f"/guilds/{other}/roles")
        assert {r["name"] for r in roles} == {"@everyone", fake.bot_user.username}
        assert (await get(f"/guilds/{other}/members/{dave.id}"))[0] == 200
        status, err = await get(f"/guilds/{fake.guild_id}/members/{dave.id}")
        assert (status, err["code"]) == (404, 10007)
        status, err = await get("/guilds/42")
        assert (status, err["code"]) == (404, 10004)
        status, err = await get(f"/applications/{fake.application_id}/guilds/42/commands")
        assert (status, err["code"]) == (403, 50001)


# ---- shards --------------------------------------------------------------------------------


async def test_two_shard_processes_each_get_their_own_guilds_and_events(
    pointed: FakeDiscord,
) -> None:
    fake = pointed
    on0 = fake.add_guild("Zero", channels=("zero",), members=("alice", "dave"), on_shard=(0, 2))
    on1 = fake.add_guild("One", channels=("one",), members=("alice", "erin"), on_shard=(1, 2))
    expected = {s: {g for g in fake.guild_ids if (g >> 22) % 2 == s} for s in (0, 1)}
    assert on0 in expected[0] and on1 in expected[1]

    seen0, seen1 = Seen(), Seen()
    shard0 = await start(fake, make_bot(fake, seen0, shard=(0, 2)), seen0)
    shard1 = await start(fake, make_bot(fake, seen1, shard=(1, 2), sync=False), seen1)
    try:
        await fake.wait_until_ready(shards=2)
        assert len(fake.gateway.live_sessions()) == 2
        assert {g.id for g in shard0.bot.guilds} == expected[0]
        assert {g.id for g in shard1.bot.guilds} == expected[1]
        ready = {
            s.shard_id: json.loads(s.buffer[0][1])["d"] for s in fake.gateway.live_sessions()
        }
        assert {int(g["id"]) for g in ready[1]["guilds"]} == expected[1]
        assert ready[0]["shard"] == [0, 2] and ready[1]["shard"] == [1, 2]

        alice = fake.user("alice")
        await alice.say(fake.channel("one"), "for shard one")
        await alice.say(fake.channel("zero"), "for shard zero")
        await alice.dm("a DM")
        await eventually(lambda: len(seen0.messages) == 2 and len(seen1.messages) == 1)
        assert [m.content for m in seen1.messages] == ["for shard one"]
        assert sorted(m.content for m in seen0.messages) == ["a DM", "for shard zero"]

        ix = await alice.slash("where", channel=fake.channel("one"))
        assert (await ix.original()).content == "One / shard 1"
        ix = await alice.slash("where", channel=alice.dm_channel)  # DM interactions: shard 0
        assert (await ix.original()).content == "DM / shard 0"
        ix = await fake.user("dave").slash("where", channel=fake.channel("zero"))
        assert (await ix.original()).content == "Zero / shard 0"
        assert [i.guild_id for i in seen1.interactions] == [on1]
        assert [i.guild_id for i in seen0.interactions] == [None, on0]

        # One shard drops and RESUMEs; the other keeps its session.
        resumes = fake.resumes
        await fake.disconnect_bot(shard_id=1)
        await fake.user("erin").say(fake.channel("one"), "while away")
        await eventually(lambda: fake.resumes == resumes + 1)
        await eventually(lambda: [m.content for m in seen1.messages][-1:] == ["while away"])
        assert len(seen0.messages) == 2 and fake.identifies == 2
    finally:
        await shard1.stop()
        await shard0.stop()


async def test_auto_sharded_bot_uses_the_recommended_shard_count(pointed: FakeDiscord) -> None:
    fake = pointed
    fake.recommended_shards = 2
    fake.add_guild("Zero", on_shard=(0, 2), members=("alice",))
    fake.add_guild("One", on_shard=(1, 2), members=("alice",))
    intents = discord.Intents.default()
    bot = commands.AutoShardedBot(command_prefix="!", intents=intents, guild_ready_timeout=0.1)

    async def no_wait(shard_id: int | None, *, initial: bool = False) -> None:
        return None  # discord.py waits 5 s between IDENTIFYs by default

    bot.before_identify_hook = no_wait  # type: ignore[method-assign]
    task = asyncio.create_task(bot.start(fake.token))
    try:
        await fake.wait_until_ready(shards=2, commands=False)
        await bot.wait_until_ready()
        assert bot.shard_count == 2 and set(bot.shards) == {0, 1}
        assert {g.id for g in bot.guilds} == set(fake.guild_ids)
        for guild in bot.guilds:
            assert guild.shard_id == (guild.id >> 22) % 2
    finally:
        await bot.close()
        await asyncio.wait_for(task, 5)
