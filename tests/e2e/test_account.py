"""/settings, /usage, /history and /quota, driven end to end like a user would.

The real bot runs against the loopback fake Discord and fake Gemini (tests/e2e/conftest.py).
"""

from __future__ import annotations

import re

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


async def private_answer(fake: FakeDiscord, timeout: float = 10) -> MessageRecord:
    """The next ephemeral bot message (an answer, a refusal)."""
    return await fake.wait_for_message(ephemeral=True, timeout=timeout)


async def imagine(
    fake: FakeDiscord, user: FakeUser, prompt: str, **options: object
) -> MessageRecord:
    await user.slash("imagine", prompt=prompt, **options)
    return await fake.wait_for_message(predicate=is_result, timeout=20)


async def settings_text(fake: FakeDiscord, user: FakeUser, **options: object) -> str:
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
    # An explicit private:False on one command still posts publicly.
    public = await imagine(fake, alice, "a public garden", private=False)
    assert not public.ephemeral and public.id in {m.id for m in fake.messages_in("general")}


# ---------------------------------------------------------------------------------- usage


async def test_usage_counts_images_and_cost_per_model(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    alice = fake.user("alice")
    await imagine(fake, alice, "a pro image")
    await imagine(fake, alice, "a flash image", model="flash", size="2K")
    ix = await alice.slash("usage")
    text = (await ix.original()).content
    today = next(line for line in text.splitlines() if line.startswith("__Today__"))
    assert "2 images" in today and "$0.235" in today  # 0.134 + 0.101
    assert "Nano Banana Pro 1 ($0.134)" in today and "Nano Banana 2 1 ($0.101)" in today
    month = next(line for line in text.splitlines() if line.startswith("__This month__"))
    assert "2 images" in month
    assert "Server" not in text  # not an admin


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
    assert "alice" in text
    today = next(line for line in text.splitlines() if line.startswith("__Today__"))
    assert "1 images" in today or "1 image" in today
    assert "$0.134" in today
    server = next(line for line in text.splitlines() if line.startswith("__Server today__"))
    assert "2 images" in server and "$0.201" in server  # 0.134 + 0.067


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
    today = next(
        line for line in (await ix.original()).content.splitlines() if "Today" in line
    )
    assert "1 image" in today and "$0.134" in today


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
    ix = await admin.slash("quota show")
    assert "no image limit" in (await ix.original()).content

    ix = await admin.slash("quota set", user_images=5, user_dollars=1.5, server_dollars=20.0)
    text = (await ix.original()).content
    assert text.startswith("Saved") and "5 images" in text and "$1.50" in text
    assert "$20.00" in text
    ix = await admin.slash("quota set", user_images=0)
    text = (await ix.original()).content
    assert "no image limit" in text and "$1.50" in text


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
    assert "3 images" in refused.content and "2 left" in refused.content
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
    batch = await alice.slash(
        "batch", field="subject", values="cat, dog, fox", json='{"subject": "an animal"}'
    )
    await batch.wait_ack()
    # While the batch's three images are still being made, a fourth is refused.
    await fake._wait(lambda: len(gemini.requests) >= 1, 10, "the batch to start")
    await alice.slash("imagine", prompt="one more")
    refused = await private_answer(fake)
    assert "daily limit of 3 images" in refused.content and RESET.search(refused.content)
    await batch.wait_followups(3, timeout=20)
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
    assert "server" in refused.content and "$0.20" in refused.content
    assert RESET.search(refused.content)
    # A cheaper request that fits the rest of the budget still runs.
    await imagine(fake, bob, "a small one", model="flash", size="512")  # $0.045
    assert len(gemini.requests) == 2

    await admin.slash("quota set", server_dollars=0, user_dollars=0.15)
    await private_answer(fake)
    await alice.slash("imagine", prompt="over alice's dollars")
    refused = await private_answer(fake)
    assert "$0.15" in refused.content and RESET.search(refused.content)
    assert len(gemini.requests) == 2


async def test_simultaneous_requests_cannot_overrun_a_quota(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice, admin = fake.user("alice"), fake.user("admin")
    await admin.slash("quota set", user_images=1)
    await private_answer(fake)
    gemini.latency = 0.5
    first = await alice.slash("imagine", prompt="first")
    second = await alice.slash("imagine", prompt="second")
    await first.wait_ack()
    await second.wait_ack()
    await fake.wait_for_message(predicate=is_result, timeout=20)
    await fake._wait(
        lambda: any("daily limit" in m.content for m in alice.ephemeral_messages()),
        10,
        "one request to be refused",
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
