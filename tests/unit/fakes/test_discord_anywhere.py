"""Places the bot is not in, on the fake Discord, against the real discord.py and raw HTTP:
user installs (the app installed to a user's account), group DMs (type 3, context 2), guilds
without the bot (context 0 through a user install), private threads (type 12, members only),
and what Discord refuses there: 50001 where the bot is not a member, 50013 without the
permission, the 5-followup limit of user-installed interactions (40094)."""

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
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import (
    BOT_ROLE_PERMS,
    CH_GROUP_DM,
    CH_PRIVATE_THREAD,
    P_MANAGE_THREADS,
    P_SEND_MESSAGES,
)

__all__ = ["fake_discord"]

EVERYWHERE = app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True)
ANY_INSTALL = app_commands.AppInstallationType(guild=True, user=True)


@dataclass
class Seen:
    messages: list[discord.Message] = field(default_factory=list)
    interactions: list[discord.Interaction] = field(default_factory=list)
    errors: dict[str, discord.HTTPException] = field(default_factory=dict)
    threads: list[discord.Thread] = field(default_factory=list)


class Again(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Again", custom_id="anywhere:again")
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await interaction.response.send_message("again")


def make_bot(fake: FakeDiscord, seen: Seen) -> commands.Bot:
    intents = discord.Intents.default()
    intents.message_content = True
    bot = commands.Bot(
        command_prefix="!",
        intents=intents,
        guild_ready_timeout=0.1,
        allowed_contexts=EVERYWHERE,
        allowed_installs=ANY_INSTALL,
    )
    tree = bot.tree

    @tree.command(description="Say hello")
    async def hello(interaction: discord.Interaction) -> None:
        seen.interactions.append(interaction)
        await interaction.response.send_message("hello", view=Again())

    @tree.command(description="Post in the channel itself")
    async def post(interaction: discord.Interaction) -> None:
        seen.interactions.append(interaction)
        await interaction.response.defer(thinking=True)
        try:
            await bot.http.send_message(interaction.channel_id or 0, params=_text("directly"))
        except discord.HTTPException as exc:
            seen.errors["post"] = exc
        await interaction.followup.send("done")

    @tree.command(description="Many followups")
    async def many(interaction: discord.Interaction, count: int) -> None:
        await interaction.response.defer(thinking=True)
        for n in range(count):
            try:
                await interaction.followup.send(f"followup {n + 1}")
            except discord.HTTPException as exc:
                seen.errors["many"] = exc
                return

    @tree.command(description="Servers only, guild install only")
    @app_commands.allowed_installs(guilds=True, users=False)
    @app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
    async def admin(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("admin")

    @tree.command(description="Open a private thread here")
    async def secret(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True, ephemeral=True)
        channel = interaction.channel
        assert isinstance(channel, discord.TextChannel)
        try:
            thread = await channel.create_thread(
                name="just us", type=discord.ChannelType.private_thread, invitable=False
            )
            await thread.add_user(interaction.user)
            seen.threads.append(thread)
            await thread.send("welcome")
        except discord.HTTPException as exc:
            seen.errors["secret"] = exc
        await interaction.followup.send("ok", ephemeral=True)

    @bot.event
    async def on_message(message: discord.Message) -> None:
        if not message.author.bot:
            seen.messages.append(message)

    async def setup_hook() -> None:
        bot.add_view(Again())
        await tree.sync()

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


def _text(content: str) -> Any:
    return discord.http.handle_message_parameters(content=content)


@dataclass
class Running:
    fake: FakeDiscord
    bot: commands.Bot
    seen: Seen


@pytest_asyncio.fixture
async def env(fake_discord: FakeDiscord) -> AsyncIterator[Running]:
    seen = Seen()
    bot = make_bot(fake_discord, seen)
    with discord_py_pointed_at(fake_discord):
        task = asyncio.create_task(bot.start(fake_discord.token))
        await fake_discord.wait_until_ready(timeout=10)
        await bot.wait_until_ready()
        try:
            yield Running(fake_discord, bot, seen)
        finally:
            await bot.close()
            await asyncio.wait_for(task, 5)
    assert fake_discord.internal_errors == [] and fake_discord.unhandled == []
    assert fake_discord.schema_violations == []


def gateway_events(fake: FakeDiscord, name: str) -> list[dict[str, Any]]:
    out = []
    for session in fake.gateway.live_sessions():
        for _, frame in session.buffer:
            event = json.loads(frame)
            if event["t"] == name:
                out.append(event["d"])
    return out


async def eventually(condition: Any, timeout: float = 5) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


class Rest:
    def __init__(self, fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
        self.fake = fake
        self.session = session

    async def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bot {self.fake.token}"}
        async with self.session.request(
            method, self.fake.api_base + path, json=body, headers=headers
        ) as resp:
            return resp.status, (await resp.json() if resp.status != 204 else None)


@pytest_asyncio.fixture
async def rest(fake_discord: FakeDiscord) -> AsyncIterator[Rest]:
    async with aiohttp.ClientSession() as session:
        yield Rest(fake_discord, session)


# ---- REST: where the bot is not --------------------------------------------------------------


async def test_the_bot_has_no_access_to_a_group_dm(rest: Rest) -> None:
    fake = rest.fake
    group = fake.add_group_dm("alice", "bob", "carol", name="pals")
    said = await fake.user("bob").say(group, "hi all")
    assert [m.id for m in fake.messages_in(group)] == [said.id]
    for method, path, body in (
        ("GET", f"/channels/{group}", None),
        ("GET", f"/channels/{group}/messages", None),
        ("POST", f"/channels/{group}/messages", {"content": "let me in"}),
        ("PATCH", f"/channels/{group}/messages/{said.id}", {"content": "x"}),
        ("POST", f"/channels/{group}/typing", None),
    ):
        status, answer = await rest(method, path, body)
        assert (status, answer) == (403, {"message": "Missing Access", "code": 50001}), path
    with pytest.raises(AssertionError, match="not in that DM"):
        await fake.user("admin").say(group, "me too")


async def test_a_guild_without_the_bot(rest: Rest) -> None:
    fake = rest.fake
    gid = fake.add_guild("Elsewhere", channels=("lounge",), members=("alice", "dave"), bot=False)
    assert gid not in fake.guild_ids and fake.state.guild(gid).bot_member is False
    lounge = fake.channel("lounge")
    await fake.user("dave").say(lounge, "hello")
    status, body = await rest("GET", f"/guilds/{gid}")
    assert (status, body["code"]) == (403, 50001)
    status, body = await rest("POST", f"/channels/{lounge}/messages", {"content": "hi"})
    assert (status, body["code"]) == (403, 50001)
    status, body = await rest("GET", f"/channels/{lounge}/messages")
    assert (status, body["code"]) == (403, 50001)


async def test_private_threads_are_for_members(rest: Rest) -> None:
    fake = rest.fake
    fake.set_bot_permissions(BOT_ROLE_PERMS & ~P_MANAGE_THREADS)
    hidden = fake.add_private_thread("general", "planning", owner="alice", members=("bob",))
    assert fake.state.channels[hidden].type == CH_PRIVATE_THREAD
    status, body = await rest("POST", f"/channels/{hidden}/messages", {"content": "hi"})
    assert (status, body["code"]) == (403, 50001)
    with pytest.raises(AssertionError, match="private thread"):
        await fake.user("carol").say(hidden, "can I join?")
    fake.add_thread_member(hidden, "Nano Banana")
    status, msg = await rest("POST", f"/channels/{hidden}/messages", {"content": "hi"})
    assert status == 200 and msg["channel_id"] == str(hidden)
    # Manage Threads sees every private thread
    fake.set_bot_permissions(BOT_ROLE_PERMS)
    other = fake.add_private_thread("general", "other", owner="bob")
    status, _ = await rest("GET", f"/channels/{other}")
    assert status == 200


async def test_private_thread_creation_and_members(rest: Rest) -> None:
    fake = rest.fake
    general = fake.channel("general")
    status, thread = await rest(
        "POST", f"/channels/{general}/threads", {"name": "secret", "type": 12, "invitable": False}
    )
    assert status == 201 and thread["type"] == 12
    assert thread["thread_metadata"]["invitable"] is False
    tid = int(thread["id"])
    alice = fake.user("alice")
    assert await rest("PUT", f"/channels/{tid}/thread-members/{alice.id}") == (204, None)
    assert alice.id in fake.state.channels[tid].member_ids
    status, body = await rest("PUT", f"/channels/{tid}/thread-members/12345")
    assert (status, body["code"]) == (404, 10007)
    fake.set_private_threads_allowed(False)
    status, body = await rest("POST", f"/channels/{general}/threads", {"name": "no", "type": 12})
    assert (status, body["code"]) == (403, 50013)
    status, _ = await rest("POST", f"/channels/{general}/threads", {"name": "open", "type": 11})
    assert status == 201  # public threads are another permission


async def test_posting_without_send_messages_is_50013(rest: Rest) -> None:
    fake = rest.fake
    general = fake.channel("general")
    fake.set_bot_permissions(BOT_ROLE_PERMS)
    everyone = fake.state.roles[fake.guild_id]
    everyone.permissions &= ~P_SEND_MESSAGES
    fake.set_bot_permissions(BOT_ROLE_PERMS & ~P_SEND_MESSAGES)
    status, body = await rest("POST", f"/channels/{general}/messages", {"content": "hi"})
    assert (status, body["code"]) == (403, 50013)


# ---- with discord.py: user installs ----------------------------------------------------------


async def test_commands_offered_by_install_and_context(env: Running) -> None:
    fake = env.fake
    alice = fake.user("alice")
    group = fake.add_group_dm("alice", "bob")
    with pytest.raises(AssertionError, match="install_app"):
        await alice.slash("hello", channel=group)  # not installed to her account
    fake.install_app(alice)
    await (await alice.slash("hello", channel=group)).wait_ack()
    with pytest.raises(AssertionError, match="not available"):
        await alice.slash("admin", channel=group)  # guild install, servers only
    with pytest.raises(AssertionError, match="install_app"):
        await fake.user("bob").slash("hello", channel=group)  # bob has not installed it
    definition = next(c for c in fake.commands(guild=False) if c["name"] == "hello")
    assert definition["contexts"] == [0, 1, 2] and definition["integration_types"] == [0, 1]


async def test_a_slash_command_in_a_group_dm(env: Running) -> None:
    fake, seen = env.fake, env.seen
    alice = fake.user("alice")
    fake.install_app(alice)
    group = fake.add_group_dm("alice", "bob", name="pals")
    ix = await alice.slash("hello", channel=group)
    msg = await ix.original()
    assert msg.channel_id == group and msg.content == "hello" and msg.guild_id is None
    assert msg.interaction_metadata is not None
    assert msg.interaction_metadata["authorizing_integration_owners"] == {"1": str(alice.id)}
    assert [m.id for m in fake.messages_in(group)] == [msg.id]  # the group sees the answer
    assert not [e for e in gateway_events(fake, "MESSAGE_CREATE") if e["channel_id"] == str(group)]

    payload = ix.record.payload
    assert payload["context"] == 2 and "guild_id" not in payload and "member" not in payload
    assert payload["channel"]["type"] == CH_GROUP_DM and payload["channel"]["name"] == "pals"
    assert payload["authorizing_integration_owners"] == {"1": str(alice.id)}
    perms = discord.Permissions(int(payload["app_permissions"]))
    assert perms.attach_files and perms.embed_links and not perms.send_messages

    got = seen.interactions[-1]
    assert isinstance(got.channel, discord.GroupChannel) and got.context.private_channel
    assert got.guild is None and got.is_user_integration()
    assert env.bot.get_channel(group) is None

    # Buttons on the answer: context 2, authorized by alice's install; anyone there may click.
    click = await fake.user("bob").click(msg, "Again")
    await click.wait_ack()
    assert click.record.payload["context"] == 2
    assert click.record.payload["authorizing_integration_owners"] == {"1": str(alice.id)}

    # People talking in the group DM never reach the bot.
    await fake.user("bob").reply(msg, "nice")
    await asyncio.sleep(0.1)
    assert seen.messages == []


async def test_the_bot_cannot_post_where_it_only_answers_interactions(env: Running) -> None:
    fake, seen = env.fake, env.seen
    alice = fake.user("alice")
    fake.install_app(alice)
    group = fake.add_group_dm("alice", "bob")
    await (await alice.slash("post", channel=group)).wait_followups(1)
    err = seen.errors.pop("post")
    assert isinstance(err, discord.Forbidden) and err.code == 50001

    gid = fake.add_guild("Elsewhere", channels=("lounge",), members=("alice", "dave"), bot=False)
    lounge = fake.channel("lounge", guild=gid)
    ix = await alice.slash("post", channel=lounge)
    done = await ix.wait_followups(1)
    assert done[0].content == "done" and done[0].channel_id == lounge
    assert seen.errors["post"].code == 50001
    payload = ix.record.payload
    assert payload["context"] == 0 and payload["guild_id"] == str(gid)
    assert payload["authorizing_integration_owners"] == {"1": str(alice.id)}
    got = seen.interactions[-1]
    assert got.guild_id == gid and env.bot.get_guild(gid) is None and got.is_user_integration()
    # with neither the guild install nor hers, nothing is offered there
    with pytest.raises(AssertionError, match=r"not available|has not synced"):
        await fake.user("dave").slash("hello", channel=lounge)


async def test_user_install_in_a_guild_with_the_bot_authorizes_both(env: Running) -> None:
    fake = env.fake
    alice = fake.user("alice")
    fake.install_app(alice)
    ix = await alice.slash("hello")
    await ix.wait_ack()
    assert ix.record.payload["authorizing_integration_owners"] == {
        "0": str(fake.guild_id),
        "1": str(alice.id),
    }


async def test_user_installed_interactions_get_five_followups(env: Running) -> None:
    fake, seen = env.fake, env.seen
    alice = fake.user("alice")
    fake.install_app(alice)
    group = fake.add_group_dm("alice", "bob")
    ix = await alice.slash("many", count=7, channel=group)
    await eventually(lambda: "many" in seen.errors)
    err = seen.errors.pop("many")
    assert (err.status, err.code) == (400, 40094)
    assert len(ix.followups) == 5
    # a guild install has no such limit
    ix = await alice.slash("many", count=7)
    await ix.wait_followups(7)
    assert "many" not in seen.errors


# ---- with discord.py: private threads --------------------------------------------------------


async def test_a_private_thread_the_bot_is_not_in(env: Running) -> None:
    fake, seen = env.fake, env.seen
    fake.set_bot_permissions(BOT_ROLE_PERMS & ~P_MANAGE_THREADS)
    await asyncio.sleep(0.1)  # GUILD_ROLE_UPDATE reaches the bot
    hidden = fake.add_private_thread("general", "planning", owner="alice", members=("bob",))
    alice = fake.user("alice")
    await alice.say(hidden, "psst")
    ix = await alice.slash("post", channel=hidden)
    done = await ix.wait_followups(1)
    assert done[0].channel_id == hidden  # the interaction answers where the bot cannot post
    assert "post" in seen.errors, fake.traffic_dump(30)
    assert seen.errors["post"].code == 50001
    perms = discord.Permissions(int(ix.record.payload["app_permissions"]))
    assert not perms.view_channel and not perms.send_messages_in_threads
    assert seen.messages == []
    assert not [e for e in gateway_events(fake, "THREAD_CREATE") if e["id"] == str(hidden)]

    fake.add_thread_member(hidden, "Nano Banana")  # someone adds the bot
    await alice.say(hidden, "now you see me")
    await eventually(lambda: [m.content for m in seen.messages] == ["now you see me"])
    assert isinstance(seen.messages[0].channel, discord.Thread)


async def test_the_bot_opens_a_private_thread(env: Running) -> None:
    fake, seen = env.fake, env.seen
    alice = fake.user("alice")
    await (await alice.slash("secret")).wait_followups(1)
    [thread] = seen.threads
    record = fake.state.channels[thread.id]
    assert record.type == CH_PRIVATE_THREAD and record.member_ids == {fake.bot_user.id, alice.id}
    assert [m.content for m in fake.messages_in(thread.id)] == ["welcome"]
    await alice.say(thread.id, "thanks")
    await eventually(lambda: [m.content for m in seen.messages] == ["thanks"])
    with pytest.raises(AssertionError, match="private thread"):
        await fake.user("bob").say(thread.id, "let me in")

    fake.set_private_threads_allowed(False)
    await (await alice.slash("secret")).wait_followups(1)
    assert seen.errors["secret"].code == 50013
