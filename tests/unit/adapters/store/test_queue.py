"""Durable jobs (product.md §9): admit, claim, leases, cancel, positions, counts — on both
engines, including races between two Store instances on one database (two processes' worth of
engines and connections).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import textwrap
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.adapters.store import (
    AdmitLimits,
    Admitted,
    GeminiBusy,
    GeminiSlot,
    NewJob,
    RefusalKind,
    Refused,
    Store,
)
from bot.adapters.store.tables import generations, jobs
from tests.support.reference_queue import Job, JobQueue
from tests.unit.adapters.store.conftest import Backend

ROOT = Path(__file__).resolve().parents[4]
NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC).timestamp()
MODEL = "gemini-3-pro-image"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def job(cost: float = 0.134, lane: str | None = None, **payload: Any) -> NewJob:
    return NewJob(
        channel_id=5, kind="imagine", spec={"subject": "s"}, model=MODEL, size="1K",
        aspect="1:1", summary="s", payload=payload, estimated_cost=cost, lane=lane,
    )  # fmt: skip


async def admit(
    store: Store, user: int, n: int = 1, *, guild: int | None = 1, lane: str | None = None,
    limits: AdmitLimits | None = None, cost: float = 0.134, **payload: Any,
) -> list[int]:  # fmt: skip
    result = await store.admit(
        user_id=user, guild_id=guild, jobs=[job(cost, lane, n=i, **payload) for i in range(n)],
        limits=limits or AdmitLimits(),
    )  # fmt: skip
    assert isinstance(result, Admitted), result
    return list(result.job_ids)


async def claim(store: Store, worker: str = "w1", *, concurrency: int = 10, per_user: int = 10,
                lease: float = 60.0) -> int | None:  # fmt: skip
    got = await store.claim_job(
        worker, lease_seconds=lease, concurrency=concurrency, max_running_per_user=per_user
    )
    return None if got is None else got.id


async def running(store: Store) -> list[tuple[int, int]]:
    async with store.database.reading() as tx:
        rows = await tx.all(sa.select(jobs.c.id, jobs.c.user_id).where(jobs.c.status == "running"))
    return [(int(r[0]), int(r[1])) for r in rows]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(backend: Backend, clock: Clock) -> Store:
    return await backend.open(clock=clock)


# -- admit ------------------------------------------------------------------------------------


async def test_admit_records_generations_and_jobs_together(store: Store) -> None:
    one = await store.admit(user_id=7, guild_id=1, jobs=[job(0.2, token="t")], limits=AdmitLimits())
    assert isinstance(one, Admitted) and one.group_id is None
    (gen_id,), (job_id,) = one.generation_ids, one.job_ids
    gen = await store.get_generation(gen_id)
    assert gen is not None and gen.status == "queued" and gen.estimated_cost == 0.2
    row = await store.get_job(job_id)
    assert row is not None and row.payload == {"token": "t"} and row.generation_id == gen_id
    assert (row.status, row.user_id, row.guild_id, row.attempts) == ("queued", 7, 1, 0)

    batch = await store.admit(
        user_id=7, guild_id=1, jobs=[job(lane="chain:9"), job(), job()], limits=AdmitLimits()
    )
    assert isinstance(batch, Admitted) and batch.group_id is not None
    grouped = await store.group_jobs(batch.group_id)
    assert [j.id for j in grouped] == list(batch.job_ids)
    assert [j.lane for j in grouped] == ["chain:9", None, None]
    assert [j.generation_id for j in grouped] == list(batch.generation_ids)
    assert (await store.reserved_today(user_id=7, guild_id=1)).pending_images == 4
    with pytest.raises(ValueError):
        await store.admit(user_id=7, guild_id=1, jobs=[], limits=AdmitLimits())


async def _counts(store: Store) -> tuple[int, int]:
    async with store.database.reading() as tx:
        n_gen = await tx.scalar(sa.select(sa.func.count()).select_from(generations))
        n_job = await tx.scalar(sa.select(sa.func.count()).select_from(jobs))
    return int(n_gen), int(n_job)


async def test_admit_refuses_with_the_numbers_and_records_nothing(store: Store) -> None:
    # The waiting-jobs limit (running jobs do not count).
    await admit(store, 1, 3)
    assert await claim(store) is not None
    limits = AdmitLimits(max_queued_per_user=3)
    refused = await store.admit(user_id=1, guild_id=1, jobs=[job(), job()], limits=limits)
    assert refused == Refused(RefusalKind.QUEUED, 3, 2, 2)
    assert refused.left == 1
    await admit(store, 1, 1, limits=limits)
    before = await _counts(store)

    # Images per user: charged today + queued/running, against this server's limit.
    await store.record_usage(user_id=1, guild_id=1, model=MODEL, images=2, cost=0.5)
    limits = AdmitLimits(images_per_user=7)
    refused = await store.admit(user_id=1, guild_id=1, jobs=[job()] * 2, limits=limits)
    assert isinstance(refused, Refused) and refused.kind is RefusalKind.USER_IMAGES
    assert (refused.limit, refused.used, refused.requested, refused.pending_images) == (
        7, 6, 2, 4,
    )  # fmt: skip
    assert await _counts(store) == before  # a batch is all or nothing
    assert isinstance(
        await store.admit(user_id=1, guild_id=2, jobs=[job()] * 2, limits=limits), Admitted
    )  # another server: its own count
    before = await _counts(store)

    # Dollars per user, at the estimates (a price that exactly fits is fine).
    limits = AdmitLimits(dollars_per_user=0.5 + 4 * 0.134 + 0.3)
    refused = await store.admit(user_id=1, guild_id=1, jobs=[job(0.31)], limits=limits)
    assert isinstance(refused, Refused) and refused.kind is RefusalKind.USER_DOLLARS
    assert refused.used == pytest.approx(0.5 + 4 * 0.134) and refused.requested == 0.31
    assert await _counts(store) == before
    assert isinstance(
        await store.admit(user_id=1, guild_id=1, jobs=[job(0.3)], limits=limits), Admitted
    )

    # The server's budget counts everyone; DMs have none.
    await store.record_usage(user_id=2, guild_id=1, model=MODEL, images=1, cost=1.0)
    limits = AdmitLimits(dollars_guild=2.5)
    refused = await store.admit(user_id=3, guild_id=1, jobs=[job(0.2)], limits=limits)
    assert isinstance(refused, Refused) and refused.kind is RefusalKind.GUILD_DOLLARS
    assert refused.used == pytest.approx(0.5 + 1.0 + 4 * 0.134 + 0.3)
    assert isinstance(
        await store.admit(user_id=3, guild_id=None, jobs=[job(0.2)], limits=limits), Admitted
    )


@pytest.mark.parametrize(
    ("limits", "cost", "admitted"),
    [
        (AdmitLimits(images_per_user=7), 0.1, 7),
        (AdmitLimits(dollars_per_user=1.0), 0.25, 4),
        (AdmitLimits(max_queued_per_user=5), 0.1, 5),
    ],
    ids=["images", "dollars", "queued"],
)
async def test_concurrent_admits_from_two_processes_never_pass_a_limit(
    backend: Backend, limits: AdmitLimits, cost: float, admitted: int
) -> None:
    first, second = await backend.open(), await backend.open()

    async def one(store: Store) -> Admitted | Refused:
        return await store.admit(user_id=1, guild_id=1, jobs=[job(cost)], limits=limits)

    results = await asyncio.gather(*(one(s) for _ in range(15) for s in (first, second)))
    assert sum(isinstance(r, Admitted) for r in results) == admitted
    assert (await first.reserved_today(user_id=1, guild_id=1)).pending_images == admitted


async def test_concurrent_admits_never_overspend_the_servers_budget(backend: Backend) -> None:
    first, second = await backend.open(), await backend.open()
    limits = AdmitLimits(dollars_guild=2.0, images_per_user=3)

    async def one(store: Store, user: int) -> Admitted | Refused:
        return await store.admit(user_id=user, guild_id=9, jobs=[job(0.3), job(0.2)], limits=limits)

    results = await asyncio.gather(*(one(s, user) for user in range(8) for s in (first, second)))
    admitted = [r for r in results if isinstance(r, Admitted)]
    assert len(admitted) == 4  # 4 x $0.50 = the $2 budget, across users and processes
    reserved = await second.reserved_today(user_id=None, guild_id=9)
    assert reserved.pending_cost == pytest.approx(2.0)
    per_user = Counter(j.user_id for j in await first.open_jobs())
    assert all(n <= 3 for n in per_user.values())  # 2 per admitted batch, never above 3


# -- claim: the same choices as bot.core.jobs.JobQueue ----------------------------------------------


async def test_round_robin_least_recently_served_first(store: Store) -> None:
    a = await admit(store, 1, 3)
    b = await admit(store, 2, 1)
    c = await admit(store, 3, 2)
    order = []
    for _ in range(6):
        got = await claim(store, concurrency=1)
        assert got is not None
        assert await claim(store, concurrency=1) is None  # one at a time
        order.append(got)
        assert await store.finish_job(got, "w1", status="done")
    assert order == [a[0], b[0], c[0], a[1], c[1], a[2]]
    assert await claim(store) is None


async def test_per_user_running_limit_and_the_global_limit(store: Store) -> None:
    a = await admit(store, 1, 4)
    b = await admit(store, 2, 1)
    got = [await claim(store, concurrency=4, per_user=2) for _ in range(4)]
    assert got == [a[0], b[0], a[1], None]  # user 1 at its limit, user 2 has nothing left
    await admit(store, 3, 2)
    assert await claim(store, concurrency=4, per_user=2) is not None
    assert await claim(store, concurrency=4, per_user=2) is None  # 4 running: the global limit


async def test_a_lane_runs_one_job_at_a_time_in_order(store: Store) -> None:
    chain = await admit(store, 1, 2, lane="chain:42")
    other = await admit(store, 1, 1)
    bob_chain = await admit(store, 2, 1, lane="chain:42")  # bob's step, behind alice's
    assert await claim(store) == chain[0]
    # chain[1] and bob's step wait for the lane; alice's other job is not held back by it.
    assert await claim(store) == other[0]
    assert await claim(store) is None
    assert await store.finish_job(chain[0], "w1", status="done")
    assert await claim(store) == chain[1]
    assert await claim(store) is None
    assert await store.finish_job(chain[1], "w1", status="failed", error="boom")
    assert await claim(store) == bob_chain[0]


@pytest.mark.parametrize("seed", range(4))
async def test_claims_match_the_in_memory_queue(store: Store, seed: int) -> None:
    """A random script of submissions (users, lanes, batches) and finishes, played against
    bot.core.jobs.JobQueue and against the store: the same jobs start, in the same order."""
    rng = random.Random(seed)
    concurrency, per_user = rng.randint(1, 4), rng.randint(1, 3)
    queue = JobQueue(
        concurrency=concurrency, max_running_per_user=per_user, max_queued_per_user=1000
    )
    releases: dict[int, asyncio.Event] = {}  # memory job id -> event its run waits on
    memory_started: list[int] = []  # script indexes, in start order

    def runner(index: int) -> Any:
        async def run(_job: Job) -> None:
            memory_started.append(index)
            await releases[index].wait()

        return run

    await queue.start()
    store_ids: dict[int, int] = {}  # store job id -> script index
    store_started: list[int] = []
    memory_jobs: dict[int, Job] = {}
    index = 0
    running_indexes: list[int] = []
    try:
        for _ in range(30):
            if running_indexes and rng.random() < 0.45:
                done = rng.choice(running_indexes)
                running_indexes.remove(done)
                releases[done].set()
                await queue.wait(memory_jobs[done].id)
                finished = next(k for k, v in store_ids.items() if v == done)
                assert await store.finish_job(finished, "w1", status="done")
            else:
                user = rng.randint(1, 4)
                lane = rng.choice([None, None, "chain:1", "chain:2"])
                count = rng.choice([1, 1, 1, 3])
                batch = []
                for _ in range(count):
                    releases[index] = asyncio.Event()
                    batch.append((index, Job(user_id=user, run=runner(index), serial_key=lane)))
                    index += 1
                for i, j in zip(
                    [i for i, _ in batch],
                    queue.submit_many([j for _, j in batch]),
                    strict=True,
                ):
                    memory_jobs[i] = j
                ids = await admit(store, user, count, lane=lane)
                store_ids.update(zip(ids, [i for i, _ in batch], strict=True))
            await asyncio.sleep(0)  # let the queue's tasks start (and record their order)
            await asyncio.sleep(0)
            while (
                got := await claim(store, concurrency=concurrency, per_user=per_user)
            ) is not None:
                store_started.append(store_ids[got])
                running_indexes.append(store_ids[got])
            assert store_started == memory_started
            assert sorted(running_indexes) == sorted(
                i for i, j in memory_jobs.items() if j.state.value == "running"
            )
        # "Nth in line": the order round-robin would start the waiting jobs in.
        by_job = {id(j): i for i, j in memory_jobs.items()}
        simulated = [by_job[id(j)] for j in queue._simulated_order()]
        positions = await store.queue_positions()
        assert sorted(positions, key=positions.__getitem__) == [
            k for i in simulated for k, v in store_ids.items() if v == i
        ]
    finally:
        for event in releases.values():
            event.set()
        await queue.stop(grace=1)


async def test_claims_from_two_processes_never_pass_the_limits(backend: Backend) -> None:
    first, second = await backend.open(), await backend.open()
    for user in range(6):
        await admit(first, user, 4)
    claimed: list[int] = []
    for _round in range(4):
        results = await asyncio.gather(
            *(
                claim(s, f"w{i}-{n}", concurrency=5, per_user=2)
                for n, s in enumerate((first, second))
                for i in range(8)
            )
        )
        got = [r for r in results if r is not None]
        claimed += got
        now_running = await running(first)
        assert len(now_running) == 5 and len(got) == (5 if _round == 0 else 2)
        assert max(Counter(u for _, u in now_running).values()) <= 2
        for job_id, _ in now_running[:2]:  # two finish, freeing two slots
            assert await second.finish_job(job_id, None, status="done")
    assert len(claimed) == len(set(claimed))  # no job was handed out twice


# -- leases, take-over, release, cancel ---------------------------------------------------------


async def test_an_expired_lease_is_taken_over_by_another_process(
    backend: Backend, clock: Clock
) -> None:
    first, second = await backend.open(clock=clock), await backend.open(clock=clock)
    (job_id,) = await admit(first, 1)
    got = await first.claim_job("dead", lease_seconds=30, concurrency=1, max_running_per_user=1)
    assert got is not None and got.lease_owner == "dead" and got.attempts == 1
    assert got.lease_expires_at == NOW + 30 and got.started_at == NOW
    assert not await first.renew_lease(job_id, "someone else", lease_seconds=30)
    clock.now += 20
    assert await first.renew_lease(job_id, "dead", lease_seconds=30)  # now until NOW + 50
    clock.now += 25
    assert await claim(second, "live", concurrency=1) is None  # still held: the limit is full
    assert (await second.recover_expired_jobs()).requeued == ()
    clock.now += 10  # the "dead" worker stopped renewing
    taken = await second.claim_job("live", lease_seconds=30, concurrency=1, max_running_per_user=1)
    assert taken is not None and taken.id == job_id
    assert (taken.lease_owner, taken.attempts, taken.started_at) == ("live", 2, NOW)
    # The old worker is fenced off: it can neither renew nor finish.
    assert not await first.renew_lease(job_id, "dead", lease_seconds=30)
    assert not await first.finish_job(job_id, "dead", status="done")
    assert await second.finish_job(job_id, "live", status="done")
    final = await first.get_job(job_id)
    assert final is not None and (final.status, final.lease_owner) == ("done", None)
    assert final.finished_at == clock.now
    assert not await second.finish_job(job_id, "live", status="done")  # only once


async def test_recover_expired_jobs_puts_them_back_in_line(store: Store, clock: Clock) -> None:
    a = await admit(store, 1, 2)
    b = await admit(store, 2, 1)
    assert await claim(store, "w", lease=10) == a[0]
    assert await claim(store, "w", lease=100) == b[0]
    clock.now += 11
    assert (await store.recover_expired_jobs()).requeued == (a[0],)
    row = await store.get_job(a[0])
    assert row is not None and (row.status, row.lease_owner, row.attempts) == ("queued", None, 1)
    assert await store.queue_positions() == {a[0]: 1, a[1]: 2}  # its old place
    assert await claim(store, "w2") == a[0]


async def test_release_hands_a_job_back_at_once(store: Store) -> None:
    a = await admit(store, 1, 2)
    assert await claim(store, "stopping") == a[0]
    assert not await store.release_job(a[0], "another")
    assert await store.release_job(a[0], "stopping")
    assert await store.job_position(a[0]) == 1
    assert await claim(store, "next") == a[0]


async def test_cancel_only_while_queued_and_the_quota_frees(store: Store) -> None:
    a = await admit(store, 1, 3)
    assert await claim(store) == a[0]
    assert not await store.cancel_queued_job(a[0])  # running: its worker's to stop
    assert (await store.reserved_today(user_id=1, guild_id=1)).pending_images == 3
    assert await store.cancel_queued_job(a[1])
    assert not await store.cancel_queued_job(a[1])
    assert not await store.cancel_queued_job(999)
    row = await store.get_job(a[1])
    assert row is not None and row.status == "cancelled" and row.error == "cancelled"
    gen = await store.get_generation(row.generation_id)
    assert gen is not None and gen.status == "cancelled"
    assert (await store.reserved_today(user_id=1, guild_id=1)).pending_images == 2
    assert await store.queue_positions() == {a[2]: 1}
    assert await claim(store) == a[2]


async def test_cancel_racing_a_claim_has_one_winner(backend: Backend) -> None:
    first, second = await backend.open(), await backend.open()
    ids = await admit(first, 1, 10)
    results = await asyncio.gather(
        *(second.cancel_queued_job(i) for i in ids),
        *(claim(first, f"w{i}", concurrency=20) for i in range(10)),
    )
    cancelled = {i for i, ok in zip(ids, results[:10], strict=True) if ok}
    claimed = {r for r in results[10:] if r is not None}
    assert cancelled | claimed == set(ids) and not cancelled & claimed


# -- looking at the queue -----------------------------------------------------------------------


async def test_positions_and_counts(store: Store) -> None:
    a = await admit(store, 1, 3)
    b = await admit(store, 2, 1)
    c = await admit(store, 3, 2)
    assert await store.queue_positions() == {
        a[0]: 1, b[0]: 2, c[0]: 3, a[1]: 4, c[1]: 5, a[2]: 6,
    }  # fmt: skip
    assert await claim(store) == a[0]  # user 1 was served: to the back of the rotation
    assert await store.queue_positions() == {b[0]: 1, c[0]: 2, a[1]: 3, c[1]: 4, a[2]: 5}
    assert await store.job_position(c[1]) == 4 and await store.job_position(a[0]) is None
    await store.finish_job(a[0], "w1", status="done")
    await store.cancel_queued_job(c[1])
    assert await store.job_counts() == {
        "queued": 4, "running": 0, "done": 1, "failed": 0, "cancelled": 1, "interrupted": 0,
    }  # fmt: skip


async def test_the_record_of_todays_queue_still_works(store: Store) -> None:
    """create_job / update_job / open_jobs (bot.jobs keeps its jobs' record with them) and
    the new primitives read the same rows."""
    gen = await store.create_generation(
        user_id=1, guild_id=None, channel_id=1, kind="imagine", spec={}, model="m", size="1K",
        aspect="1:1", summary="",
    )  # fmt: skip
    old = await store.create_job(generation_id=gen, user_id=1, payload={"progress": 1})
    assert await store.job_position(old) == 1
    assert await store.update_job(old, status="running")
    row = await store.get_job(old)
    assert row is not None and row.lane is None and row.lease_owner is None
    assert [j.id for j in await store.open_jobs()] == [old]
    assert (await store.job_counts())["running"] == 1


_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from bot.adapters.store import Store

    async def main(target):
        store = await Store.open(target)
        job = await store.claim_job("doomed", lease_seconds=2.0, concurrency=1,
                                    max_running_per_user=1)
        slot = await store.acquire_gemini_slot("m", "doomed", max_in_flight=1, per_minute=None,
                                               lease_seconds=2.0)
        print("claimed", job.id, slot.id, flush=True)
        async with store.database.transaction() as tx:  # killed inside a transaction
            await tx.execute("UPDATE jobs SET payload = '{}' WHERE id = ?", (job.id,))
            print("in transaction", flush=True)
            await asyncio.sleep(60)

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
async def test_a_killed_worker_process_loses_nothing(backend: Backend) -> None:
    """A real process claims a job and a Gemini slot, and is killed mid-transaction: once
    its leases run out, another process takes the job over and the slot is free again."""
    store = await backend.open()
    (job_id,) = await admit(store, 1, 1, payload_note="kept")
    target = str(backend.target)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WORKER, target, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        claimed = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert claimed.split()[:2] == [b"claimed", str(job_id).encode()]
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"in transaction"
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert await claim(store, "live", concurrency=1) is None  # its lease still runs
    busy = await store.acquire_gemini_slot(
        "m", "live", max_in_flight=1, per_minute=None, lease_seconds=5
    )
    assert isinstance(busy, GeminiBusy)
    await asyncio.sleep(2.2)
    taken = await store.claim_job("live", lease_seconds=30, concurrency=1, max_running_per_user=1)
    assert taken is not None and (taken.id, taken.attempts) == (job_id, 2)
    assert taken.payload == {"n": 0, "payload_note": "kept"}  # the killed transaction is gone
    slot = await store.acquire_gemini_slot(
        "m", "live", max_in_flight=1, per_minute=None, lease_seconds=5
    )
    assert isinstance(slot, GeminiSlot)
    assert await store.database.integrity_check() == ["ok"]
