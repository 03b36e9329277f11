"""Economy end to end: requests through Gemini's Batch API (the fake's, over REST, through the
real SDK) — the message shows the state with Discord timestamps, the result is posted like any
result, at the batch price; a /batch posts every image and the contact sheet; a restart while
waiting still posts; an expired batch charges nothing; Cancel before the batch starts;
per-request failures with Retry; chains stay interactive."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pytest

from bot.config import estimate_cost
from tests.e2e.harness import BotHarness
from tests.e2e.test_commands import fields, generation_id, image_of, is_result, prompt_json
from tests.fakes.discord_driver import FakeInteraction
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import MessageRecord
from tests.fakes.gemini import FakeGemini, fake_mark_of

PRO = "gemini-3-pro-image"
RESULT_BUTTONS = {"Reroll", "Refine", "Upscale 2K", "Upscale 4K", "Prompt", "Delete"}
COLORS = ["red", "blue", "green", "yellow"]
FAST = {
    "economy_gather_seconds": 0.2,
    "economy_tick_seconds": 0.1,
    "economy_poll_initial_seconds": 0.2,
    "economy_poll_max_seconds": 0.4,
}


@pytest.fixture
async def eco(harness: BotHarness) -> BotHarness:
    harness.overrides.update(FAST)
    await harness.start()
    return harness


def interactive_calls(gemini: FakeGemini) -> list[Any]:
    return [r for r in gemini.requests if r.method == "generateContent"]


async def until(check: Any, what: str, within: float = 15) -> None:
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - the store and the fake have no events
            await asyncio.sleep(0.05)


async def shows(ix: FakeInteraction, text: str, within: float = 15) -> MessageRecord:
    """The interaction's message once its content says `text`."""
    await ix.wait_ack(3)
    await ix.fake._wait(
        lambda: ix.original_message is not None and text in ix.original_message.content,
        within,
        f"{text!r} in the response to {ix.record.name!r}",
    )
    message = ix.original_message
    assert message is not None
    return message


async def result_in(ix: FakeInteraction, within: float = 20) -> MessageRecord:
    await ix.wait_ack(3)
    await ix.fake._wait(
        lambda: ix.original_message is not None and is_result(ix.original_message),
        within,
        f"a result in the response to {ix.record.name!r}",
    )
    message = ix.original_message
    assert message is not None
    return message


def timestamps(text: str) -> list[int]:
    return [int(t) for t in re.findall(r"<t:(\d+):R>", text)]


def variant_messages(fake: FakeDiscord) -> dict[str, MessageRecord]:
    """A /batch's per-variant messages by value ("**product.color = red**…")."""
    out = {}
    for msg in fake.messages_in("general"):
        head = msg.content.split("**")[1] if msg.content.startswith("**") else ""
        if " = " in head:
            out[head.split(" = ", 1)[1]] = msg
    return out


# ------------------------------------------------------------------------------- one request


