"""/batch end to end: minimal-diff variants, one progress message, a contact sheet labelled by
value plus each image with its buttons, per-variant failures, limits refused before any charge,
and fairness to other users."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from typing import Any

from PIL import Image

from tests.e2e.harness import BotHarness
from tests.fakes.discord_driver import FakeInteraction
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import MessageRecord
from tests.fakes.gemini import FakeRequest, fake_mark_of

COLORS = ["red", "blue", "green", "yellow"]
RESULT_BUTTONS = {"Reroll", "Refine", "Upscale 2K", "Upscale 4K", "Prompt", "Delete"}


async def _contact_sheet(fake: FakeDiscord, ix: FakeInteraction) -> MessageRecord:
    """The batch's original response once it has become the contact sheet."""
    await ix.wait_ack(timeout=3)
    original = ix.record.original_id
    return await fake.wait_for_message(
        predicate=lambda m: m.id == original and m.content.startswith("🗂️"),
        timeout=30,
    )


def _variant_messages(ix: FakeInteraction) -> dict[str, MessageRecord]:
    """The batch's per-variant messages by value ("**product.color = red**…")."""
    out = {}
    for msg in ix.followups:
        head = msg.content.split("**")[1] if msg.content.startswith("**") else ""
        if " = " in head:
            out[head.split(" = ", 1)[1]] = msg
    return out


