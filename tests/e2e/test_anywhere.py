"""Works wherever Discord lets it (product.md §10), end to end: the real bot, the fake Discord,
the fake Gemini, in each kind of place:

- the bot's DM (guild install): /imagine, the conversation as the chain (replies and plain
  messages), anchors, errors, what only servers have (/quota, server templates);
- a group DM through the app installed to the user's account (context 2): every answer
  through the interaction (the bot is never a member: it must never try to post there),
  chains through Refine and the Edit image menu, the 5-followup limit, the token running out;
- a server the bot is not in, through the user install (context 0 without the bot);
- private threads: one the bot is in (replies refine; a chain opens a private thread beside
  it, or says why it can't), one it is not in (only the interaction reaches).

Each refusal Discord would make (50001 where the bot is not a member, 50013 without the
permission, 50007 with DMs closed) is either never provoked or turned into a clear message.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from bot.presentation import targets
from tests.e2e.conftest import png_bytes
from tests.e2e.harness import BotHarness
from tests.fakes.discord_driver import FakeInteraction, FakeUser, Upload
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import (
    BOT_ROLE_PERMS,
    P_CREATE_PRIVATE_THREADS,
    P_MANAGE_THREADS,
    MessageRecord,
)
from tests.fakes.gemini import FakeRequest, b64decode_any

RESULT_TIMEOUT = 20
TOKEN_EXPIRED = 15 * 60 + 1


# ---------------------------------------------------------------------------------- helpers


def is_result(m: MessageRecord) -> bool:
    return bool(m.embeds) and any(f.filename.startswith("nano-banana") for f in m.files)


def step_of(m: MessageRecord) -> str | None:
    for f in (m.embed or {}).get("fields") or []:
        if f.get("name") == "Chain step":
            return str(f.get("value"))
    return None


async def result_in(
    fake: FakeDiscord, channel: int, *, within: float = RESULT_TIMEOUT, since: int | None = None
) -> MessageRecord:
    return await fake.wait_for_message(
        predicate=lambda m: is_result(m) and m.channel_id == channel, timeout=within, since=since
    )


async def answer_of(ix: FakeInteraction, *, within: float = RESULT_TIMEOUT) -> MessageRecord:
    """The interaction's response once it is final (a result, or a failure)."""
    fake = ix.fake
    await ix.wait_ack(3)

    def final() -> bool:
        m = ix.original_message
        return m is not None and not m.loading and (is_result(m) or m.content[:1] in "❌🚫")

    await fake._wait(final, within, f"the final answer to {ix.record.name!r}")
    message = ix.original_message
    assert message is not None
    return message


async def private_text(fake: FakeDiscord, user: FakeUser, contains: str) -> MessageRecord:
    return await fake.wait_for_message(
        predicate=lambda m: m.visible_to == user.id and contains in m.text, timeout=10
    )


async def polled(condition: Any, what: str, within: float = RESULT_TIMEOUT) -> None:
    """Until condition() (sync, or async) is true: for state the fake is not told about."""
    try:
        async with asyncio.timeout(within):
            while True:
                done = condition()
                if asyncio.iscoroutine(done):
                    done = await done
                if done:
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {within}s waiting for {what}") from None


def refused_calls(fake: FakeDiscord) -> list[str]:
    """REST calls Discord refused (403 Missing Access / Permissions, 50007...)."""
    return [f"{r.method} {r.path} {r.status} {r.error_code}" for r in fake.requests if r.status == 403]


def bot_posts_in(fake: FakeDiscord, channel: int) -> list[str]:
    """The bot's own REST posts (not interaction responses) into a channel."""
    return [
        r.path
        for r in fake.requests
        if r.method == "POST" and r.path.startswith(f"/channels/{channel}/")
    ]


def anchor_images(request: FakeRequest) -> list[bytes]:
    """Image parts of the current turn labelled as identity anchors."""
    parts = request.last_content.get("parts") or []
    out = []
    for part, following in itertools.pairwise(parts):
        text = part.get("text")
        blob = following.get("inlineData")
        if isinstance(text, str) and "identity anchor" in text and blob:
            out.append(b64decode_any(str(blob["data"])))
    return out