async def test_an_economy_imagine_waits_in_the_batch_queue_then_posts_like_any_result(
    eco: BotHarness,
) -> None:
    fake, gemini = eco.discord, eco.gemini
    gemini.batches.script_next(pending=1.0, running=0.3)
    alice = fake.user("alice")
    before = time.time()
    ix = await alice.slash("imagine", prompt="a lighthouse at dusk", economy=True)
    waiting = await shows(ix, "Waiting in Gemini's batch queue")
    submitted, expected = timestamps(waiting.content)
    assert before - 1 <= submitted <= time.time() + 1
    assert expected - submitted == pytest.approx(24 * 3600, abs=2)  # "expected by"
    assert "expected by" in waiting.content and "half price" in waiting.content
    assert waiting.button_labels == ["Cancel"]

    result = await result_in(ix)
    assert result.id == waiting.id  # in the same message, like any result
    assert set(result.button_labels) >= RESULT_BUTTONS
    assert fake_mark_of(image_of(fake, result)) == gemini.issued[-1].mark
    assert prompt_json(fake, result)["subject"] == "a lighthouse at dusk"
    assert "Economy" in fields(result)["Notes"]
    # Through the Batch API only: one batch of one request, no interactive call.
    assert interactive_calls(gemini) == []
    (batch,) = gemini.batches.created
    assert batch.model == PRO and len(batch.requests) == 1
    assert batch.requests[0].spec is not None
    assert batch.requests[0].spec["subject"] == "a lighthouse at dusk"

    # Charged at the batch price; /usage shows the saving.
    bot = eco.bot
    assert bot is not None
    gen = await bot.store.get_generation(generation_id(result))
    assert gen is not None and gen.status == "done"
    full = estimate_cost(PRO, "1K", input_tokens=gen.prompt_tokens)
    assert gen.cost == pytest.approx(full / 2)
    assert fields(result)["Est. cost"] == f"${gen.cost:.3f}"
    used = await bot.store.reserved_today(user_id=alice.id, guild_id=fake.guild_id)
    assert used.images == 1 and used.cost == pytest.approx(gen.cost) and used.pending_images == 0
    usage = await (await alice.slash("usage")).original()
    assert "Economy (Gemini's Batch API): 1 image" in usage.content
    assert f"saved ${full - gen.cost:.3f}" in usage.content
    assert await bot.store.open_economy_batches() == []
    assert await bot.store.open_jobs() == []


async def test_once_gemini_runs_the_batch_cancel_is_gone(eco: BotHarness) -> None:
    fake, gemini = eco.discord, eco.gemini
    gemini.batches.script_next(pending=0.0, running=1.5)
    ix = await fake.user("alice").slash("imagine", prompt="a kite", economy=True)
    running = await shows(ix, "Gemini is working on it")
    assert "too late to cancel" in running.content and running.button_labels == []
    assert len(timestamps(running.content)) == 2
    await result_in(ix)


async def test_cancel_before_the_batch_starts(eco: BotHarness) -> None:
    fake, gemini = eco.discord, eco.gemini
    gemini.batches.script_next(hold=True)
    alice = fake.user("alice")
    ix = await alice.slash("imagine", prompt="a kite", economy=True)
    waiting = await shows(ix, "Waiting in Gemini's batch queue")
    gid = generation_id(waiting)
    bob = fake.user("bob")
    refused = await (await bob.click(waiting, "Cancel")).original()
    assert "Only the person" in refused.content
    answer = await (await alice.click(waiting, "Cancel")).original()
    assert answer.content == "Cancelled. Nothing was charged."
    await shows(ix, "🚫 Cancelled. Nothing was charged.")
    # The whole batch was withdrawn, so Gemini was told to drop it.
    (batch,) = gemini.batches.created
    assert batch.state == "CANCELLED" and gemini.issued == []
    bot = eco.bot
    assert bot is not None
    await until(lambda: _no_open_batches(bot), "the batch to end")
    used = await bot.store.reserved_today(user_id=alice.id, guild_id=fake.guild_id)
    assert used.images == 0 and used.pending_images == 0 and used.cost == 0
    gen = await bot.store.get_generation(gid)
    assert gen is not None and gen.status == "cancelled"


async def _no_open_batches(bot: Any) -> bool:
    return await bot.store.open_economy_batches() == []


async def test_an_expired_batch_tells_the_user_and_charges_nothing(eco: BotHarness) -> None:
    fake, gemini = eco.discord, eco.gemini
    gemini.batches.script_next(pending=0.3, outcome="EXPIRED")
    alice = fake.user("alice")
    ix = await alice.slash("imagine", prompt="a kite", economy=True)
    expired = await shows(ix, "expired")
    gid = generation_id(expired)
    assert expired.content.startswith("⌛") and "Nothing was charged" in expired.content
    assert expired.button_labels == ["Retry", "Retry in economy"]
    assert not expired.files
    bot = eco.bot
    assert bot is not None
    gen = await bot.store.get_generation(gid)
    assert gen is not None and gen.status == "failed" and gen.cost == 0
    assert gen.error_kind == "expired"
    used = await bot.store.reserved_today(user_id=alice.id, guild_id=fake.guild_id)
    assert used.images == 0 and used.pending_images == 0 and used.cost == 0
    assert interactive_calls(gemini) == []

    # Retry in economy sends it through the Batch API again, in the same message.
    again = await alice.click(expired, "Retry in economy")
    result = await result_in(again)
    assert result.id == expired.id
    assert len(gemini.batches.created) == 2 and interactive_calls(gemini) == []


