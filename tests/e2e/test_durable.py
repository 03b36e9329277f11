"""Durable jobs, end to end with real processes: the database decides, nothing is lost on
kill -9, and several processes (one gateway shard each) share one queue on PostgreSQL.

Each bot here is `python -m bot run` in its own process against the loopback fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable

import pytest

from tests.e2e.conftest import png_bytes
from tests.e2e.harness import BotHarness
from tests.e2e.processes import BotProcess
from tests.e2e.test_commands import is_result
from tests.fakes.discord_driver import FakeInteraction, Upload
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.gemini import FakeRequest

LEASE = "3"  # seconds: how long a dead process's jobs wait before a live one takes them


@contextlib.asynccontextmanager
async def processes(*procs: BotProcess) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            await proc.kill()


async def until(condition: Callable[[], bool], what: str, within: float = 20) -> None:
    """Poll what the fakes do not announce (Gemini's in-flight count)."""
    for _ in range(int(within / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


async def answered(fake: FakeDiscord, ix: FakeInteraction, *, within: float = 60) -> None:
    """Until the interaction's own message shows its result."""
    await ix.wait_ack(5)
    await fake._wait(
        lambda: ix.original_message is not None and is_result(ix.original_message),
        within,
        f"a result in the message of {ix.record.name!r}",
    )


def results_in(fake: FakeDiscord, channel: int) -> list[int]:
    return [
        m.id
        for m in fake.messages_in(channel)
        if m.author.id == fake.bot_user.id and is_result(m) and not m.deleted
    ]


def subject(request: FakeRequest) -> str:
    return str((request.spec or {}).get("subject") or "")


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of the (start, end) intervals that overlap."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = now = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


# ------------------------------------------------------------------------------ kill -9


async def test_kill_9_with_jobs_queued_running_and_downloading_loses_nothing(
    harness: BotHarness,
) -> None:
    fake, gemini = harness.discord, harness.gemini
    settings = {"job_lease_seconds": LEASE, "max_concurrent_jobs": 1, "max_running_per_user": 2}
    first = BotProcess(harness, "first", **settings)
    second = BotProcess(harness, "second", **settings)
    async with processes(first, second):
        await first.start()
        await fake.wait_until_ready(timeout=30)
        gemini.latency = 30
        asked: list[FakeInteraction] = []
        for name in ("alice", "bob", "carol"):
            for n in (1, 2):
                asked.append(await fake.user(name).slash("imagine", prompt=f"{name}'s kite {n}"))
        await until(lambda: gemini.in_flight == 1, "the first job to reach Gemini")
        for ix in asked:
            await fake._wait(
                lambda ix=ix: ix.original_message is not None
                and ("Queued" in ix.original_message.content
                     or "Generating" in ix.original_message.content),
                10,
                "every job to be queued",
            )
        # One more, acknowledged while its attachment is still downloading.
        fake.cdn_latency = 60
        edit = await fake.user("admin").slash(
            "edit", image=Upload("cat.png", png_bytes(96, 96)), changes="a hat on the cat"
        )
        await edit.wait_ack(5)
        await asyncio.sleep(0.5)
        await first.kill()

        gemini.latency = 0.2
        fake.cdn_latency = 0
        fake.reset_ready()
        await second.start()
        await fake.wait_until_ready(timeout=30)
        for ix in [*asked, edit]:
            await answered(fake, ix)
    channel = fake.channel("general")
    assert len(results_in(fake, channel)) == 7  # each request answered once, in its message
    assert "Traceback" not in second.output(), second.output()[-3000:]
    assert "took over request" in second.output()  # the one killed mid-download


# ------------------------------------------------------------------------------ two processes


def two_shards(fake: FakeDiscord, members: tuple[str, ...]) -> tuple[int, int]:
    """Two guilds, one on each of two shards; returns their ids (shard 0's first)."""
    g0 = fake.add_guild("Zero", channels=("studio",), members=members, on_shard=(0, 2))
    g1 = fake.add_guild("One", channels=("studio",), members=members, on_shard=(1, 2))
    return g0, g1


@pytest.mark.timeout(240)
async def test_two_processes_share_one_queue_and_the_survivor_finishes_the_dead_ones_jobs(
    harness: BotHarness, postgres_url: str
) -> None:
    fake, gemini = harness.discord, harness.gemini
    g0, g1 = two_shards(fake, ("alice", "bob", "carol"))
    common = {
        "database_url": postgres_url,
        "shard_count": 2,
        "job_lease_seconds": LEASE,
        "max_concurrent_jobs": 2,
        "max_running_per_user": 1,
    }
    zero = BotProcess(harness, "shard0", shard_ids=0, **common)
    one = BotProcess(harness, "shard1", shard_ids=1, **common)
    async with processes(zero, one):
        await zero.start()
        await fake.wait_until_ready(timeout=40)
        gemini.latency = 2
        asked = []
        for name in ("alice", "bob", "carol", "alice"):
            asked.append(
                await fake.user(name).slash(
                    "imagine", prompt=f"{name} on shard 0", channel=fake.channel("studio", guild=g0)
                )
            )
        await until(lambda: gemini.in_flight == 2, "shard 0's process to run two jobs")
        await one.start()
        await fake.wait_until_ready(timeout=40, shards=2)
        for name in ("bob", "carol"):
            asked.append(
                await fake.user(name).slash(
                    "imagine", prompt=f"{name} on shard 1", channel=fake.channel("studio", guild=g1)
                )
            )
        for ix in asked[4:]:
            await ix.wait_ack(5)
        await zero.kill()  # mid-job: its jobs come back when their leases run out
        gemini.latency = 0.3
        for ix in asked:
            await answered(fake, ix, within=90)
    assert gemini.max_in_flight <= 2  # one global limit across both processes
    out = one.output()
    assert "Traceback" not in out, out[-3000:]
    assert re.search(r"resuming generation \d+ \(attempt 2\)", out), out[-3000:]
    for guild in (g0, g1):
        channel = fake.channel("studio", guild=guild)
        assert len(results_in(fake, channel)) == (4 if guild == g0 else 2)


@pytest.mark.timeout(240)
async def test_a_burst_across_two_processes_keeps_every_limit(
    harness: BotHarness, postgres_url: str
) -> None:
    fake, gemini = harness.discord, harness.gemini
    users = tuple(f"user{i}" for i in range(10))
    g0, g1 = two_shards(fake, users)
    common = {
        "database_url": postgres_url,
        "shard_count": 2,
        "max_concurrent_jobs": 4,
        "max_running_per_user": 2,
        "max_queued_per_user": 10,
    }
    zero = BotProcess(harness, "shard0", shard_ids=0, **common)
    one = BotProcess(harness, "shard1", shard_ids=1, **common)
    async with processes(zero, one):
        await zero.start()
        await one.start()
        await fake.wait_until_ready(timeout=40, shards=2)
        gemini.latency = 0.4
        asked = []
        for n in range(2):
            for guild in (g0, g1):
                for name in users:
                    asked.append(
                        await fake.user(name).slash(
                            "imagine",
                            prompt=f"{name} job {guild}-{n}",
                            channel=fake.channel("studio", guild=guild),
                        )
                    )
        assert len(asked) == 40
        for ix in asked:
            await answered(fake, ix, within=120)
    assert gemini.max_in_flight <= 4  # the global limit, across both processes
    done = [r for r in gemini.requests if r.status == 200 and r.finished is not None]
    assert len(done) == 40
    for name in users:
        mine = [(r.arrived, r.finished or r.arrived) for r in done if subject(r).startswith(f"{name} ")]
        assert len(mine) == 4
        assert most_at_once(mine) <= 2, name  # each user's running limit, across processes
    # Both processes ran jobs (any process runs any job, whoever received it).
    assert "Traceback" not in zero.output() + one.output()


def test_most_at_once() -> None:
    assert most_at_once([(0, 2), (1, 3), (2.5, 4)]) == 2
    assert most_at_once([(0, 1), (1, 2)]) == 1  # one ends as the next starts

