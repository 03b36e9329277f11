"""The fake Discord against the real discord.py: a small bot written here logs in, syncs
commands and is driven by fake users, while the fake enforces Discord's rules."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import discord
import pytest
import pytest_asyncio
from discord import app_commands
from discord.ext import commands
from PIL import Image

from tests.fakes import discord_limits as limits
from tests.fakes import discord_schema
from tests.fakes.discord_driver import Upload
from tests.fakes.discord_fixtures import discord_py_pointed_at, fake_discord
from tests.fakes.discord_server import FakeDiscord

__all__ = ["fake_discord"]  # the fixture, imported for pytest


def _png(width: int = 8, height: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()  # built at import time, outside any event loop
MiB = 1024 * 1024


class Reroll(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"reroll:(?P<gen>\d+)"):
    def __init__(self, gen: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Reroll", style=discord.ButtonStyle.primary, custom_id=f"reroll:{gen}"
            )
        )
        self.gen = gen

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Reroll:
        return cls(int(match["gen"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"rerolled {self.gen}")


class Upscale(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"upscale:(?P<gen>\d+)"):
    def __init__(self, gen: int) -> None:
        super().__init__(discord.ui.Button(label="Upscale", custom_id=f"upscale:{gen}"))

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Upscale:
        return cls(int(match["gen"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()  # type 6: deferred update of the clicked message
        await interaction.edit_original_response(content="upscaled")


class Cancel(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"cancel:(?P<gen>\d+)"):
    def __init__(self, gen: int) -> None:
        super().__init__(discord.ui.Button(label="Cancel", custom_id=f"cancel:{gen}"))

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Cancel:
        return cls(int(match["gen"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(content="cancelled", view=None)  # type 7


class Refine(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"refine:(?P<gen>\d+)"):
    def __init__(self, gen: int) -> None:
        super().__init__(discord.ui.Button(label="Refine", custom_id=f"refine:{gen}"))

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Refine:
        return cls(int(match["gen"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(RefineModal())


class StylePick(discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"style:(?P<gen>\d+)"):
    def __init__(self, gen: int) -> None:
        options = [discord.SelectOption(label=s, value=s) for s in ("photo", "anime")]
        super().__init__(discord.ui.Select(custom_id=f"style:{gen}", options=options, row=1))

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> StylePick:
        return cls(int(match["gen"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"style {self.item.values}", ephemeral=True)


class RefineModal(discord.ui.Modal, title="Refine"):
    changes: discord.ui.Label[Any] = discord.ui.Label(
        text="Changes",
        component=discord.ui.TextInput(custom_id="changes", style=discord.TextStyle.paragraph),
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        value = self.changes.component.value  # type: ignore[attr-defined]
        origin = f" on {interaction.message.id}" if interaction.message else ""
        await interaction.response.send_message(f"got: {value}{origin}")


@dataclass
class Seen:
    """What the small bot observed (read by the tests)."""

    messages: list[discord.Message] = field(default_factory=list)
    errors: dict[str, discord.HTTPException] = field(default_factory=dict)
    interactions: list[discord.Interaction] = field(default_factory=list)
    release_late: asyncio.Event = field(default_factory=asyncio.Event)
    threads: list[discord.Thread] = field(default_factory=list)


def make_bot(fake: FakeDiscord, seen: Seen, *, message_content: bool = True) -> commands.Bot:
    intents = discord.Intents.default()
    intents.message_content = message_content
    intents.members = True
    bot = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.1)
    tree = bot.tree
    guild = discord.Object(fake.guild_id)

    @tree.command(description="Render an image")
    async def render(
        interaction: discord.Interaction,
        prompt: str,
        reference: discord.Attachment | None = None,
        size: Literal["1K", "2K", "4K"] = "1K",
    ) -> None:
        seen.interactions.append(interaction)
        await interaction.response.defer(thinking=True)
        nbytes = len(await reference.read()) if reference else 0
        view = discord.ui.View(timeout=None)
        for item in (Reroll(7), Upscale(7), Cancel(7), Refine(7), StylePick(7)):
            view.add_item(item)
        await interaction.followup.send(
            f"rendered {prompt} ({nbytes} bytes)",
            file=discord.File(io.BytesIO(PNG), "out.png"),
            view=view,
        )

    @tree.command(description="Show progress, then the result")
    async def progress(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content="Queued — 1st in line")
        await asyncio.sleep(0.01)
        await interaction.edit_original_response(
            content="done", attachments=[discord.File(io.BytesIO(PNG), "p.png")]
        )

    @tree.command(description="Usage (admins)")
    @app_commands.default_permissions(manage_guild=True)
    async def usage(
        interaction: discord.Interaction, days: app_commands.Range[int, 1, 31] = 1
    ) -> None:
        await interaction.response.send_message(f"usage for {days} day(s)", ephemeral=True)

    @tree.command(description="Open a modal")
    async def ask(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(RefineModal())

    async def pick_names(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        names = ["alpha", "albert", "bravo"]
        return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]

    @tree.command(description="Pick a name")
    @app_commands.autocomplete(name=pick_names)
    async def pick(interaction: discord.Interaction, name: str, prompt: str = "") -> None:
        await interaction.response.send_message(f"picked {name}")

    @tree.command(description="Upload too much")
    async def big(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        try:
            await interaction.followup.send(
                file=discord.File(io.BytesIO(b"\0" * (10 * MiB + 1)), "huge.png")
            )
        except discord.HTTPException as exc:
            seen.errors["big"] = exc
            await interaction.followup.send(f"too big ({exc.code})")

    @tree.command(description="Say too much")
    async def long(interaction: discord.Interaction) -> None:
        try:
            await interaction.response.send_message("x" * 2001)
        except discord.HTTPException as exc:
            seen.errors["long"] = exc
            await interaction.response.send_message("shortened")

    @tree.command(description="Answer twice")
    async def twice(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("first")
        interaction.response._response_type = None  # bypass discord.py's own guard: ask Discord
        try:
            await interaction.response.defer()
        except discord.HTTPException as exc:
            seen.errors["twice"] = exc

    @tree.command(description="Answer late")
    async def late(interaction: discord.Interaction) -> None:
        await seen.release_late.wait()
        try:
            await interaction.response.send_message("too late")
        except discord.HTTPException as exc:
            seen.errors["late"] = exc

    @tree.context_menu(name="Edit image")
    async def edit_image(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_message(
            f"editing {message.id} with {len(message.attachments)} attachment(s)", ephemeral=True
        )

    @tree.context_menu(name="Profile")
    async def profile(interaction: discord.Interaction, member: discord.Member) -> None:
        await interaction.response.send_message(f"profile of {member.name}", ephemeral=True)

    anchor = app_commands.Group(name="anchor", description="Identity anchors")

    @anchor.command(name="save", description="Save an anchor")
    async def anchor_save(
        interaction: discord.Interaction, name: str, image: discord.Attachment
    ) -> None:
        data = await image.read()
        await interaction.response.send_message(f"saved {name} ({len(data)} bytes)", ephemeral=True)

    tree.add_command(anchor, guild=guild)

    @bot.event
    async def on_message(message: discord.Message) -> None:
        if message.author.bot:
            return
        seen.messages.append(message)
        if message.content == "thread please":
            try:
                thread = await message.create_thread(name="chain")
            except discord.HTTPException as exc:
                seen.errors["thread"] = exc
                return
            seen.threads.append(thread)
            await thread.send("hello thread")
        elif message.content.startswith("echo "):
            await message.reply(message.content[5:])

    async def setup_hook() -> None:
        bot.add_dynamic_items(Reroll, Upscale, Cancel, Refine, StylePick)
        await tree.sync()
        await tree.sync(guild=guild)

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    return bot


@dataclass
class Running:
    fake: FakeDiscord
    bot: commands.Bot
    seen: Seen
    task: asyncio.Task[None]

    async def stop(self) -> None:
        await self.bot.close()
        await asyncio.wait_for(self.task, 5)


async def start_bot(fake: FakeDiscord, *, message_content: bool = True) -> Running:
    seen = Seen()
    bot = make_bot(fake, seen, message_content=message_content)

    async def run() -> None:
        async with bot:
            await bot.start(fake.token)

    task = asyncio.create_task(run())
    await fake.wait_until_ready(timeout=10)
    return Running(fake, bot, seen, task)


@pytest_asyncio.fixture
async def env(fake_discord: FakeDiscord) -> AsyncIterator[Running]:
    with discord_py_pointed_at(fake_discord):
        running = await start_bot(fake_discord)
        try:
            yield running
        finally:
            await running.stop()
    assert fake_discord.internal_errors == [] and fake_discord.unhandled == []


async def eventually(condition: Any, timeout: float = 5) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


# ---- start-up ----------------------------------------------------------------------------


async def test_start_is_fast_and_login_syncs_commands(fake_discord: FakeDiscord) -> None:
    fresh = FakeDiscord()
    started = time.perf_counter()
    await fresh.start()
    assert time.perf_counter() - started < 0.5
    await fresh.stop()
    with discord_py_pointed_at(fake_discord):
        began = time.perf_counter()
        running = await start_bot(fake_discord)
        assert time.perf_counter() - began < 2
        try:
            calls = [(r.method, r.path) for r in fake_discord.requests]
            assert ("GET", "/users/@me") in calls
            assert fake_discord.gateway.heartbeats >= 1
            assert ("GET", "/oauth2/applications/@me") in calls
            app = fake_discord.application_id
            assert ("PUT", f"/applications/{app}/commands") in calls
            assert ("PUT", f"/applications/{app}/guilds/{fake_discord.guild_id}/commands") in calls
            names = {(c["name"], c["type"]) for c in fake_discord.commands()}
            assert {("render", 1), ("ask", 1), ("anchor", 1), ("Edit image", 3)} <= names
            await running.bot.wait_until_ready()
            guild = running.bot.get_guild(fake_discord.guild_id)
            assert guild is not None and guild.name == "Test Guild"
            assert {c.name for c in guild.text_channels} == {"general", "art"}
            assert {m.name for m in guild.members} >= {"alice", "bob", "carol", "admin"}
            admin = guild.get_member(fake_discord.user("admin").id)
            assert (
                admin is not None
                and admin.guild_permissions.manage_guild
                and guild.owner_id == admin.id
            )
        finally:
            await running.stop()
    assert fake_discord.schema_violations == []


async def test_rest_needs_bot_token_and_answers_exact_json(fake_discord: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake_discord.api_base}/users/@me") as resp:
            assert resp.status == 401
            assert (await resp.json())["message"] == "401: Unauthorized"
        headers = {"Authorization": f"Bot {fake_discord.token}"}
        async with session.get(f"{fake_discord.api_base}/users/@me", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/json"
            assert int((await resp.json())["id"]) == fake_discord.application_id
        async with session.get(f"{fake_discord.api_base}/gateway") as resp:
            assert (await resp.json())["url"] == fake_discord.gateway_url


# ---- interactions ------------------------------------------------------------------------


async def test_slash_with_upload_defer_followup_file_and_button(env: Running) -> None:
    fake = env.fake
    alice = fake.user("alice")
    ix = await alice.slash("render", prompt="a cat", reference=Upload("cat.png", PNG))
    assert await ix.wait_ack() == 5
    assert ix.ack_latency is not None and ix.ack_latency < 3
    msg = await ix.original()
    assert msg.content == f"rendered a cat ({len(PNG)} bytes)"  # the bot downloaded the upload
    assert msg.attachment_names == ["out.png"] and fake.attachment_bytes(msg.attachments[0]) == PNG
    assert msg.attachments[0].width == 8 and msg.button_labels[0] == "Reroll"
    assert ix.followups == [msg] and msg in fake.messages_in("general")
    assert msg.interaction_metadata is not None and msg.interaction_metadata["name"] == "render"
    received = env.seen.interactions[0]
    assert received.filesize_limit == 10 * MiB
    channel = env.bot.get_channel(fake.channel("general"))
    assert isinstance(channel, discord.TextChannel)
    fetched = await channel.fetch_message(msg.id)
    assert await fetched.attachments[0].read() == PNG  # bot-posted files come from the CDN too
    assert [m.id async for m in channel.history(limit=5)] == [msg.id]
    cdn = [line for line in fake.traffic if "CDN GET cat.png" in line]
    assert cdn, "the bot did not download the attachment from the fake CDN"

    click = await alice.click(msg, "Reroll")
    assert await click.wait_ack() == 4
    reply = await click.original()
    assert reply.content == "rerolled 7"
    assert reply.interaction_metadata is not None
    assert int(reply.interaction_metadata["interacted_message_id"]) == msg.id
    assert fake.ack_latencies and max(fake.ack_latencies) < 3
    assert fake.schema_violations == []


async def test_component_responses_update_defer_modal_and_select(env: Running) -> None:
    fake = env.fake
    alice = fake.user("alice")
    msg = await (await alice.slash("render", prompt="a dog")).original()
    assert msg.button_labels == ["Reroll", "Upscale", "Cancel", "Refine"]

    upscale = await alice.click(msg, "Upscale")
    assert await upscale.wait_ack() == 6
    assert (await upscale.original()).id == msg.id and msg.content == "upscaled"
    assert msg.edits[-1].content.startswith("rendered a dog")

    refine = await alice.click(msg, "Refine")
    assert await refine.wait_ack() == 9
    submitted = await alice.submit_modal(refine, {"changes": "sharper"})
    assert (await submitted.original()).content == f"got: sharper on {msg.id}"

    style = await alice.select(msg, ["anime"])
    answer = await style.original()
    assert answer.content == "style ['anime']" and answer.ephemeral

    cancel = await alice.click(msg, "Cancel")
    assert await cancel.wait_ack() == 7
    assert msg.content == "cancelled" and msg.components == []
    with pytest.raises(AssertionError, match="no button"):
        await alice.click(msg, "Reroll")
    assert fake.schema_violations == []


async def test_deferred_edits_show_progress_then_result(env: Running) -> None:
    fake = env.fake
    ix = await fake.user("bob").slash("progress")
    done = await fake.wait_for_message(predicate=lambda m: m.content == "done")
    assert done.attachment_names == ["p.png"] and not done.loading
    assert [e.content for e in done.edits] == ["Queued — 1st in line"]
    assert (await ix.original()).id == done.id and ix.followups == []


async def test_modal_submit_and_subcommand_and_context_menu(env: Running) -> None:
    fake = env.fake
    alice = fake.user("alice")
    ix = await alice.slash("ask")
    assert await ix.wait_ack() == 9
    assert ix.modal is not None and ix.modal["title"] == "Refine"
    submitted = await alice.submit_modal(ix, {"Changes": "make it bluer"})
    assert (await submitted.original()).content == "got: make it bluer"

    saved = await alice.slash("anchor save", name="alice", image=Upload("face.png", PNG))
    reply = await saved.original()
    assert reply.content == f"saved alice ({len(PNG)} bytes)"
    assert reply.ephemeral and reply not in fake.messages_in("general")
    assert reply in alice.ephemeral_messages() and fake.user("bob").ephemeral_messages() == []

    posted = await alice.say("general", "look", files=[Upload("a.png", PNG)])
    menu = await alice.context_menu("Edit image", posted)
    answer = await menu.original()
    assert answer.content == f"editing {posted.id} with 1 attachment(s)" and answer.ephemeral
    profile = await alice.context_menu("Profile", fake.user("carol"))
    assert (await profile.original()).content == "profile of carol"
    assert fake.schema_violations == []


async def test_autocomplete_returns_choices(env: Running) -> None:
    alice = env.fake.user("alice")
    assert await alice.autocomplete("pick", "name", "al") == [
        {"name": "alpha", "value": "alpha"},
        {"name": "albert", "value": "albert"},
    ]
    assert await alice.autocomplete("pick", "name", "zz", prompt="x") == []


async def test_driver_refuses_what_the_client_would(env: Running) -> None:
    alice = env.fake.user("alice")
    with pytest.raises(AssertionError, match="has not synced a slash command named 'nope'"):
        await alice.slash("nope")
    with pytest.raises(AssertionError, match="no option"):
        await alice.slash("render", prompt="x", colour="red")
    with pytest.raises(AssertionError, match="required"):
        await alice.slash("render")
    with pytest.raises(AssertionError, match="needs a subcommand"):
        await alice.slash("anchor")
    with pytest.raises(AssertionError, match="no subcommand"):
        await alice.slash("anchor frobnicate")
    with pytest.raises(AssertionError, match="not one of the choices"):
        await alice.slash("render", prompt="x", size="8K")
    with pytest.raises(AssertionError, match="cannot see /usage"):
        await alice.slash("usage")
    admin = env.fake.user("admin")
    with pytest.raises(AssertionError, match=r"within 1\.\.31"):
        await admin.slash("usage", days=40)
    assert (await (await admin.slash("usage", days=7)).original()).content == "usage for 7 day(s)"


async def test_upload_over_10_mib_is_refused_with_40005(env: Running) -> None:
    ix = await env.fake.user("bob").slash("big")
    await ix.wait_ack()
    (note,) = await ix.wait_followups(1)
    assert note.content == "too big (40005)"
    err = env.seen.errors["big"]
    assert err.status == 413 and err.code == 40005


async def test_content_over_2000_is_refused_with_50035(env: Running) -> None:
    ix = await env.fake.user("bob").slash("long")
    assert (await ix.original()).content == "shortened"
    err = env.seen.errors["long"]
    assert err.status == 400 and err.code == 50035 and "2000" in str(err)
    if discord_schema.available():  # shared/discord-openapi.json beside the checkout
        assert any("maxLength=2000" in v["error"] for v in env.fake.schema_violations)


async def test_second_acknowledgement_gets_40060(env: Running) -> None:
    ix = await env.fake.user("carol").slash("twice")
    await ix.original()
    await eventually(lambda: "twice" in env.seen.errors)
    assert env.seen.errors["twice"].code == 40060


async def test_late_acknowledgement_fails_the_interaction(env: Running) -> None:
    fake = env.fake
    ix = await fake.user("carol").slash("late")
    await asyncio.sleep(0.05)
    fake.advance_clock(3.5)
    assert ix.failed and "not acknowledged" in ix.fail_reason
    env.seen.release_late.set()
    await eventually(lambda: "late" in env.seen.errors)
    err = env.seen.errors["late"]
    assert isinstance(err, discord.NotFound) and err.code == 10062
    assert max(fake.ack_latencies) > 3
    with pytest.raises(AssertionError, match="failed"):
        await ix.original(timeout=0.2)


async def test_unanswered_interaction_fails_when_its_deadline_passes(env: Running) -> None:
    env.fake.ack_deadline = 0.2  # the real-time timer path, shortened for speed
    ix = await env.fake.user("bob").slash("late")
    assert "not acknowledged" in await ix.wait_failed(timeout=2)
    env.seen.release_late.set()
    await eventually(lambda: "late" in env.seen.errors)
    assert env.seen.errors["late"].code == 10062


async def test_webhook_token_expires_after_15_minutes(env: Running) -> None:
    fake = env.fake
    ix = await fake.user("alice").slash("render", prompt="x")
    await ix.original()
    interaction = env.seen.interactions[-1]
    extra = await interaction.followup.send("still valid", wait=True)
    assert fake.message(extra.id).content == "still valid"
    fake.advance_clock(901)
    with pytest.raises(discord.HTTPException) as caught:
        await interaction.followup.send("too late")
    assert caught.value.status == 401 and caught.value.code == 50027
    with pytest.raises(discord.HTTPException) as caught:
        await interaction.edit_original_response(content="nope")
    assert caught.value.code == 50027


async def test_rate_limit_with_via_is_retried(env: Running) -> None:
    fake = env.fake
    channel = env.bot.get_channel(fake.channel("general"))
    assert isinstance(channel, discord.TextChannel)
    fake.rate_limit_next("/messages", retry_after=0.2)
    began = time.perf_counter()
    sent = await channel.send("after a 429")
    assert time.perf_counter() - began >= 0.2
    statuses = [
        r.status for r in fake.requests if r.path.endswith("/messages") and r.method == "POST"
    ]
    assert statuses[-2:] == [429, 200]
    assert fake.message(sent.id).content == "after a 429"
    fake.rate_limit_next("/messages", retry_after=0.05, global_=True)
    await channel.send("after a global 429")
    assert fake.invalid_requests == 2


async def test_reply_reaches_the_bot_with_reference(env: Running) -> None:
    fake = env.fake
    alice = fake.user("alice")
    ix = await alice.slash("render", prompt="a cat")
    result = await ix.original()
    reply = await alice.reply(result, "make it blue", files=[Upload("ref.png", PNG)])
    await eventually(lambda: any(m.id == reply.id for m in env.seen.messages))
    seen = next(m for m in env.seen.messages if m.id == reply.id)
    assert seen.reference is not None and seen.reference.message_id == result.id
    assert seen.content == "make it blue" and seen.attachments[0].filename == "ref.png"
    assert await seen.attachments[0].read() == PNG

    await alice.say("general", "echo hi there")
    echoed = await fake.wait_for_message(
        channel="general", predicate=lambda m: m.content == "hi there"
    )
    assert echoed.reference_id is not None
    assert fake.bot_user not in reply.mentions  # replies to interaction responses ping nobody


async def test_thread_creation_and_permission_refusal(env: Running) -> None:
    fake = env.fake
    alice = fake.user("alice")
    starter = await alice.say("general", "thread please")
    hello = await fake.wait_for_message(predicate=lambda m: m.content == "hello thread")
    (thread,) = fake.threads
    assert (
        thread.id == starter.id
        and hello.channel_id == thread.id
        and thread.parent_id == fake.channel("general")
    )
    assert env.bot.get_channel(thread.id) is not None  # THREAD_CREATE reached discord.py's cache
    await alice.say(thread.id, "in the thread")
    await eventually(lambda: any(m.content == "in the thread" for m in env.seen.messages))
    assert isinstance(env.seen.messages[-1].channel, discord.Thread)

    fake.set_thread_creation_allowed(False)
    await alice.say("art", "thread please")
    await eventually(lambda: "thread" in env.seen.errors)
    err = env.seen.errors["thread"]
    assert isinstance(err, discord.Forbidden) and err.code == 50013


async def test_gateway_resume_replays_missed_events(env: Running) -> None:
    fake = env.fake
    alice = fake.user("alice")
    await fake.disconnect_bot()
    await alice.say("general", "while you were away")
    await fake.wait_until_ready(timeout=10)
    assert fake.resumes == 1 and fake.identifies == 1
    await eventually(lambda: any(m.content == "while you were away" for m in env.seen.messages))
    ix = await alice.slash("pick", name="bravo")
    assert (await ix.original()).content == "picked bravo"


async def test_state_survives_a_bot_restart(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    with discord_py_pointed_at(fake):
        first = await start_bot(fake)
        alice = fake.user("alice")
        result = await (await alice.slash("render", prompt="one")).original()
        await alice.say("general", "thread please")
        await fake.wait_for_message(predicate=lambda m: m.content == "hello thread")
        await first.stop()
        fake.reset_ready()
        second = await start_bot(fake)
        try:
            assert fake.identifies == 2
            assert result in fake.messages_in("general")
            click = await alice.click(result, "Reroll")  # a persistent button after restart
            assert (await click.original()).content == "rerolled 7"
            await second.bot.wait_until_ready()
            assert second.bot.get_channel(fake.threads[0].id) is not None  # from GUILD_CREATE
        finally:
            await second.stop()


async def test_message_content_intent_is_enforced(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    with discord_py_pointed_at(fake):
        running = await start_bot(fake, message_content=False)
        try:
            alice = fake.user("alice")
            await alice.say("general", "secret text")
            await alice.say("general", f"{fake.bot_user.mention} hello bot")
            result = await (await alice.slash("pick", name="alpha")).original()
            await alice.reply(result, "make it blue")  # a reply to an interaction response
            await eventually(lambda: len(running.seen.messages) == 3)
            assert running.seen.messages[0].content == ""
            assert running.seen.messages[1].content.endswith("hello bot")
            assert running.seen.messages[2].content == ""
            assert running.seen.messages[2].reference is not None
        finally:
            await running.stop()


async def test_embed_limits_are_enforced_over_rest(env: Running) -> None:
    channel = env.bot.get_channel(env.fake.channel("art"))
    assert isinstance(channel, discord.TextChannel)
    embed = discord.Embed(title="t")
    for i in range(26):
        embed.add_field(name=f"f{i}", value="v")
    with pytest.raises(discord.HTTPException) as caught:
        await channel.send(embed=embed)
    assert caught.value.code == 50035 and "fields" in str(caught.value)
    files = [discord.File(io.BytesIO(b"x"), f"{i}.txt") for i in range(11)]
    with pytest.raises(discord.HTTPException) as caught:
        await channel.send(files=files)
    assert caught.value.code == 50035
    with pytest.raises(discord.HTTPException) as caught:
        await channel.send()  # nothing at all
    assert caught.value.code == 50006
    image = discord.File(io.BytesIO(PNG), "shown.png")
    sent = await channel.send(
        embed=discord.Embed(title="img").set_image(url="attachment://shown.png"), file=image
    )
    record = env.fake.message(sent.id)
    assert record.attachments == [] and [a.filename for a in record.embed_attachments] == [
        "shown.png"
    ]
    assert sent.embeds[0].image.url == record.embed_attachments[0].url
    edited = await sent.edit(content="edited")
    assert env.fake.message(edited.id).edits and env.fake.message(edited.id).content == "edited"


async def test_wait_for_message_times_out_with_traffic(env: Running) -> None:
    await env.fake.user("alice").say("general", "nothing to see")
    with pytest.raises(AssertionError, match="Recent traffic") as caught:
        await env.fake.wait_for_message(channel="general", timeout=0.2)
    assert "alice says in #general" in str(caught.value)


# ---- pure limit checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("embed", "path"),
    [
        ({"title": "t" * 257}, "title"),
        ({"description": "d" * 4097}, "description"),
        ({"footer": {"text": "f" * 2049}}, "footer"),
        ({"author": {"name": "a" * 257}}, "author"),
        ({"fields": [{"name": "n" * 257, "value": "v"}]}, "name"),
        ({"fields": [{"name": "n", "value": "v" * 1025}]}, "value"),
        (
            {"description": "d" * 4000, "fields": [{"name": "n", "value": "v" * 1000}] * 3},
            "MAX_EMBED_SIZE",
        ),
    ],
)
def test_embed_limits(embed: dict[str, Any], path: str) -> None:
    with pytest.raises(limits.DiscordError) as caught:
        limits.check_message({"embeds": [embed]}, file_count=0, creating=True)
    assert caught.value.code == 50035 and path in str(caught.value.body())


def test_message_limits_at_the_edges() -> None:
    limits.check_message(
        {"content": "x" * 2000, "embeds": [{"title": "t"}] * 10}, file_count=10, creating=True
    )
    with pytest.raises(limits.DiscordError):
        limits.check_message({"embeds": [{"title": "t"}] * 11}, file_count=0, creating=True)
    with pytest.raises(limits.DiscordError) as caught:
        limits.check_message({"content": "x" * 2001}, file_count=0, creating=True)
    assert caught.value.body()["errors"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    with pytest.raises(limits.DiscordError):
        limits.check_file_sizes([10 * MiB + 1], 10 * MiB)
    limits.check_file_sizes([10 * MiB], 10 * MiB)


def test_command_sync_rules() -> None:
    ok: dict[str, Any] = {
        "name": "imagine",
        "description": "d",
        "type": 1,
        "options": [
            {"name": "prompt", "description": "p", "type": 3, "required": True},
            {"name": "aspect", "description": "a", "type": 3},
        ],
    }
    limits.check_commands([ok], global_=True)
    bad_order = {**ok, "options": list(reversed(ok["options"]))}
    with pytest.raises(limits.DiscordError, match="50035"):
        limits.check_commands([bad_order], global_=True)
    with pytest.raises(limits.DiscordError):
        limits.check_commands([{**ok, "name": "Imagine"}], global_=True)
    too_many = {
        **ok,
        "options": [{"name": f"o{i}", "description": "d", "type": 3} for i in range(26)],
    }
    with pytest.raises(limits.DiscordError):
        limits.check_commands([too_many], global_=True)