async def test_a_restart_while_waiting_still_posts(eco: BotHarness) -> None:
    fake, gemini = eco.discord, eco.gemini
    gemini.batches.script_next(hold=True)
    alice = fake.user("alice")
    ix = await alice.slash("imagine", prompt="a lighthouse", economy=True)
    waiting = await shows(ix, "Waiting in Gemini's batch queue")
    (batch,) = gemini.batches.created
    gets_before = batch.gets

    await eco.restart()
    gemini.batches.release()
    result = await result_in(ix)
    assert result.id == waiting.id
    assert fake_mark_of(image_of(fake, result)) == gemini.issued[-1].mark
    # The restarted bot polled the same batch (by its stored name): nothing resubmitted.
    assert len(gemini.batches.created) == 1 and batch.gets > gets_before
    assert interactive_calls(gemini) == []


# ------------------------------------------------------------------------------- /batch


async def test_an_economy_batch_posts_every_image_and_the_contact_sheet(eco: BotHarness) -> None:
    fake, gemini = eco.discord, eco.gemini
    gemini.batches.script_next(pending=0.5, running=0.2, failures={2: "prompt_blocked"})
    alice = fake.user("alice")
    ix = await alice.slash(
        "batch",
        field="product.color",
        values=", ".join(COLORS),
        template="product_shot",
        vars="product=running shoe",
        economy=True,
    )
    waiting = await shows(ix, "Waiting in Gemini's batch queue")
    assert "Economy batch on `product.color` (4 images" in waiting.content
    assert waiting.button_labels == ["Cancel"]
    original = waiting.id
    sheet = await fake.wait_for_message(
        predicate=lambda m: m.id == original and m.content.startswith("🗂️"), timeout=30
    )
    # One Gemini batch of the four variants, identical but for the colour.
    (batch,) = gemini.batches.created
    assert len(batch.requests) == 4 and interactive_calls(gemini) == []
    assert [r.spec["product"]["color"] for r in batch.requests if r.spec] == COLORS
    blocked = COLORS[2]

    assert "3 of 4 images" in sheet.content
    assert sheet.attachment_names == ["batch-contact-sheet.jpg"]
    assert f"**{blocked}** — 🚫 blocked" in sheet.content

    variants = variant_messages(fake)
    assert sorted(variants) == sorted(COLORS)
    for color in COLORS:
        msg = variants[color]
        if color == blocked:
            assert "🚫" in msg.content and not msg.files
            assert msg.button_labels == ["Retry", "Retry in economy"]
        else:
            assert set(msg.button_labels) >= RESULT_BUTTONS, msg.button_labels
            assert fake_mark_of(image_of(fake, msg)) in {i.mark for i in gemini.issued}
            assert str(msg.id) in sheet.content  # the sheet links each value to its image

    bot = eco.bot
    assert bot is not None
    gens = await bot.store.recent_generations(alice.id, limit=10)
    assert sorted(g.status for g in gens) == ["blocked", "done", "done", "done"]
    used = await bot.store.reserved_today(user_id=alice.id, guild_id=fake.guild_id)
    assert used.images == 3 and used.pending_images == 0  # the block is not charged
    assert await bot.store.open_jobs() == []

    # Retry (interactive, now) under the blocked variant runs at once, in that message.
    retried = await alice.click(variants[blocked], "Retry")
    await fake._wait(lambda: is_result(fake.state.messages[variants[blocked].id]), 20, "retry")
    assert retried.acked and len(interactive_calls(gemini)) == 1


