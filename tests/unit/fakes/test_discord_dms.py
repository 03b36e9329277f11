"""DMs on the fake Discord, against the real discord.py and raw HTTP: opening a DM channel,
messages in it (no guild_id), closed DMs (403 50007), slash commands and buttons in a DM with
Discord's bot-DM interaction shape, and what Discord refuses there."""

from __future__ import annotations

import asyncio
import io
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

from tests.fakes.discord_driver import Upload
from tests.fakes.discord_fixtures import discord_py_pointed_at, fake_discord
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import CH_DM

__all__ = ["fake_discord"]

MiB = 1024 * 1024


@dataclass
class Seen:
    messages: list[discord.Message] = field(default_factory=list)
    interactions: list[discord.Interaction] = field(default_factory=list)
    errors: dict[str, discord.HTTPException] = field(default_factory=dict)


class Hello(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Again", custom_id="dm:again")
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await interaction.response.send_message(f"again in {type(interaction.channel).__name__}")


def make_bot(
    fake: FakeDiscord, seen: Seen, *, dm_intent: bool = True, message_content: bool = True
) -> commands.Bot:
    intents = discord.Intents.default()
    intents.message_content = message_content
    intents.dm_messages = dm_intent
    bot = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.1)
    tree = bot.tree

    @tree.command(description="Say hello")
    async def hello(interaction: discord.Interaction) -> None:
        seen.interactions.append(interaction)
        await interaction.response.send_message("hello", view=Hello())

    @tree.command(description="Only in servers")
    @app_commands.guild_only()
    async def serveronly(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("server")

    @tree.command(description="Admins only (in servers)")
    @app_commands.default_permissions(manage_guild=True)
    async def admin(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("admin")

    @tree.command(description="A big file")
    async def big(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        try:
            await interaction.followup.send(
                file=discord.File(io.BytesIO(b"\0" * (10 * MiB + 1)), "big.bin")
            )
        except discord.HTTPException as exc:
            seen.errors["big"] = exc
            await interaction.followup.send(f"too big ({exc.code})")

    @tree.command(description="Guild command", guild=discord.Object(fake.guild_id))
    async def local(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("local")

    @bot.event
    async def on_message(message: discord.Message) -> None:
        if message.author.bot:
            return
        seen.messages.append(message)
        if message.content == "ping":
            await message.reply("pong")
        elif message.content == "dm me":
            try:
                await message.author.send("a DM for you")
            except discord.HTTPException as exc:
                seen.errors["dm"] = exc
        elif message.content == "thread please":
            try:
                # discord.py refuses this itself; ask Discord directly
                await bot.http.start_thread_with_message(
                    message.channel.id, message.id, name="nope", auto_archive_duration=1440
                )
            except discord.HTTPException as exc:
                seen.errors["thread"] = exc
        elif message.content == "delete this":
            try:
                await message.delete()
            except discord.HTTPException as exc:
                seen.errors["delete"] = exc

    async def setup_hook() -> None:
        bot.add_view(Hello())
        await tree.sync()
        await tree.sync(guild=discord.Object(fake.guild_id))

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


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
    """The `d` of every `name` event the fake sent to a live session."""
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


# ---- REST ----------------------------------------------------------------------------------


async def test_open_dm_returns_one_dm_channel_per_user(rest: Rest) -> None:
    fake = rest.fake
    alice = fake.user("alice")
    status, first = await rest("POST", "/users/@me/channels", {"recipient_id": str(alice.id)})
    assert status == 200
    assert first["type"] == CH_DM and first["flags"] == 0 and "guild_id" not in first
    assert [u["id"] for u in first["recipients"]] == [str(alice.id)]
    status, again = await rest("POST", "/users/@me/channels", {"recipient_id": alice.id})
    assert status == 200 and again["id"] == first["id"] == str(alice.dm_channel)
    status, bob_dm = await rest(
        "POST", "/users/@me/channels", {"recipient_id": str(fake.user("bob").id)}
    )
    assert bob_dm["id"] != first["id"]
    status, channel = await rest("GET", f"/channels/{first['id']}")
    assert status == 200 and channel == {**first, "last_message_id": None}
    assert fake.schema_violations == []


async def test_open_dm_refusals(rest: Rest) -> None:
    fake = rest.fake
    status, body = await rest("POST", "/users/@me/channels", {"recipient_id": "12345"})
    assert (status, body["code"], body["message"]) == (400, 50033, "Invalid Recipient(s)")
    status, body = await rest("POST", "/users/@me/channels", {"recipient_id": fake.bot_user.id})
    assert (status, body["code"]) == (400, 50007)
    status, body = await rest("POST", "/users/@me/channels", {})
    assert (status, body["code"]) == (400, 50035)
    assert "recipient_id" in body["errors"]


async def test_messages_in_a_dm_and_closed_dms(rest: Rest) -> None:
    fake = rest.fake
    dm = fake.dm_channel("carol")
    status, msg = await rest("POST", f"/channels/{dm}/messages", {"content": "hi carol"})
    assert status == 200 and msg["channel_id"] == str(dm) and "guild_id" not in msg
    status, edited = await rest("PATCH", f"/channels/{dm}/messages/{msg['id']}", {"content": "hey"})
    assert status == 200 and edited["content"] == "hey"
    status, listed = await rest("GET", f"/channels/{dm}/messages")
    assert [m["id"] for m in listed] == [msg["id"]]
    assert await rest("DELETE", f"/channels/{dm}/messages/{msg['id']}") == (204, None)
    assert fake.messages_in(dm) == []

    fake.close_dms("carol")
    status, body = await rest("POST", f"/channels/{dm}/messages", {"content": "still there?"})
    assert status == 403
    assert body == {"message": "Cannot send messages to this user", "code": 50007}
    # Opening the DM still works; only posting in it is refused.
    status, _ = await rest(
        "POST", "/users/@me/channels", {"recipient_id": str(fake.user("carol").id)}
    )
    assert status == 200
    fake.open_dms("carol")
    status, _ = await rest("POST", f"/channels/{dm}/messages", {"content": "welcome back"})
    assert status == 200


async def test_what_discord_refuses_in_a_dm(rest: Rest) -> None:
    fake = rest.fake
    alice = fake.user("alice")
    mine = await alice.dm("my message")
    dm = alice.dm_channel
    status, body = await rest("DELETE", f"/channels/{dm}/messages/{mine.id}")
    assert (status, body["code"]) == (403, 50003)
    status, body = await rest(
        "POST", f"/channels/{dm}/messages/{mine.id}/threads", {"name": "chain"}
    )
    assert (status, body["code"]) == (403, 50003)
    status, body = await rest("PATCH", f"/channels/{dm}", {"name": "x"})
    assert (status, body["code"]) == (403, 50003)
    status, body = await rest("PATCH", f"/channels/{dm}/messages/{mine.id}", {"content": "x"})
    assert (status, body["code"]) == (403, 50005)


# ---- with discord.py -----------------------------------------------------------------------


async def test_user_dm_reaches_the_bot_without_guild_and_reply_stays_in_dm(env: Running) -> None:
    fake, seen = env.fake, env.seen
    alice = fake.user("alice")
    sent = await alice.dm("ping", files=[Upload("a.txt", b"abc")])
    pong = await fake.wait_for_message(channel=alice.dm_channel, timeout=5)
    assert pong.content == "pong" and pong.guild_id is None
    assert pong.reference_id == sent.id and "guild_id" not in (pong.message_reference or {})
    got = seen.messages[-1]
    assert got.guild is None and isinstance(got.channel, discord.DMChannel)
    assert got.content == "ping" and [a.filename for a in got.attachments] == ["a.txt"]
    created = [e for e in gateway_events(fake, "MESSAGE_CREATE") if e["id"] == str(sent.id)]
    assert created and "guild_id" not in created[0] and "member" not in created[0]

    reply = await alice.reply(pong, "ping")
    assert reply.message_reference is not None and "guild_id" not in reply.message_reference
    await fake.wait_for_message(channel=alice.dm_channel, predicate=lambda m: m.id > pong.id)


async def test_bot_dms_a_user_and_closed_dms_give_50007(env: Running) -> None:
    fake, seen = env.fake, env.seen
    bob = fake.user("bob")
    await bob.say("general", "dm me")
    dm_msg = await fake.wait_for_message(channel=bob.dm_channel, timeout=5)
    assert dm_msg.content == "a DM for you" and dm_msg.guild_id is None
    assert ("POST", "/users/@me/channels") in [(r.method, r.path) for r in fake.requests]

    fake.close_dms(bob)
    await bob.say("general", "dm me")
    await eventually(lambda: "dm" in seen.errors)
    err = seen.errors["dm"]
    assert isinstance(err, discord.Forbidden) and err.code == 50007
    assert err.text == "Cannot send messages to this user"


async def test_bot_cannot_thread_or_delete_in_a_dm(env: Running) -> None:
    fake, seen = env.fake, env.seen
    carol = fake.user("carol")
    await carol.dm("thread please")
    await carol.dm("delete this")
    await eventually(lambda: {"thread", "delete"} <= set(seen.errors))
    assert seen.errors["thread"].code == 50003 and seen.errors["delete"].code == 50003


async def test_slash_command_in_a_dm_has_discords_bot_dm_shape(env: Running) -> None:
    fake, seen = env.fake, env.seen
    fake.upload_limit = 50 * MiB  # a boosted guild does not raise the limit in DMs
    alice = fake.user("alice")
    ix = await alice.slash("hello", channel=alice.dm_channel)
    msg = await ix.original()
    assert msg.channel_id == alice.dm_channel and msg.guild_id is None
    assert msg.interaction_metadata is not None
    assert msg.interaction_metadata["authorizing_integration_owners"] == {"0": "0"}

    payload = ix.record.payload
    assert payload["context"] == 1
    assert "guild_id" not in payload and "guild" not in payload and "member" not in payload
    assert payload["user"]["id"] == str(alice.id)
    assert payload["channel"]["type"] == CH_DM and payload["channel_id"] == str(alice.dm_channel)
    assert payload["authorizing_integration_owners"] == {"0": "0"}
    assert payload["attachment_size_limit"] == 10 * MiB
    perms = discord.Permissions(int(payload["app_permissions"]))
    assert perms.send_messages and perms.attach_files and perms.embed_links
    assert perms.external_emojis and perms.mention_everyone and not perms.manage_messages

    got = seen.interactions[-1]
    assert got.guild is None and got.guild_id is None
    assert type(got.user) is discord.User
    assert isinstance(got.channel, discord.DMChannel)
    assert got.context.dm_channel and not got.context.guild
    assert got.filesize_limit == 10 * MiB

    again = await alice.click(msg, "Again")
    answer = await again.original()
    assert answer.content == "again in DMChannel" and again.record.payload["context"] == 1

    ix = await alice.slash("big", channel=alice.dm_channel)
    await ix.wait_followups(1)
    assert ix.followups[-1].content == "too big (40005)"

    ix = await alice.slash("admin", channel=alice.dm_channel)  # member permissions: guild only
    assert (await ix.original()).content == "admin"


async def test_driver_refuses_in_a_dm_what_the_client_would(env: Running) -> None:
    fake = env.fake
    alice, bob = fake.user("alice"), fake.user("bob")
    with pytest.raises(AssertionError, match="not available in the DM"):
        await alice.slash("serveronly", channel=alice.dm_channel)
    with pytest.raises(AssertionError, match="not available in the DM"):
        await alice.slash("local", channel=alice.dm_channel)
    with pytest.raises(AssertionError, match="not in that DM"):
        await alice.say(bob.dm_channel, "hi")
    with pytest.raises(AssertionError, match="not in that DM"):
        await alice.slash("hello", channel=bob.dm_channel)
    # In the guild both are there as usual.
    assert (await (await alice.slash("serveronly")).original()).content == "server"
    assert (await (await alice.slash("local")).original()).content == "local"


@pytest.mark.parametrize("dm_intent", [False, True])
async def test_dm_events_need_direct_messages_but_not_message_content(
    fake_discord: FakeDiscord, dm_intent: bool
) -> None:
    seen = Seen()
    bot = make_bot(fake_discord, seen, dm_intent=dm_intent, message_content=False)
    with discord_py_pointed_at(fake_discord):
        task = asyncio.create_task(bot.start(fake_discord.token))
        await fake_discord.wait_until_ready(timeout=10)
        try:
            alice = fake_discord.user("alice")
            await alice.dm("in a DM")
            await alice.say("general", "in a guild")
            await eventually(lambda: any(m.guild is not None for m in seen.messages))
            await asyncio.sleep(0.05)
            got = sorted((m.guild is None, m.content) for m in seen.messages)
            # Guild text is blanked without the intent; a DM's never is.
            assert got == ([(False, ""), (True, "in a DM")] if dm_intent else [(False, "")])
        finally:
            await bot.close()
            await asyncio.wait_for(task, 5)
