"""Failures, fairness, load, restarts, token expiry and shutdown, end to end."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from tests.e2e.harness import BotHarness
from tests.e2e.test_commands import (
    generation_id,
    image_of,
    is_result,
    public_bot_messages,
    result_of,
    wait_private,
)
from tests.fakes.discord_driver import FakeInteraction
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import MessageRecord
from tests.fakes.gemini import FakeGemini, fake_mark_of

ROOT = Path(__file__).resolve().parents[2]


async def final_message(ix: FakeInteraction, *, within: float = 20) -> MessageRecord:
    """The response once it is final: a result, or a failure with its Retry button."""
    await ix.wait_ack(3)

    def done() -> bool:
        m = ix.original_message
        return m is not None and (is_result(m) or "Retry" in m.button_labels)

    await ix.fake._wait(done, within, f"a final answer to {ix.record.name!r}")
    message = ix.original_message
    assert message is not None
    return message


async def until(condition: Callable[[], bool], what: str, within: float = 10) -> None:
    """Poll a condition the fakes do not announce (Gemini's in-flight count)."""
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


async def until_generating(fake: FakeDiscord, gemini: FakeGemini, ix: FakeInteraction) -> None:
    """Until the job is at Gemini and its message says so."""
    await ix.wait_ack(3)
    await fake._wait(
        lambda: ix.original_message is not None and "Generating" in ix.original_message.content,
        10,
        "the job to say it is generating",
    )
    await until(lambda: gemini.in_flight >= 1, "the request to reach Gemini")


async def job_recorded(harness: BotHarness, message_id: int | None) -> None:
    """Until the open job remembers its progress message (what a restart resumes in)."""
    assert harness.bot is not None and message_id is not None
    store = harness.bot.store
    for _ in range(200):
        if any(j.payload.get("message_id") == message_id for j in await store.open_jobs()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the job never recorded its progress message")


# ------------------------------------------------------------------------------ failures


async def test_blocked_prompt_then_retry(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    gemini.fail_next("prompt_blocked", reason="SAFETY")
    ix = await alice.slash("imagine", prompt="something the filter dislikes")
    failed = await final_message(ix)
    assert "blocked the prompt (SAFETY)" in failed.content and "Rephrase" in failed.content
    assert failed.button_labels == ["Retry"] and not failed.files
    assert bot_harness.bot is not None
    gen = await bot_harness.bot.store.get_generation(generation_id(failed))
    assert gen is not None and gen.status == "blocked" and gen.cost == 0
    again = await result_of(await alice.click(failed, "Retry"))
    assert again.id == failed.id  # retried in place: the failure becomes the result
    assert gemini.requests[-1].spec == gemini.requests[0].spec
    assert fake_mark_of(image_of(fake, again)) == gemini.issued[-1].mark
    assert "Retry" not in again.button_labels


async def test_image_safety_block_then_retry(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    gemini.fail_next("image_safety", finish_reason="IMAGE_SAFETY")
    failed = await final_message(await alice.slash("imagine", prompt="a risky scene"))
    assert "blocked the generated image (IMAGE_SAFETY)" in failed.content
    assert failed.button_labels == ["Retry"]
    bob = fake.user("bob")
    refused = await bob.click(failed, "Retry")  # only the requester retries
    assert "Only the person" in (await refused.original()).content
    await result_of(await alice.click(failed, "Retry"))


FAILURES: list[tuple[str, dict[str, object], str]] = [
    ("overloaded", {}, "overloaded"),
    ("server_error", {"status": 500}, "internal error"),
    ("server_error", {"status": 504}, "took too long"),
    ("rate_limit", {"retry_delay": "7s"}, "busy (rate limit reached). Try again in 7 s"),
    ("invalid", {"message": "Request contains an invalid argument."}, "rejected the request"),
    ("auth", {"status": 403}, "GEMINI_API_KEY"),
    ("text_only", {"text": "I cannot draw that."}, "without an image"),
    ("disconnect", {}, "network"),
    ("hang", {}, "did not answer within 1 s"),
]


async def test_every_gemini_failure_is_one_short_message(harness: BotHarness) -> None:
    await harness.start(gemini_max_attempts=1, timeout_1k_seconds=1)
    fake, gemini = harness.discord, harness.gemini
    alice = fake.user("alice")
    for kind, kw, expected in FAILURES:
        gemini.fail_next(kind, **kw)
        failed = await final_message(await alice.slash("imagine", prompt=f"meets {kind}"))
        assert expected in failed.content, (kind, failed.content)
        assert len(failed.content) < 300 and "Traceback" not in failed.content
        assert failed.button_labels == ["Retry"]
    # the bot kept running through all of them
    await result_of(await alice.slash("imagine", prompt="a small test, again"))


VALIDATION: list[tuple[dict[str, str], str]] = [
    ({"prompt": '{"task": "paint_wall", "subject": "x"}'}, "task"),
    ({"prompt": "a tall banner", "model": "pro", "aspect": "1:8"}, "1:8"),
    ({"prompt": "a tiny icon", "model": "pro", "size": "512"}, "512"),
    ({"prompt": '{"subject": "x", "props": 7}'}, "props: expected a list"),
    ({"prompt": '{"subject": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}}'}, "deeper"),
    ({"prompt": "x", "anchors": "nobody-has-this"}, "no anchor called"),
]


async def test_validation_errors_are_private_and_never_reach_gemini(
    bot_harness: BotHarness,
) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    alice = fake.user("alice")
    for options, expected in VALIDATION:
        ix = await alice.slash("imagine", **options)
        await ix.wait_ack(3)
        message = await wait_private(fake, alice)
        assert expected in message.content, (options, message.content)
        assert len(message.content) < 600
    assert gemini.requests == []
    assert not public_bot_messages(fake)


async def test_rate_limit_with_retry_delay_then_success(bot_harness: BotHarness) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    gemini.fail_next("rate_limit", retry_delay="1s")
    result = await result_of(await fake.user("alice").slash("imagine", prompt="patience"))
    first, second = gemini.requests
    assert first.status == 429 and second.status == 200
    assert second.arrived - first.arrived >= 1.0  # the server's retryDelay was honoured
    assert fake_mark_of(image_of(fake, result)) == gemini.issued[-1].mark


async def test_unexpected_errors_give_a_reference_id(bot_harness: BotHarness) -> None:
    fake = bot_harness.discord
    bot = bot_harness.bot
    assert bot is not None
    alice = fake.user("alice")
    first = await result_of(await alice.slash("imagine", prompt="before the bug"))

    async def broken(*_args: object, **_kw: object) -> int:
        raise RuntimeError("a bug")

    real_submit = bot.generator.submit
    bot.generator.submit = broken  # type: ignore[method-assign]
    ix = await alice.slash("imagine", prompt="meets the bug")
    message = await wait_private(fake, alice, lambda m: "reference" in m.content)
    assert re.search(r"Something went wrong on our side \(reference `[0-9a-f]{8}`\)", message.content)
    assert "RuntimeError" not in message.content
    assert ix.original_message is None or ix.original_message.deleted  # no public leftovers

    clicked = await alice.click(first, "Reroll")  # a button hitting the same bug
    message = await wait_private(fake, alice, lambda m: "reference" in m.content)
    assert clicked.acked and not clicked.failed
    bot.generator.submit = real_submit  # type: ignore[method-assign]
    await result_of(await alice.slash("imagine", prompt="after the bug"))


# ------------------------------------------------------------------------------ the queue


async def test_fair_queue_while_one_user_floods(harness: BotHarness) -> None:
    await harness.start(max_concurrent_jobs=1)
    fake, gemini = harness.discord, harness.gemini
    gemini.latency = 0.15
    alice, bob = fake.user("alice"), fake.user("bob")
    floods = [await alice.slash("imagine", prompt=f"alice {i}") for i in range(6)]
    await until(lambda: gemini.in_flight >= 1, "alice's first job to start")
    bobs = await bob.slash("imagine", prompt="bob 0")
    for ix in [*floods, bobs]:
        await result_of(ix, within=30)
    order = [str(r.spec["subject"]) for r in gemini.requests if r.spec]
    assert sorted(order) == sorted([f"alice {i}" for i in range(6)] + ["bob 0"])
    assert order.index("bob 0") <= 2, order  # bob waits for at most alice's running job
    assert gemini.max_in_flight == 1


async def test_forty_concurrent_requests_all_acknowledged_and_answered(
    bot_harness: BotHarness,
) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    gemini.latency = 0.05
    users = [fake.user(n) for n in ("alice", "bob", "carol", "admin")]
    interactions = await asyncio.gather(
        *(users[i % 4].slash("imagine", prompt=f"crowd {i}") for i in range(40))
    )
    results = await asyncio.gather(*(result_of(ix, within=60) for ix in interactions))
    assert len(fake.ack_latencies) >= 40
    assert max(fake.ack_latencies) < 3, sorted(fake.ack_latencies)[-5:]
    assert not any(ix.failed for ix in interactions)
    assert len({generation_id(m) for m in results}) == 40
    assert len(gemini.requests) == 40


# ------------------------------------------------------------------------------ restarts


async def test_job_interrupted_by_a_restart_is_resumed(harness: BotHarness) -> None:
    await harness.start()
    fake, gemini = harness.discord, harness.gemini
    gemini.latency = 30
    alice = fake.user("alice")
    ix = await alice.slash("imagine", prompt="survives a restart")
    await until_generating(fake, gemini, ix)
    progress_id = ix.record.original_id
    await job_recorded(harness, progress_id)
    gen_before = await generation_id_in_store(harness)
    gemini.latency = 0
    await harness.restart()
    result = await fake.wait_for_message(
        predicate=lambda m: m.id == progress_id and is_result(m), since=0, timeout=20
    )
    assert generation_id(result) == gen_before  # the same request, carried on
    assert any("restarting" in e.content for e in result.edits)  # said so while down
    assert len(gemini.requests) == 2
    assert [str(r.spec["subject"]) for r in gemini.requests if r.spec] == [
        "survives a restart"
    ] * 2
    assert len([m for m in public_bot_messages(fake) if is_result(m)]) == 1


async def generation_id_in_store(harness: BotHarness) -> int:
    assert harness.bot is not None
    jobs = await harness.bot.store.open_jobs()
    assert len(jobs) == 1
    return jobs[0].generation_id


async def test_private_job_interrupted_by_a_restart_is_resumed(harness: BotHarness) -> None:
    await harness.start()
    fake, gemini = harness.discord, harness.gemini
    gemini.latency = 30
    alice = fake.user("alice")
    ix = await alice.slash("imagine", prompt="a private restart", private=True)
    await until_generating(fake, gemini, ix)
    await job_recorded(harness, ix.record.original_id)
    gemini.latency = 0
    await harness.restart()
    await fake._wait(
        lambda: ix.original_message is not None and is_result(ix.original_message),
        20,
        "the private result in its ephemeral message",
    )
    assert ix.original_message is not None and ix.original_message.ephemeral
    assert not public_bot_messages(fake)


async def test_queued_jobs_survive_a_restart_too(harness: BotHarness) -> None:
    await harness.start(max_concurrent_jobs=1)
    fake, gemini = harness.discord, harness.gemini
    gemini.latency = 30
    alice, bob = fake.user("alice"), fake.user("bob")
    running = await alice.slash("imagine", prompt="running at restart")
    await until_generating(fake, gemini, running)
    waiting = await bob.slash("imagine", prompt="queued at restart")
    await fake._wait(
        lambda: waiting.original_message is not None
        and "Queued" in waiting.original_message.content,
        5,
        "bob's job to show its place in line",
    )
    await job_recorded(harness, waiting.record.original_id)
    gemini.latency = 0
    await harness.restart(max_concurrent_jobs=1)
    for ix in (running, waiting):
        await fake.wait_for_message(
            predicate=lambda m, ix=ix: m.id == ix.record.original_id and is_result(m),
            since=0,
            timeout=20,
        )


async def test_result_after_the_token_expired_is_posted_in_the_channel(
    bot_harness: BotHarness,
) -> None:
    fake, gemini = bot_harness.discord, bot_harness.gemini
    gemini.latency = 2
    alice = fake.user("alice")
    ix = await alice.slash("imagine", prompt="a very slow render")
    await until_generating(fake, gemini, ix)
    fake.advance_clock(15 * 60 + 1)
    result = await fake.wait_for_message(predicate=is_result, timeout=20)
    assert result.id != ix.record.original_id
    assert not result.ephemeral and result.interaction_metadata is None  # a channel message
    assert alice.mention in result.content
    assert result.button_labels[0] == "Reroll"
    progress = fake.message(ix.record.original_id)
    # the stale "Generating…" message does not linger
    await fake._wait(lambda: progress.deleted, 5, "the old progress message to go")
    # its buttons work like any other result's
    await result_of(await alice.click(result, "Reroll"))


async def test_sigterm_stops_cleanly_and_the_job_resumes(harness: BotHarness) -> None:
    fake, gemini = harness.discord, harness.gemini
    settings = harness.settings()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "DISCORD_TOKEN": fake.token,
        "GEMINI_API_KEY": gemini.api_key,
        "GEMINI_BASE_URL": gemini.url,
        "GEMINI_API_VERSION": "v1beta",
        "DISCORD_API_BASE": fake.api_base,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "DATABASE_PATH": str(settings.database_path),
        "PROGRESS_INTERVAL_SECONDS": "0.3",
    }
    log_path = harness.data_dir / "bot.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run",
            cwd=harness.data_dir, env=env, stdout=log, stderr=log,
        )
        try:
            await fake.wait_until_ready(timeout=30)
            gemini.latency = 30
            ix = await fake.user("alice").slash("imagine", prompt="through a SIGTERM")
            await until_generating(fake, gemini, ix)
            await asyncio.sleep(0.5)  # let the job record its progress message
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    output = log_path.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "handed back to the queue by shutdown" in output

    gemini.latency = 0
    fake.reset_ready()
    await harness.start()
    await fake.wait_for_message(
        predicate=lambda m: m.id == ix.record.original_id and is_result(m), since=0, timeout=20
    )
