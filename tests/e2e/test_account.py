"""/settings, /usage, /history and /quota, driven end to end like a user would.

The real bot runs against the loopback fake Discord and fake Gemini (tests/e2e/conftest.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.harness import BotHarness
from tests.fakes.discord_driver import FakeUser
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import MessageRecord

RESET = re.compile(r"resets <t:\d+:R>")


def is_result(m: MessageRecord) -> bool:
    return bool(m.embeds) and any(f.filename.startswith("nano-banana") for f in m.files)


def generation_id(m: MessageRecord) -> int:
    footer = ((m.embed or {}).get("footer") or {}).get("text") or ""
    found = re.search(r"#(\d+)", footer)
    assert found, f"no generation id in {footer!r}"
    return int(found.group(1))


async def private_answer(fake: FakeDiscord) -> MessageRecord:
    """The next ephemeral bot message after the last user action (an answer, a refusal)."""
    return await fake.wait_for_message(ephemeral=True, timeout=10)


async def until(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    """Wait for a condition (checked every 20 ms) or fail saying what did not happen."""
    try:
        async with asyncio.timeout(seconds):
            # The fakes have no event for this (e.g. "Gemini got a request"): poll.
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def imagine(fake: FakeDiscord, user: FakeUser, prompt: str, **options: Any) -> MessageRecord:
    await user.slash("imagine", prompt=prompt, **options)
    return await fake.wait_for_message(predicate=is_result, timeout=20)


async def settings_text(fake: FakeDiscord, user: FakeUser, **options: Any) -> str:
    ix = await user.slash("settings", **options)
    assert await ix.wait_ack() == 4
    msg = await ix.original()
    assert msg.ephemeral and msg.visible_to == user.id
    return msg.content


def line_of(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"**{name}**"))


# ---------------------------------------------------------------------------------- settings


async def test_settings_show_values_and_where_they_come_from(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    shown = await settings_text(fake, alice)
    assert "Nano Banana Pro" in line_of(shown, "Model") and "built-in" in line_of(shown, "Model")
    assert "1K" in line_of(shown, "Size") and "built-in" in line_of(shown, "Size")
    assert "off" in line_of(shown, "Private")

    # A server default (set by admins in the store) shows as "server"; the user's own wins.
    assert bot_harness.bot is not None
    await bot_harness.bot.store.update_guild_settings(fake.guild_id, aspect="16:9")
    saved = await settings_text(fake, alice, model="flash", threads=False)
    assert saved.startswith("Saved.")
    assert "Nano Banana 2" in line_of(saved, "Model") and "(yours)" in line_of(saved, "Model")
    assert "16:9" in line_of(saved, "Aspect") and "(server)" in line_of(saved, "Aspect")
    assert "off" in line_of(saved, "Threads") and "(yours)" in line_of(saved, "Threads")
    assert "(built-in)" in line_of(saved, "Size")

    # Bob's settings are his own.
    bob_view = await settings_text(fake, fake.user("bob"))
    assert "Nano Banana Pro" in line_of(bob_view, "Model")
    assert "(server)" in line_of(bob_view, "Aspect")


async def test_settings_are_applied_to_the_next_imagine(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    await settings_text(fake, alice, model="flash", size="2K", aspect="4:3")
    result = await imagine(fake, alice, "a lighthouse at dusk")
    request = gemini.requests[-1]
    assert request.model == "gemini-3.1-flash-image"
    assert request.image_config.get("imageSize") == "2K"
    assert request.image_config.get("aspectRatio") == "4:3"
    assert "Nano Banana 2" in result.text
    # An explicit option still beats the saved default.
    await imagine(fake, alice, "a lighthouse at noon", size="1K")
    assert gemini.requests[-1].image_config.get("imageSize") == "1K"
    assert gemini.requests[-1].model == "gemini-3.1-flash-image"


async def test_settings_survive_a_restart(harness: BotHarness) -> None:
    await harness.start()
    fake = harness.discord
    alice = fake.user("alice")
    await settings_text(fake, alice, model="flash", size="512", private=False)
    await harness.restart()
    shown = await settings_text(fake, alice)
    assert "Nano Banana 2" in line_of(shown, "Model") and "(yours)" in line_of(shown, "Model")
    assert "512" in line_of(shown, "Size") and "(yours)" in line_of(shown, "Size")
    await imagine(fake, alice, "a paper boat")
    request = harness.gemini.requests[-1]
    assert request.model == "gemini-3.1-flash-image"
    assert request.image_config.get("imageSize") == "512"


async def test_settings_refuse_a_combination_the_model_lacks(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    refused = await settings_text(fake, alice, size="512")  # default model: Pro
    assert "Nano Banana Pro" in refused and "512" in refused and not refused.startswith("Saved")
    refused = await settings_text(fake, alice, model="pro", aspect="1:8")
    assert "1:8" in refused and not refused.startswith("Saved")
    # Saved on flash, then switching the model alone to Pro would leave an impossible pair.
    await settings_text(fake, alice, model="flash", size="512")
    refused = await settings_text(fake, alice, model="pro")
    assert "512" in refused and not refused.startswith("Saved")
    shown = await settings_text(fake, alice)
    assert "Nano Banana 2" in line_of(shown, "Model") and "512" in line_of(shown, "Size")
    # Changing both at once is fine.
    saved = await settings_text(fake, alice, model="pro", size="2K")
    assert saved.startswith("Saved") and "Nano Banana Pro" in line_of(saved, "Model")

    # A server default the chosen model lacks is not the user's doing: saved, with a note,
    # and requests use the model's own default instead.
    bob = fake.user("bob")
    assert bot_harness.bot is not None
    await bot_harness.bot.store.update_guild_settings(fake.guild_id, size="4K")
    saved = await settings_text(fake, bob, model="lite")
    assert saved.startswith("Saved") and "(server)" in line_of(saved, "Size")
    assert "Nano Banana 2 Lite has no size 4K" in saved and "use 1K" in saved
    await imagine(fake, bob, "a small cat")
    assert bot_harness.gemini.requests[-1].model == "gemini-3.1-flash-lite-image"
    assert bot_harness.gemini.requests[-1].image_config.get("imageSize") == "1K"


async def test_private_mode_keeps_results_out_of_the_channel(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice, bob = fake.user("alice"), fake.user("bob")
    await settings_text(fake, alice, private=True)
    before = {m.id for m in fake.messages_in("general")}
    ix = await alice.slash("imagine", prompt="a secret garden")
    result = await fake.wait_for_message(predicate=is_result, timeout=20)
    assert result.ephemeral and result.visible_to == alice.id
    assert result in alice.ephemeral_messages()
    assert result not in bob.ephemeral_messages()
    assert ix.original_message is not None and ix.original_message.ephemeral
    # Nothing new in the channel's history, at any point (progress included).
    assert {m.id for m in fake.messages_in("general")} == before
    assert all(not m.ephemeral for m in fake.messages_in("general"))
    # Every command applies it: a /batch's variants and contact sheet are private too.
    ix = await alice.slash(
        "batch", field="subject", values="red kite, blue kite", json='{"subject": "a kite"}'
    )
    sheet = await fake.wait_for_message(
        predicate=lambda m: any(f.filename.startswith("batch-contact-sheet") for f in m.files),
        timeout=30,
    )
    assert sheet.ephemeral and sheet.visible_to == alice.id
    variants = [m for m in ix.followups if is_result(m)]
    assert len(variants) == 2 and all(m.visible_to == alice.id for m in variants)
    assert {m.id for m in fake.messages_in("general")} == before
    # An explicit private:False on one command still posts publicly.
    public = await imagine(fake, alice, "a public garden", private=False)
    assert not public.ephemeral and public.id in {m.id for m in fake.messages_in("general")}


async def test_threads_off_refines_in_the_channel(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    await settings_text(fake, alice, threads=False)
    result = await imagine(fake, alice, "a teapot")
    await alice.reply(result, "make it blue")
    step = await fake.wait_for_message(predicate=is_result, timeout=20)
    assert step.channel_id == fake.channel("general")
    assert not fake.threads
    assert len(gemini.requests) == 2 and "make it blue" in str(gemini.requests[-1].body)


# ---------------------------------------------------------------------------------- usage


async def test_usage_counts_images_and_cost_per_model(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    await imagine(fake, alice, "a pro image")
    await imagine(fake, alice, "a flash image", model="flash", size="2K")
    ix = await alice.slash("usage")
    text = (await ix.original()).content
    lines = text.splitlines()
    at = lines.index("__Today__: 2 images, $0.235")  # 0.134 + 0.101
    assert set(lines[at + 1 : at + 3]) == {
        "• Nano Banana Pro: 1 image, $0.134",
        "• Nano Banana 2: 1 image, $0.101",
    }
    assert "__This month__: 2 images, $0.235" in lines
    assert "Server" not in text  # not an admin
    assert "limit" not in text  # no quota set

    # Last month's images are not this month's.
    assert bot_harness.bot is not None
    first = dt.datetime.now(dt.UTC).date().replace(day=1)
    last_month = (first - dt.timedelta(days=1)).isoformat()
    await bot_harness.bot.store.record_usage(
        user_id=alice.id, guild_id=fake.guild_id, model="gemini-3-pro-image", images=5,
        cost=0.67, day=last_month,
    )
    ix = await alice.slash("usage")
    assert "__This month__: 2 images, $0.235" in (await ix.original()).content


async def test_usage_of_someone_else_is_for_admins(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice, bob, admin = fake.user("alice"), fake.user("bob"), fake.user("admin")
    await imagine(fake, alice, "alice's image")
    await imagine(fake, bob, "bob's image", model="flash")

    ix = await bob.slash("usage", user=alice)
    refused = (await ix.original()).content
    assert "admin" in refused.lower() and "$0.134" not in refused

    ix = await admin.slash("usage", user=alice)
    text = (await ix.original()).content
    assert (await ix.original()).ephemeral
    lines = text.splitlines()
    assert "alice" in lines[0].lower()
    assert "__Today__: 1 image, $0.134" in lines
    assert "__Server today__: 2 images, $0.201" in lines  # 0.134 + 0.067
    assert "__Server this month__: 2 images, $0.201" in lines
    # Without user, an admin sees their own usage plus the server's.
    ix = await admin.slash("usage")
    lines = (await ix.original()).content.splitlines()
    assert "__Today__: nothing" in lines and "__Server today__: 2 images, $0.201" in lines


async def test_failed_and_blocked_calls_are_not_charged(harness: BotHarness) -> None:
    await harness.start(gemini_max_attempts=1)
    fake, gemini = harness.discord, harness.gemini
    alice, admin = fake.user("alice"), fake.user("admin")
    await admin.slash("quota set", user_images=1)
    await private_answer(fake)

    gemini.fail_next("server_error")
    await alice.slash("imagine", prompt="this will fail")
    failed = await fake.wait_for_message(predicate=lambda m: "Retry" in m.button_labels)
    assert "❌" in failed.content
    gemini.fail_next("prompt_blocked")
    await alice.slash("imagine", prompt="this will be blocked")
    blocked = await fake.wait_for_message(predicate=lambda m: "Retry" in m.button_labels)
    assert "🚫" in blocked.content
    assert len(gemini.requests) == 2

    ix = await alice.slash("usage")
    text = (await ix.original()).content
    assert "__Today__: nothing" in text and "__This month__: nothing" in text

    # The quota of one image is still whole: the next request runs.
    result = await imagine(fake, alice, "this one works")
    assert not result.ephemeral
    ix = await alice.slash("usage")
    text = (await ix.original()).content
    assert "__Today__: 1 image, $0.134" in text
    assert "Daily limit: 1 of 1 images used" in text and RESET.search(text)


# ---------------------------------------------------------------------------------- quotas


async def test_quota_set_is_for_admins(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice, admin = fake.user("alice"), fake.user("admin")
    quota = next(c for c in fake.commands() if c["name"] == "quota")
    assert int(quota["default_member_permissions"]) & 0x20  # MANAGE_GUILD
    with pytest.raises(AssertionError, match="cannot see /quota"):
        await alice.slash("quota set", user_images=100)

    # Even if a server opens the command to everyone, the bot itself refuses non-admins.
    quota["default_member_permissions"] = None
    ix = await alice.slash("quota set", user_images=100)
    assert "Only admins" in (await ix.original()).content
    ix = await alice.slash("quota show")
    assert "Only admins" in (await ix.original()).content
    ix = await admin.slash("quota show")
    text = (await ix.original()).content
    assert "no image limit, no dollar limit" in text and "no daily budget" in text

    ix = await admin.slash("quota set", user_images=5, user_dollars=1.5, server_dollars=20.0)
    text = (await ix.original()).content
    assert text.startswith("Saved") and "each user: 5 images, $1.50 a day" in text
    assert "whole server: $20.00 a day" in text
    ix = await admin.slash("quota set", user_images=0)
    text = (await ix.original()).content
    assert "each user: no image limit, $1.50 a day" in text


async def test_batch_larger_than_the_remaining_quota_is_refused(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice, admin = fake.user("alice"), fake.user("admin")
    await admin.slash("quota set", user_images=3)
    await private_answer(fake)
    await imagine(fake, alice, "one image first")
    assert len(gemini.requests) == 1

    ix = await alice.slash(
        "batch",
        field="subject",
        values="red, green, blue",
        json='{"subject": "a ball", "style": "flat"}',
    )
    refused = await private_answer(fake)
    assert "this needs 3" in refused.content and "2 left" in refused.content
    assert RESET.search(refused.content), refused.content
    assert len(gemini.requests) == 1  # refused before any call
    assert ix.original_message is None or ix.original_message.ephemeral
    assert bot_harness.bot is not None
    assert len(await bot_harness.bot.store.recent_generations(alice.id)) == 1


async def test_a_running_batch_reserves_its_quota(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice, admin = fake.user("alice"), fake.user("admin")
    await admin.slash("quota set", user_images=3)
    await private_answer(fake)
    gemini.latency = 1.0
    mark = fake.event_mark
    batch = await alice.slash(
        "batch", field="subject", values="cat, dog, fox", json='{"subject": "an animal"}'
    )
    await batch.wait_ack()
    # While the batch's three images are still being made, a fourth is refused.
    await until(lambda: len(gemini.requests) >= 1, "the batch to start")
    await alice.slash("imagine", prompt="one more")
    refused = await private_answer(fake)
    assert "daily limit of 3 images" in refused.content and RESET.search(refused.content)
    assert "3 of them still being made" in refused.content
    sheet = await fake.wait_for_message(
        predicate=lambda m: any(f.filename.startswith("batch-contact-sheet") for f in m.files),
        since=mark,
        timeout=30,
    )
    assert "3 of 3 images" in sheet.content
    assert len(gemini.requests) == 3
    # ...and it stays refused after the batch has been charged.
    await alice.slash("imagine", prompt="still one more")
    refused = await private_answer(fake)
    assert "0 left" in refused.content
    assert len(gemini.requests) == 3


async def test_server_budget_and_dollar_limits(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice, bob, admin = fake.user("alice"), fake.user("bob"), fake.user("admin")
    await admin.slash("quota set", server_dollars=0.2)
    await private_answer(fake)
    await imagine(fake, alice, "uses most of the budget")  # $0.134
    await bob.slash("imagine", prompt="over the server budget")
    refused = await private_answer(fake)
    assert "server's daily budget of $0.20" in refused.content
    assert RESET.search(refused.content)
    # A cheaper request that fits the rest of the budget still runs.
    await imagine(fake, bob, "a small one", model="flash", size="512")  # $0.045
    assert len(gemini.requests) == 2

    await admin.slash("quota set", server_dollars=0, user_dollars=0.15)
    await private_answer(fake)
    await alice.slash("imagine", prompt="over alice's dollars")
    refused = await private_answer(fake)
    assert "your daily budget of $0.15" in refused.content and RESET.search(refused.content)
    assert len(gemini.requests) == 2


async def test_simultaneous_requests_cannot_overrun_a_quota(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice, admin = fake.user("alice"), fake.user("admin")
    await admin.slash("quota set", user_images=1)
    await private_answer(fake)
    gemini.latency = 0.5
    mark = fake.event_mark
    first = await alice.slash("imagine", prompt="first")
    second = await alice.slash("imagine", prompt="second")
    await first.wait_ack()
    await second.wait_ack()
    await fake.wait_for_message(predicate=is_result, timeout=20)
    await fake.wait_for_message(
        ephemeral=True, predicate=lambda m: "daily limit" in m.content, since=mark, timeout=10
    )
    assert len(gemini.requests) == 1


# ---------------------------------------------------------------------------------- history


async def test_history_lists_and_reposts_with_working_buttons(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    first = await imagine(fake, alice, "a red bicycle against a wall")
    gemini.fail_next("prompt_blocked")
    await alice.slash("imagine", prompt="a blocked request")
    await fake.wait_for_message(predicate=lambda m: "Retry" in m.button_labels)
    gid = generation_id(first)

    ix = await alice.slash("history")
    listing = await ix.original()
    assert listing.ephemeral
    lines = listing.content.splitlines()
    line = next(line for line in lines if f"#{gid}" in line)
    assert "a red bicycle" in line and re.search(r"<t:\d+:R>", line)
    assert f"/channels/{fake.guild_id}/{first.channel_id}/{first.id}" in line
    assert any("blocked" in line or "🚫" in line for line in lines if f"#{gid}" not in line)

    await alice.slash("history", id=gid)
    repost = await fake.wait_for_message(predicate=is_result, timeout=20)
    assert repost.id != first.id and not repost.ephemeral
    assert generation_id(repost) == gid
    assert {"Reroll", "Upscale 2K", "Prompt", "Delete"} <= set(repost.button_labels)
    assert len(gemini.requests) == 2  # re-posting costs nothing

    await alice.click(repost, "Reroll")
    rerolled = await fake.wait_for_message(
        predicate=lambda m: is_result(m) and generation_id(m) != gid, timeout=20
    )
    assert len(gemini.requests) == 3
    assert "a red bicycle against a wall" in str(gemini.requests[-1].body)
    assert "a red bicycle" in rerolled.text


async def test_history_of_someone_elses_result(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice, bob = fake.user("alice"), fake.user("bob")
    public = await imagine(fake, alice, "a public sunset")
    secret = await imagine(fake, alice, "a private sunrise", private=True)
    assert secret.ephemeral

    await bob.slash("history", id=generation_id(secret))
    refused = await private_answer(fake)
    assert f"#{generation_id(secret)}" in refused.content and "sunrise" not in refused.text
    assert not refused.attachments

    # A result that was posted publicly can be re-posted by anyone.
    await bob.slash("history", id=generation_id(public))
    repost = await fake.wait_for_message(predicate=is_result, timeout=20)
    assert generation_id(repost) == generation_id(public) and not repost.ephemeral

    # Alice's own private result comes back privately.
    await alice.slash("history", id=generation_id(secret))
    again = await fake.wait_for_message(predicate=is_result, timeout=20)
    assert again.ephemeral and again.visible_to == alice.id

    ix = await bob.slash("history")
    assert "no generations" in (await ix.original()).content

    # With private mode on, a re-post is private too, and the public link stays the public one.
    await settings_text(fake, bob, private=True)
    await bob.slash("history", id=generation_id(public))
    mine = await fake.wait_for_message(predicate=is_result, timeout=20)
    assert mine.ephemeral and mine.visible_to == bob.id
    ix = await alice.slash("history")
    listing = (await ix.original()).content
    line = next(x for x in listing.splitlines() if f"#{generation_id(public)}`" in x)
    assert f"/{repost.id})" in line  # the latest public message (bob's re-post)
    secret_line = next(x for x in listing.splitlines() if f"#{generation_id(secret)}`" in x)
    assert "private" in secret_line and "/channels/" not in secret_line