async def save_anchor(fake: FakeDiscord, user: FakeUser, channel: int, name: str) -> None:
    ix = await user.slash(
        "anchor save",
        name=name,
        image=Upload(f"{name}.png", png_bytes(96, 128, (10, 200, 30))),
        channel=channel,
    )
    await ix.wait_ack(3)
    await private_text(fake, user, "Saved anchor")


async def refine(
    user: FakeUser, message: MessageRecord, changes: str, *, menu: bool = False
) -> FakeInteraction:
    """Refine (the button) or Apps ▸ Edit image (the menu) on a result; the modal's answer."""
    opened = await (user.context_menu("Edit image", message) if menu else user.click(message, "Refine"))
    await opened.wait_ack(3)
    return await user.submit_modal(opened, {"changes": changes})


@pytest.fixture
def quick_expiry_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """The warning that a token is nearly gone comes after 1 s instead of 13 minutes."""
    monkeypatch.setattr(targets, "EXPIRY_WARNING_AFTER", 1.0)


# ------------------------------------------------------------------------------ the bot's DM


async def test_dm_imagine_and_the_conversation_is_the_chain(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    dm = alice.dm_channel
    root = await answer_of(await alice.slash("imagine", prompt="a paper boat", channel=dm))
    assert is_result(root) and root.channel_id == dm and not root.ephemeral
    # a reply to the result refines it, in place (there are no threads in DMs)
    ask = await alice.reply(root, "make it red")
    step1 = await result_in(fake, dm)
    assert step1.reference_id == ask.id and step_of(step1) == "1 (from step 0)"
    assert gemini.requests[-1].spec is not None
    assert gemini.requests[-1].spec["changes"] == "make it red"
    # a plain message carries on from the chain's latest image
    ask = await alice.dm("now add a tiny sail")
    step2 = await result_in(fake, dm)
    assert step2.reference_id == ask.id and step_of(step2) == "2 (from step 1)"
    # a note between people is not an edit
    calls = len(gemini.requests)
    await alice.dm("// just thinking aloud")
    await asyncio.sleep(0.3)
    assert len(gemini.requests) == calls
    assert not fake.threads and refused_calls(fake) == []


async def test_dm_without_a_result_yet_explains(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    bob = fake.user("bob")
    hello = await bob.dm("hello bot")
    hint = await fake.wait_for_message(channel=bob.dm_channel, timeout=10)
    assert hint.reference_id == hello.id and "/imagine" in hint.content
    assert gemini.requests == []


async def test_dm_anchor_and_an_error(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    dm = alice.dm_channel
    await save_anchor(fake, alice, dm, "me")
    result = await answer_of(
        await alice.slash("imagine", prompt="me as an astronaut", anchors="me", channel=dm)
    )
    assert is_result(result)
    assert len(anchor_images(gemini.requests[-1])) == 1
    # an error: an anchor that does not exist, said privately, nothing sent to Gemini
    calls = len(gemini.requests)
    await (await alice.slash("imagine", prompt="x", anchors="nobody", channel=dm)).wait_ack(3)
    await private_text(fake, alice, "no anchor called 'nobody'")
    # a failure at Gemini: its message, with Retry, in the DM
    gemini.fail_next("prompt_blocked", reason="SAFETY")
    failed = await answer_of(await alice.slash("imagine", prompt="blocked", channel=dm))
    assert failed.content.startswith("🚫") and "Retry" in failed.button_labels
    assert len(gemini.requests) == calls + 1


async def test_dm_has_no_server_administration(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    dm = alice.dm_channel
    with pytest.raises(AssertionError, match="not available"):
        await alice.slash("quota show", channel=dm)
    ix = await alice.slash("template save", name="mine", json='{"prompt": "x"}', channel=dm)
    await ix.wait_ack(3)
    await private_text(fake, alice, "Server templates live in a server")
    # built-in templates work, and settings and usage are the user's own
    await (await alice.slash("template list", channel=dm)).wait_ack(3)
    await private_text(fake, alice, "**Built-in**")
    await (await alice.slash("settings", size="2K", channel=dm)).wait_ack(3)
    await private_text(fake, alice, "Saved. Your defaults now")
    await (await alice.slash("usage", channel=dm)).wait_ack(3)
    await private_text(fake, alice, "Usage of")


async def test_quota_is_offered_only_where_a_server_installed_the_bot(
    bot_harness: BotHarness,
) -> None:
    fake = bot_harness.discord
    quota = next(c for c in fake.commands(guild=False) if c["name"] == "quota")
    assert quota["contexts"] == [0] and quota["integration_types"] == [0]
    imagine = next(c for c in fake.commands(guild=False) if c["name"] == "imagine")
    assert imagine["contexts"] == [0, 1, 2] and imagine["integration_types"] == [0, 1]
    menus = [c for c in fake.commands(guild=False) if c.get("type") == 3]
    assert menus and all(c["contexts"] == [0, 1, 2] for c in menus)


# ----------------------------------------------------- a group DM, through the user install


def group_of(fake: FakeDiscord) -> tuple[FakeUser, int]:
    alice = fake.user("alice")
    fake.install_app(alice)
    return alice, fake.add_group_dm("alice", "bob", "carol", name="friends")


async def test_group_dm_imagine_and_a_chain_through_the_interactions(
    bot_harness: BotHarness,
) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice, group = group_of(fake)
    root = await answer_of(await alice.slash("imagine", prompt="a picnic basket", channel=group))
    assert is_result(root) and root.channel_id == group
    assert "Refine" in root.button_labels
    # Refine: the modal's own answer carries the step (no thread, no post of the bot's own)
    step1 = await answer_of(await refine(alice, root, "add strawberries"))
    assert is_result(step1) and step1.channel_id == group
    assert step_of(step1) == "1 (from step 0)"
    # the Edit image menu on that step continues the chain
    step2 = await answer_of(await refine(alice, step1, "make it rain", menu=True))
    assert step_of(step2) == "2 (from step 1)"
    assert gemini.requests[-1].spec is not None
    assert gemini.requests[-1].spec["changes"] == "make it rain"
    # friends see the results; the bot never reads the group DM (a reply does nothing)
    calls = len(gemini.requests)
    await fake.user("bob").reply(step2, "make it sunny")
    await asyncio.sleep(0.3)
    assert len(gemini.requests) == calls
    assert not fake.threads
    assert bot_posts_in(fake, group) == [] and refused_calls(fake) == []


async def test_group_dm_anchor_error_and_buttons(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice, group = group_of(fake)
    await save_anchor(fake, alice, group, "me")
    result = await answer_of(
        await alice.slash("imagine", prompt="me at the beach", anchors="me", channel=group)
    )
    assert len(anchor_images(gemini.requests[-1])) == 1
    # errors: privately, and Gemini's failure with Retry in the interaction's message
    await (await alice.slash("imagine", prompt="x", anchors="ghost", channel=group)).wait_ack(3)
    await private_text(fake, alice, "no anchor called 'ghost'")
    gemini.fail_next("prompt_blocked", reason="SAFETY")
    failed = await answer_of(await alice.slash("imagine", prompt="blocked", channel=group))
    assert failed.content.startswith("🚫") and "Retry" in failed.button_labels
    await (await alice.click(failed, "Retry")).wait_ack(3)  # the failure becomes the result
    await fake._wait(lambda: is_result(fake.message(failed.id)), RESULT_TIMEOUT, "the retry")
    # Reroll by someone else in the group: their own interaction answers it (not the one
    # with alice's anchor: that is hers alone)
    bob = fake.user("bob")
    reroll = await answer_of(await bob.click(fake.message(failed.id), "Reroll"))
    assert reroll.channel_id == group and is_result(reroll)
    await (await bob.click(result, "Reroll")).wait_ack(3)
    await private_text(fake, bob, "someone's private anchors")
    # Delete goes through the interaction too (the bot cannot delete there itself)
    delete = await alice.click(result, "Delete")
    await delete.wait_ack(3)
    await fake._wait(lambda: fake.message(result.id).deleted, 10, "the result to be deleted")
    assert bot_posts_in(fake, group) == [] and refused_calls(fake) == []


async def test_group_dm_batch_fits_the_followup_limit(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice, group = group_of(fake)
    spec = '{"prompt": "a mug", "product": {"color": "red"}}'
    ix = await alice.slash(
        "batch", field="product.color", values="red,blue,green,black,white,pink", json=spec,
        channel=group,
    )  # fmt: skip
    await ix.wait_ack(3)
    refusal = await private_text(fake, alice, "at most 5 values")
    assert "you gave 6" in refusal.content
    ix = await alice.slash(
        "batch", field="product.color", values="red,blue,green", json=spec, channel=group
    )
    sheet = await fake.wait_for_message(
        predicate=lambda m: m.channel_id == group and "Contact sheet" in m.content, timeout=30
    )
    assert sheet.id == ix.record.original_id
    assert len([m for m in ix.followups if is_result(m)]) == 3
    assert bot_posts_in(fake, group) == [] and refused_calls(fake) == []


async def test_group_dm_result_after_the_token_goes_to_dms(
    bot_harness: BotHarness, quick_expiry_warning: None
) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice, group = group_of(fake)
    gemini.latency = 3
    ix = await alice.slash("imagine", prompt="a slow sunset", channel=group)
    # before the token runs out, the progress message says where the result will be
    warned = await fake.wait_for_message(
        predicate=lambda m: m.id == ix.record.original_id and "/history" in m.content, timeout=10
    )
    assert warned.content.startswith("⏳") and "your DMs" in warned.content
    fake.advance_clock(TOKEN_EXPIRED)
    late = await result_in(fake, alice.dm_channel)
    assert "15 minutes" in late.content and "Reroll" in late.button_labels
    assert not [m for m in fake.messages_in(group) if is_result(m)]
    assert bot_posts_in(fake, group) == [] and refused_calls(fake) == []
    # the DM'd result is a live result: its buttons work in the DM
    assert is_result(await answer_of(await alice.click(late, "Reroll")))


async def test_group_dm_result_after_the_token_with_dms_closed_waits_in_history(
    bot_harness: BotHarness, quick_expiry_warning: None
) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice, group = group_of(fake)
    fake.close_dms(alice)
    gemini.latency = 3
    ix = await alice.slash("imagine", prompt="a slow moonrise", channel=group)
    await fake.wait_for_message(
        predicate=lambda m: m.id == ix.record.original_id and "/history" in m.content, timeout=10
    )
    fake.advance_clock(TOKEN_EXPIRED)
    bot = bot_harness.bot
    assert bot is not None
    await polled(lambda: not bot.generator.active(), "the job to end")
    [gen] = await bot.store.recent_generations(alice.id)
    assert gen.status == "done" and gen.message_id is None
    # the only refusal was the DM (50007), nothing was tried in the group DM
    assert [c for c in refused_calls(fake) if "50007" not in c] == []
    assert bot_posts_in(fake, group) == []
    # /history, anywhere, posts it again with live buttons
    again = await answer_of(await alice.slash("history", id=gen.id, channel=group))
    assert is_result(again) and again.channel_id == group


# --------------------------------------------- a server without the bot, through the user install


def elsewhere(fake: FakeDiscord) -> tuple[FakeUser, int]:
    alice = fake.user("alice")
    fake.install_app(alice)
    gid = fake.add_guild("Elsewhere", channels=("lounge",), members=("alice", "dave"), bot=False)
    return alice, fake.channel("lounge", guild=gid)


async def test_other_server_imagine_chain_anchor_and_error(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice, lounge = elsewhere(fake)
    await save_anchor(fake, alice, lounge, "me")
    root = await answer_of(
        await alice.slash("imagine", prompt="me on a skateboard", anchors="me", channel=lounge)
    )
    assert is_result(root) and root.channel_id == lounge
    assert len(anchor_images(gemini.requests[-1])) == 1
    # Refine: no thread (the bot cannot open one here), the modal's answer is the step
    step = await answer_of(await refine(alice, root, "make it a snowboard"))
    assert step.channel_id == lounge and step_of(step) == "1 (from step 0)"
    assert not fake.threads
    # an error at Gemini comes back in the interaction's message
    gemini.fail_next("prompt_blocked", reason="SAFETY")
    failed = await answer_of(await alice.slash("imagine", prompt="blocked", channel=lounge))
    assert failed.content.startswith("🚫") and failed.channel_id == lounge
    # replies never reach the bot here
    calls = len(gemini.requests)
    await fake.user("dave").reply(step, "cool, add a dog")
    await asyncio.sleep(0.3)
    assert len(gemini.requests) == calls
    assert bot_posts_in(fake, lounge) == [] and refused_calls(fake) == []


async def test_other_server_has_no_server_settings(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice, lounge = elsewhere(fake)
    with pytest.raises(AssertionError, match="not available"):
        await alice.slash("quota show", channel=lounge)
    ix = await alice.slash("template save", name="mine", json='{"prompt": "x"}', channel=lounge)
    await ix.wait_ack(3)
    await private_text(fake, alice, "Server templates live in a server")
    await (await alice.slash("usage", channel=lounge)).wait_ack(3)
    usage = await private_text(fake, alice, "Usage of")
    assert "Server today" not in usage.content
    # nobody there has installed the app but alice: the others are offered nothing
    with pytest.raises(AssertionError, match="not available"):
        await fake.user("dave").slash("imagine", prompt="x", channel=lounge)


async def test_other_server_result_after_the_token(
    bot_harness: BotHarness, quick_expiry_warning: None
) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice, lounge = elsewhere(fake)
    gemini.latency = 3
    ix = await alice.slash("imagine", prompt="a slow train", channel=lounge, private=True)
    await fake.wait_for_message(
        predicate=lambda m: m.id == ix.record.original_id and "/history" in m.content, timeout=10
    )
    fake.advance_clock(TOKEN_EXPIRED)
    late = await result_in(fake, alice.dm_channel)  # a private result, to her DMs
    assert "15 minutes" in late.content
    assert bot_posts_in(fake, lounge) == [] and refused_calls(fake) == []


# ------------------------------------------------------------------------------ private threads


async def test_private_thread_with_the_bot(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    hidden = fake.add_private_thread("general", "planning", owner="alice", members=("bob",), bot=True)
    await save_anchor(fake, alice, hidden, "me")
    root = await answer_of(
        await alice.slash("imagine", prompt="me with a kite", anchors="me", channel=hidden)
    )
    assert root.channel_id == hidden and len(anchor_images(gemini.requests[-1])) == 1
    # a reply refines: the chain gets a private thread of its own beside this one
    ask = await alice.reply(root, "make the kite red")
    pointer = await fake.wait_for_message(
        predicate=lambda m: m.reference_id == ask.id and "private thread" in m.content, timeout=10
    )
    [chain_thread] = [t for t in fake.threads if t.id != hidden]
    assert f"<#{chain_thread.id}>" in pointer.content
    assert chain_thread.type == 12 and chain_thread.parent_id == fake.channel("general")
    assert alice.id in chain_thread.member_ids and fake.bot_user.id in chain_thread.member_ids
    assert fake.user("carol").id not in chain_thread.member_ids
    step1 = await result_in(fake, chain_thread.id)
    assert step_of(step1) == "1 (from step 0)"
    # in the chain's thread every message is the next step
    await alice.say(chain_thread.id, "and a blue sky")
    step2 = await fake.wait_for_message(
        predicate=lambda m: m.channel_id == chain_thread.id and step_of(m) == "2 (from step 1)",
        timeout=RESULT_TIMEOUT,
    )
    assert is_result(step2)
    # an error: said as a reply
    await alice.say(chain_thread.id, "use anchor:ghost please")
    err = await fake.wait_for_message(
        predicate=lambda m: m.channel_id == chain_thread.id and "no anchor" in m.content, timeout=10
    )
    assert not err.ephemeral
    assert refused_calls(fake) == []


async def test_private_thread_chain_without_the_permission_says_so(
    bot_harness: BotHarness,
) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    fake.set_bot_permissions(BOT_ROLE_PERMS & ~P_CREATE_PRIVATE_THREADS)
    hidden = fake.add_private_thread("general", "planning", owner="alice", bot=True)
    await asyncio.sleep(0.1)  # the bot hears of its new role permissions
    root = await answer_of(await alice.slash("imagine", prompt="a lantern", channel=hidden))
    ask = await alice.reply(root, "make it glow")
    step1 = await result_in(fake, hidden)
    assert step1.reference_id == ask.id and step_of(step1) == "1 (from step 0)"
    notice = [m for m in fake.messages_in(hidden) if "Create Private Threads" in m.content]
    assert len(notice) == 1
    assert [t.id for t in fake.threads] == [hidden]
    # the permission was checked first: nothing was tried (no 50013)
    assert refused_calls(fake) == []


async def test_private_thread_refused_by_discord_says_so(bot_harness: BotHarness) -> None:
    """The bot's cache says it may, Discord says 50013: the same notice, the chain in place."""
    fake = bot_harness.discord
    alice = fake.user("alice")
    fake.set_private_threads_allowed(False)  # Discord's side only
    hidden = fake.add_private_thread("general", "planning", owner="alice", bot=True)
    root = await answer_of(await alice.slash("imagine", prompt="a kettle", channel=hidden))
    step1 = await answer_of(await refine(alice, root, "make it copper"))
    assert step1.channel_id == hidden and step_of(step1) == "1 (from step 0)"
    assert [c for c in refused_calls(fake) if "/threads" in c and "50013" in c]
    notice = [m for m in fake.messages_in(hidden) if "Create Private Threads" in m.content]
    assert len(notice) == 1
    assert [t.id for t in fake.threads] == [hidden]


async def test_private_thread_without_the_bot(
    bot_harness: BotHarness, quick_expiry_warning: None
) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    fake.set_bot_permissions(BOT_ROLE_PERMS & ~P_MANAGE_THREADS)
    hidden = fake.add_private_thread("general", "secret", owner="alice", members=("bob",))
    alice = fake.user("alice")
    await asyncio.sleep(0.1)
    root = await answer_of(await alice.slash("imagine", prompt="a hidden door", channel=hidden))
    assert root.channel_id == hidden
    step = await answer_of(await refine(alice, root, "make it green"))
    assert step_of(step) == "1 (from step 0)"
    assert [t.id for t in fake.threads] == [hidden]  # no chain thread where it cannot see
    gemini.latency = 3
    ix = await alice.slash("imagine", prompt="a slow door", channel=hidden)
    await fake.wait_for_message(
        predicate=lambda m: m.id == ix.record.original_id and "/history" in m.content, timeout=10
    )
    fake.advance_clock(TOKEN_EXPIRED)
    await result_in(fake, alice.dm_channel)
    assert bot_posts_in(fake, hidden) == [] and refused_calls(fake) == []


# -------------------------------------------------------------------------------- restarts


async def test_a_group_dm_job_resumed_after_a_restart_past_the_token(harness: BotHarness) -> None:
    """Another process (here: the restarted one) knows from the job's payload that the group
    DM is reachable only through the interaction: past its token, the result goes to the
    requester's DMs, never into the group DM."""
    await harness.start()
    fake, gemini = harness.discord, harness.gemini
    alice, group = group_of(fake)
    gemini.latency = 30
    ix = await alice.slash("imagine", prompt="a restart far away", channel=group)
    await polled(lambda: gemini.in_flight >= 1, "the request to reach Gemini")
    assert harness.bot is not None
    store = harness.bot.store
    await polled(
        lambda: _payload_reach(store, ix.record.original_id), "the job to remember its message"
    )
    gemini.latency = 0
    await harness.stop()
    fake.advance_clock(TOKEN_EXPIRED)
    await harness.start()
    late = await result_in(fake, alice.dm_channel)
    assert "15 minutes" in late.content
    assert bot_posts_in(fake, group) == [] and refused_calls(fake) == []


async def _payload_reach(store: Any, message_id: int | None) -> bool:
    for job in await store.open_jobs():
        if job.payload.get("message_id") == message_id:
            assert job.payload["reach"] == "interaction"
            return True
    return False