async def _until(condition: Callable[[], bool], timeout: float = 5) -> None:  # noqa: ASYNC109
    """Poll in-memory state (the fake's in-flight count): it has no event to await."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def _load(bot: Any, user_id: int) -> tuple[int, int]:
    """(running, queued) jobs of a user, as the database has them."""
    jobs = [j for j in await bot.store.open_jobs() if j.user_id == user_id]
    return (
        sum(j.status == "running" for j in jobs),
        sum(j.status == "queued" for j in jobs),
    )


async def _until_load(bot: Any, user_id: int, load: tuple[int, int], timeout: float = 5) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while await _load(bot, user_id) != load:  # noqa: ASYNC110 - the database has no event
            await asyncio.sleep(0.02)


def _masked_text(request: FakeRequest, value: str) -> str:
    """The JSON text part with the swapped value blanked (as a whole JSON string)."""
    text = request.texts[0]
    token = json.dumps(value)
    assert text.count(token) == 1, (value, text)
    return text.replace(token, '"§"')


def _body_without_text(request: FakeRequest) -> dict[str, Any]:
    body = json.loads(json.dumps(request.normalized))
    for content in body.get("contents") or []:
        for part in content.get("parts") or []:
            part.pop("text", None)
    return body


# ------------------------------------------------------------------------------- the batch


async def test_four_values_four_requests_that_differ_only_in_the_field(
    bot_harness: BotHarness,
) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    ix = await alice.slash(
        "batch",
        field="product.color",
        values="red, blue, green, yellow",
        template="product_shot",
        vars="product=running shoe",
        aspect="4:3",
    )
    assert await ix.wait_ack(timeout=3) == 5
    sheet_msg = await _contact_sheet(fake, ix)

    # The model got four requests, identical but for product.color.
    assert len(gemini.requests) == 4
    by_color = {r.spec["product"]["color"]: r for r in gemini.requests if r.spec}
    assert sorted(by_color) == sorted(COLORS)
    assert len({_masked_text(by_color[c], c) for c in COLORS}) == 1
    assert len({json.dumps(_body_without_text(r), sort_keys=True) for r in gemini.requests}) == 1
    assert all(r.spec and r.spec["product"]["name"] == "running shoe" for r in gemini.requests)
    assert all(r.image_config.get("aspectRatio") == "4:3" for r in gemini.requests)

    # One progress message (the original response), edited as the batch went.
    progress = [e.content for e in sheet_msg.edits if e.content.startswith("⏳ Batch")]
    assert progress, [e.content for e in sheet_msg.edits]
    assert "0 of 4 finished" in progress[0]
    assert not any(m.content.startswith("⏳") for m in ix.followups)

    # The contact sheet: labelled by value, in order, one attachment.
    assert sheet_msg.attachment_names == ["batch-contact-sheet.jpg"]
    assert "4 of 4 images" in sheet_msg.content
    order = sheet_msg.content.split("left to right:", 1)[1]
    positions = [order.index(c) for c in COLORS]
    assert positions == sorted(positions)
    sheet = Image.open(io.BytesIO(fake.attachment_bytes(sheet_msg.attachments[0])))
    assert sheet.width > sheet.height  # 4 landscape tiles in a grid

    # Then each image in its own message, with its own buttons.
    variants = _variant_messages(ix)
    assert sorted(variants) == sorted(COLORS)
    issued = {i.mark for i in gemini.issued}
    for color, msg in variants.items():
        assert len(msg.files) <= 10
        image = next(f for f in msg.files if f.filename.startswith("nano-banana"))
        assert fake_mark_of(fake.attachment_bytes(image)) in issued
        assert set(msg.button_labels) >= RESULT_BUTTONS, msg.button_labels
        assert f"[{color}](https://discord.com/channels/" in sheet_msg.content
        assert str(msg.id) in sheet_msg.content  # the sheet links each value to its image

    bot = bot_harness.bot
    assert bot is not None
    gens = await bot.store.recent_generations(alice.id, limit=10)
    assert len({g.batch_id for g in gens}) == 1 and all(g.kind == "batch" for g in gens)
    assert all(g.status == "done" for g in gens)


async def test_one_blocked_variant_is_reported_and_the_rest_arrive(
    bot_harness: BotHarness,
) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    # Whichever request arrives first is blocked; the test then reads which value it carried.
    gemini.fail_next("prompt_blocked", reason="SAFETY")
    alice = fake.user("alice")
    ix = await alice.slash(
        "batch",
        field="subject.color",
        values="red, blue, green, yellow",
        json='{"task": "generate_image", "subject": {"what": "a toy car", "color": "red"}}',
    )
    sheet_msg = await _contact_sheet(fake, ix)
    assert len(gemini.requests) == 4  # a block is not retried
    blocked = [r for r in gemini.requests if r.fault]
    assert len(blocked) == 1
    spec = blocked[0].spec
    assert spec is not None
    bad = spec["subject"]["color"]
    good = [c for c in COLORS if c != bad]

    assert "3 of 4 images" in sheet_msg.content
    assert sheet_msg.attachment_names == ["batch-contact-sheet.jpg"]
    listed = sheet_msg.content.split("left to right:", 1)[1].split("Not made:", 1)
    assert all(c in listed[0] for c in good) and bad not in listed[0].split("\n")[0]
    assert f"**{bad}** — 🚫 blocked" in listed[1]

    await ix.wait_followups(4)
    variants = _variant_messages(ix)
    assert sorted(variants) == sorted(COLORS)
    assert "🚫" in variants[bad].content and variants[bad].button_labels == ["Retry"]
    assert not variants[bad].files
    for color in good:
        assert set(variants[color].button_labels) >= RESULT_BUTTONS
        assert any(f.filename.startswith("nano-banana") for f in variants[color].files)

    bot = bot_harness.bot
    assert bot is not None
    usage = await bot.store.reserved_today(user_id=alice.id, guild_id=fake.guild_id)
    assert usage.images == 3 and usage.pending_images == 0  # the block is not charged


# ------------------------------------------------------------------------------- limits


async def test_a_batch_over_the_queue_limit_is_refused_before_anything_is_charged(
    harness: BotHarness,
) -> None:
    await harness.start(max_queued_per_user=3)
    fake, gemini = harness.discord, harness.gemini
    alice = fake.user("alice")
    ix = await alice.slash(
        "batch", field="product.color", values=", ".join(COLORS), template="product_shot"
    )
    msg = await ix.original(timeout=5)
    assert msg.ephemeral
    assert "4 images" in msg.content and "3 more" in msg.content
    assert "Nothing was queued or charged" in msg.content
    assert not ix.followups
    assert gemini.requests == []
    bot = harness.bot
    assert bot is not None
    assert await bot.store.recent_generations(alice.id) == []
    usage = await bot.store.reserved_today(user_id=alice.id, guild_id=fake.guild_id)
    assert (usage.images, usage.cost, usage.pending_images) == (0, 0.0, 0)

    # Three fit.
    ok = await alice.slash(
        "batch", field="product.color", values="red, blue, green", template="product_shot"
    )
    done = await _contact_sheet(fake, ok)
    assert "3 of 3 images" in done.content and len(gemini.requests) == 3


async def test_a_batch_counts_what_is_already_queued_and_the_daily_quota(
    harness: BotHarness,
) -> None:
    await harness.start(
        max_queued_per_user=4,
        max_running_per_user=1,
        max_concurrent_jobs=1,
        default_daily_images_per_user=4,
    )
    fake, gemini = harness.discord, harness.gemini
    gemini.fail_next("slow", delay=1.5)
    alice = fake.user("alice")
    first = await alice.slash("imagine", prompt="a lighthouse")
    await first.wait_ack()
    second = await alice.slash("imagine", prompt="a harbour")
    await second.wait_ack()
    bot = harness.bot
    assert bot is not None
    await _until_load(bot, alice.id, (1, 1))

    full = await alice.slash(
        "batch", field="product.color", values=", ".join(COLORS), template="product_shot"
    )
    refused = await full.original(timeout=5)
    assert refused.ephemeral and "only 3 more" in refused.content

    # Room in the queue (1 + 3 <= 4) but over the daily images (2 reserved + 3 > 4)
    quota = await alice.slash(
        "batch", field="product.color", values="red, blue, green", template="product_shot"
    )
    over = await quota.original(timeout=5)
    assert over.ephemeral and "daily limit of 4 images" in over.content, over.content
    assert len([g for g in await bot.store.recent_generations(alice.id) if g.batch_id]) == 0
    assert len(gemini.requests) <= 2


async def test_a_batch_is_fair_to_other_users(harness: BotHarness) -> None:
    await harness.start(max_concurrent_jobs=1, max_running_per_user=1)
    fake, gemini = harness.discord, harness.gemini
    gemini.latency = 0.4
    bot = harness.bot
    assert bot is not None
    alice, bob = fake.user("alice"), fake.user("bob")
    batch = await alice.slash(
        "batch", field="product.color", values=", ".join(COLORS), template="product_shot"
    )
    await _until(lambda: gemini.in_flight == 1)  # alice's first variant is being made
    assert await _load(bot, alice.id) == (1, 3)
    ix = await bob.slash("imagine", prompt="a blue whale")
    await _until_load(bot, bob.id, (0, 1))
    await _contact_sheet(fake, batch)
    await fake.wait_for_message(
        predicate=lambda m: m.id == ix.record.original_id and bool(m.embeds)
    )
    texts = [json.dumps(r.spec) for r in gemini.requests]
    # Round-robin: bob's one job runs next, not after alice's three waiting variants.
    assert "blue whale" in texts[1], texts
    assert gemini.max_in_flight == 1


# ------------------------------------------------------------------------------- input errors


async def test_bad_batches_are_refused_with_a_clear_reason(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")

    async def refusal(**options: Any) -> str:
        ix = await alice.slash("batch", **options)
        msg = await ix.original(timeout=5)
        assert msg.ephemeral
        return msg.content

    spec = '{"task": "generate_image", "subject": "a kite", "style": "watercolour"}'
    assert "2–10 values" in await refusal(field="style", values="red", json=spec)
    assert "twice" in await refusal(field="style", values="ink, Ink", json=spec)
    assert "one of them" in await refusal(field="style", values="a, b")
    assert "one of them" in await refusal(
        field="style", values="a, b", json=spec, template="product_shot"
    )
    assert "cannot go through it" in await refusal(field="subject.color", values="a, b", json=spec)
    assert "vars" in await refusal(field="style", values="a, b", json=spec, vars="x=1")
    aspect = await refusal(field="output_format.aspect_ratio", values="1:1, 1:8", json=spec)
    assert "with output_format.aspect_ratio = 1:8" in aspect and "not available" in aspect
    assert gemini.requests == []


async def test_a_new_field_is_added_and_said_so(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    ix = await alice.slash(
        "batch",
        field="lighting.mood",
        values="dawn, dusk",
        json='{"task": "generate_image", "subject": "a kite"}',
    )
    sheet = await _contact_sheet(fake, ix)
    assert "`lighting.mood` was not in the spec, so it was added." in sheet.content
    assert sorted(r.spec["lighting"]["mood"] for r in gemini.requests if r.spec) == ["dawn", "dusk"]


async def test_a_private_batch_stays_private(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    settings = await alice.slash("settings", private=True)
    await settings.wait_ack()
    await settings.original()
    ix = await alice.slash(
        "batch",
        field="subject",
        values="a fox, an owl",
        json='{"task": "generate_image", "subject": "a fox"}',
    )
    sheet = await _contact_sheet(fake, ix)
    assert sheet.ephemeral and sheet.visible_to == alice.id
    assert "2 of 2 images" in sheet.content
    assert "](https://discord.com" not in sheet.content  # no links to messages others can't see
    await ix.wait_followups(2)
    variants = _variant_messages(ix)
    assert sorted(variants) == ["a fox", "an owl"]
    assert all(m.ephemeral and m.visible_to == alice.id for m in variants.values())
    assert not [m for m in fake.messages_in("general") if m.author.id == fake.bot_user.id]


async def test_cancel_batch_stops_every_waiting_variant_at_once(harness: BotHarness) -> None:
    await harness.start(max_concurrent_jobs=1, max_running_per_user=1)
    fake, gemini = harness.discord, harness.gemini
    gemini.latency = 0.6
    alice, bob = fake.user("alice"), fake.user("bob")
    batch = await alice.slash(
        "batch", field="product.color", values=", ".join(COLORS), template="product_shot"
    )
    await _until(lambda: gemini.in_flight == 1)  # the first variant is being made
    progress = await fake.wait_for_message(
        predicate=lambda m: m.id == batch.record.original_id and "Cancel batch" in m.button_labels,
        since=0,
        timeout=5,
    )
    refused = await bob.click(progress, "Cancel batch")  # not his
    assert "Only the person who started this batch" in (await refused.original()).content
    ix = await alice.click(progress, "Cancel batch")
    answer = await ix.original()
    assert answer.ephemeral and "Cancelled 3 waiting images" in answer.content, answer.content
    assert "1 already being made will still arrive" in answer.content
    sheet = await _contact_sheet(fake, batch)
    assert "1 of 4 images" in sheet.content and sheet.content.count("cancelled") == 3
    assert sheet.buttons == []
    assert len(gemini.requests) == 1  # the cancelled variants never reached Gemini
    bot = harness.bot
    assert bot is not None
    usage = await bot.store.reserved_today(user_id=alice.id, guild_id=fake.guild_id)
    assert (usage.images, usage.pending_images) == (1, 0)  # only the made one is charged


async def test_a_batch_interrupted_by_a_restart_resumes_and_its_contact_sheet_arrives(
    harness: BotHarness,
) -> None:
    await harness.start(max_concurrent_jobs=1, max_running_per_user=1)
    fake, gemini = harness.discord, harness.gemini
    gemini.latency = 30
    alice = fake.user("alice")
    batch = await alice.slash(
        "batch", field="product.color", values=", ".join(COLORS), template="product_shot"
    )
    await _until(lambda: gemini.in_flight == 1, timeout=10)  # the first variant is at Gemini
    bot = harness.bot
    assert bot is not None
    jobs = await bot.store.open_jobs()
    assert len(jobs) == 4 and all(j.payload["batch"]["field"] == "product.color" for j in jobs)
    gemini.latency = 0
    await harness.restart(max_concurrent_jobs=1, max_running_per_user=1)
    sheet = await _contact_sheet(fake, batch)
    assert "4 of 4 images" in sheet.content, sheet.content
    for color in COLORS:
        assert color in sheet.content
    assert sheet.attachments and sheet.attachments[0].filename.startswith("batch-contact-sheet")
    restarted = harness.bot
    assert restarted is not None and restarted is not bot
    gens = [g for g in await restarted.store.recent_generations(alice.id) if g.batch_id]
    assert len(gens) == 4 and all(g.status == "done" for g in gens)