async def test_cancel_an_economy_batch_before_it_starts(eco: BotHarness) -> None:
    fake, gemini = eco.discord, eco.gemini
    gemini.batches.script_next(hold=True)
    alice = fake.user("alice")
    ix = await alice.slash(
        "batch", field="subject.color", values="red, blue", json='{"subject": {"color": "x"}}',
        economy=True,
    )  # fmt: skip
    waiting = await shows(ix, "Waiting in Gemini's batch queue")
    answer = await (await alice.click(waiting, "Cancel")).original()
    assert answer.content == "Cancelled 2 images; nothing was charged for them."
    sheet = await fake.wait_for_message(
        predicate=lambda m: m.id == waiting.id and m.content.startswith("🗂️"), timeout=15
    )
    assert "0 of 2 images" in sheet.content and "cancelled" in sheet.content
    assert gemini.batches.created[0].state == "CANCELLED" and gemini.issued == []


# ------------------------------------------------------------------------------- defaults


async def test_the_settings_default_sends_requests_to_the_batch_api_but_chains_stay_interactive(
    eco: BotHarness,
) -> None:
    fake, gemini = eco.discord, eco.gemini
    alice = fake.user("alice")
    saved = await (await alice.slash("settings", economy=True)).original()
    assert "**Economy**: on _(yours)_" in saved.content
    assert "Chain steps" in saved.content and "interactively" in saved.content

    result = await result_in(await alice.slash("imagine", prompt="a teapot"))
    assert len(gemini.batches.created) == 1 and interactive_calls(gemini) == []

    # Refining it is a chain step: interactive, whatever the default.
    await alice.reply(result, "make it blue")
    await fake.wait_for_message(predicate=is_result, timeout=20)
    assert len(interactive_calls(gemini)) == 1 and len(gemini.batches.created) == 1

    # economy:false on the command wins over the default.
    await result_in(await alice.slash("imagine", prompt="a cup", economy=False))
    assert len(interactive_calls(gemini)) == 2 and len(gemini.batches.created) == 1


async def test_a_result_after_the_token_expired_comes_as_a_new_message_that_pings(
    eco: BotHarness,
) -> None:
    fake, gemini = eco.discord, eco.gemini
    gemini.batches.script_next(hold=True)
    alice = fake.user("alice")
    ix = await alice.slash("imagine", prompt="an overnight render", economy=True)
    waiting = await shows(ix, "Waiting in Gemini's batch queue")
    fake.advance_clock(3 * 3600)  # hours later: the interaction's token is long gone
    gemini.batches.release()
    result = await fake.wait_for_message(predicate=is_result, timeout=20)
    assert result.id != waiting.id and not result.ephemeral
    assert alice.mention in result.content and "economy request is ready" in result.content
    assert set(result.button_labels) >= RESULT_BUTTONS
    await fake._wait(lambda: fake.message(waiting.id).deleted, 5, "the waiting message to go")


async def test_prompt_and_template_use_take_economy_too(eco: BotHarness) -> None:
    fake, gemini = eco.discord, eco.gemini
    alice = fake.user("alice")
    # /prompt with no json opens the editor; the spec from it goes economy.
    ix = await alice.slash("prompt", economy=True)
    assert await ix.wait_ack(3) == 9
    submitted = await alice.submit_modal(
        ix, {"prompt_json": json.dumps({"task": "generate_image", "subject": "a teapot"})}
    )
    await result_in(submitted)
    await result_in(
        await alice.slash(
            "template use", name="product_shot", vars="product=mug", economy=True
        )
    )
    assert len(gemini.batches.created) == 2 and interactive_calls(gemini) == []
    subjects = [b.requests[0].spec for b in gemini.batches.created]
    assert subjects[0] is not None and subjects[0]["subject"] == "a teapot"
    assert subjects[1] is not None and subjects[1]["product"]["name"] == "mug"
