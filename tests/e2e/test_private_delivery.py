"""Private results that outlive their ephemeral message: after the 15-minute token, or after a
restart past it, they go to the requester's DMs; with DMs closed, a notice in the channel says
so and shows nothing private. And a result posted again after a restart is not posted twice."""

from __future__ import annotations

import asyncio

from tests.e2e.harness import BotHarness
from tests.e2e.test_commands import is_result, public_bot_messages, result_of
from tests.e2e.test_resilience import job_recorded, until_generating
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import MessageRecord

TOKEN_EXPIRED = 15 * 60 + 1


def bot_messages_in(fake: FakeDiscord, channel: int) -> list[MessageRecord]:
    return [m for m in fake.messages_in(channel) if m.author.id == fake.bot_user.id]


async def test_a_private_result_after_the_token_expired_goes_to_dms(
    bot_harness: BotHarness,
) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    gemini.latency = 2
    alice = fake.user("alice")
    ix = await alice.slash("imagine", prompt="a secret garden", private=True)
    await until_generating(fake, gemini, ix)
    fake.advance_clock(TOKEN_EXPIRED)
    dm = await fake.wait_for_message(
        predicate=lambda m: m.channel_id == alice.dm_channel and is_result(m), timeout=20
    )
    assert dm.button_labels[0] == "Reroll"
    assert not [m for m in public_bot_messages(fake) if not m.deleted]  # nothing in the channel
    # the DM'd result is a result like any other: its buttons work
    await result_of(await alice.click(dm, "Reroll"))


async def test_closed_dms_get_a_notice_in_the_channel_and_nothing_private(
    bot_harness: BotHarness,
) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    gemini.latency = 2
    alice = fake.user("alice")
    fake.close_dms(alice)
    ix = await alice.slash("imagine", prompt="a secret lighthouse", private=True)
    await until_generating(fake, gemini, ix)
    fake.advance_clock(TOKEN_EXPIRED)
    notice = await fake.wait_for_message(
        predicate=lambda m: "DMs are closed" in m.content, timeout=20
    )
    assert alice.mention in notice.content and "/history" in notice.content
    assert not notice.files and not notice.embeds and not notice.ephemeral
    assert "lighthouse" not in notice.content
    assert not bot_messages_in(fake, alice.dm_channel)
    bot = bot_harness.bot
    assert bot is not None
    [gen] = await bot.store.recent_generations(alice.id)
    assert gen.status == "done" and gen.message_id is None  # saved, for /history


async def test_a_private_job_resumed_after_a_restart_past_the_token_goes_to_dms(
    harness: BotHarness,
) -> None:
    await harness.start()
    fake, gemini = harness.discord, harness.gemini
    gemini.latency = 30
    alice = fake.user("alice")
    ix = await alice.slash("imagine", prompt="a private restart, much later", private=True)
    await until_generating(fake, gemini, ix)
    await job_recorded(harness, ix.record.original_id)
    gemini.latency = 0
    await harness.stop()
    fake.advance_clock(TOKEN_EXPIRED)
    await harness.start()
    dm = await fake.wait_for_message(
        predicate=lambda m: m.channel_id == alice.dm_channel and is_result(m), timeout=20
    )
    assert "restart, much later" in (dm.embeds[0].get("title") or "")
    assert not [m for m in public_bot_messages(fake) if not m.deleted]


async def test_a_result_posted_again_after_a_restart_is_not_posted_twice(
    harness: BotHarness,
) -> None:
    """The bot dies between posting a result and recording which message shows it; the
    restarted bot posts it again with the same nonce, and Discord returns the first message."""
    bot = await harness.start()
    fake, gemini = harness.discord, harness.gemini
    gemini.latency = 2
    alice = fake.user("alice")
    ix = await alice.slash("imagine", prompt="posted exactly once")
    await until_generating(fake, gemini, ix)
    fake.advance_clock(TOKEN_EXPIRED)  # the result goes out as a new channel message

    hung = asyncio.Event()

    async def never_records(*args: object, **kwargs: object) -> None:
        hung.set()
        await asyncio.Event().wait()  # "killed" before the message id is stored

    bot.store.set_generation_message = never_records  # type: ignore[method-assign]
    first = await fake.wait_for_message(predicate=is_result, timeout=20)
    await asyncio.wait_for(hung.wait(), 5)
    await harness.restart()
    await asyncio.sleep(1.0)  # recovery posts it again (with the same nonce)
    restarted = harness.bot
    assert restarted is not None and restarted is not bot
    results = [m for m in public_bot_messages(fake) if is_result(m) and not m.deleted]
    assert [m.id for m in results] == [first.id]
    gens = await restarted.store.recent_generations(alice.id)
    assert gens[0].message_id == first.id  # the restarted bot recorded the first message
