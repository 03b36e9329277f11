"""Economy jobs and batches in the store (bot.adapters.store._economy), on both engines:
admitted like any job but never claimed interactively nor shown in the line; grouped per user
and model after the gather time; batches leased to exactly one process; Cancel until the
batch starts; the saving per day."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.adapters.store import ECONOMY_LANE, AdmitLimits, Admitted, NewJob, Refused, Store
from tests.unit.adapters.store.conftest import Backend

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC).timestamp()
PRO, FLASH = "gemini-3-pro-image", "gemini-3.1-flash-image"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def job(model: str = PRO, *, lane: str | None = ECONOMY_LANE, cost: float = 0.067) -> NewJob:
    return NewJob(
        channel_id=5, kind="imagine", spec={"subject": "s"}, model=model, size="1K",
        aspect="1:1", summary="s", payload={"economy": True}, estimated_cost=cost, lane=lane,
    )  # fmt: skip


async def admit(store: Store, user: int, *jobs: NewJob, **limits: Any) -> Admitted:
    result = await store.admit(
        user_id=user, guild_id=1, jobs=list(jobs) or [job()], limits=AdmitLimits(**limits)
    )
    assert isinstance(result, Admitted), result
    return result


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(backend: Backend, clock: Clock) -> Store:
    return await backend.open(clock=clock)


async def form(store: Store, worker: str = "w1", *, gather: float = 5.0, most: int = 50) -> Any:
    return await store.form_economy_batches(
        worker, gather_seconds=gather, max_requests=most, lease_seconds=30
    )


async def test_economy_jobs_are_admitted_but_never_claimed_nor_in_line(store: Store) -> None:
    eco = await admit(store, 7, job(), job())
    plain = await admit(store, 8, job(lane=None, cost=0.134))
    # The queue room and the quota count them, as any waiting job.
    refused = await store.admit(
        user_id=7, guild_id=1, jobs=[job()], limits=AdmitLimits(max_queued_per_user=2)
    )
    assert isinstance(refused, Refused)
    assert (await store.reserved_today(user_id=7, guild_id=1)).pending_cost == pytest.approx(
        0.134
    )
    # Only the interactive job is claimed, and only it has a place in line.
    assert await store.queue_positions() == {plain.job_ids[0]: 1}
    got = await store.claim_job("w", lease_seconds=30, concurrency=10, max_running_per_user=5)
    assert got is not None and got.id == plain.job_ids[0]
    assert await store.claim_job("w", lease_seconds=30, concurrency=10, max_running_per_user=5) is None
    for job_id in eco.job_ids:
        row = await store.get_job(job_id)
        assert row is not None and row.status == "queued" and row.lane == ECONOMY_LANE


async def test_jobs_gather_per_user_and_model_then_form_batches(
    store: Store, clock: Clock
) -> None:
    a1 = await admit(store, 7, job(), job())
    clock.now += 3
    a2 = await admit(store, 7, job())
    b1 = await admit(store, 7, job(FLASH))
    c1 = await admit(store, 9, job())
    clock.now += 4  # a1 is 7 s old, but alice's newest Pro job only 4 s: still gathering
    assert await form(store) == []
    clock.now += 1.5
    formed = await form(store)
    assert sorted((f.user_id, f.model) for f in formed) == sorted([(7, FLASH), (7, PRO), (9, PRO)])
    pro = next(f for f in formed if (f.user_id, f.model) == (7, PRO))
    assert pro.state == "forming" and pro.lease_owner == "w1" and pro.name is None
    items = await store.economy_items(pro.id)
    assert [it.job_id for it in items] == [*a1.job_ids, *a2.job_ids]
    assert [it.position for it in items] == [0, 1, 2]
    assert all(it.job_status == "running" and it.state == "pending" for it in items)
    # At Gemini now: no longer waiting in the queue room, no interactive slot taken.
    assert (await store.get_job(a1.job_ids[0])).posting  # type: ignore[union-attr]
    for extra in (b1, c1):
        assert (await store.get_job(extra.job_ids[0])).status == "running"  # type: ignore[union-attr]
    assert isinstance(
        await store.admit(
            user_id=7, guild_id=1, jobs=[job()], limits=AdmitLimits(max_queued_per_user=1)
        ),
        Admitted,
    )
    assert await form(store) == []  # nothing else is ready


async def test_a_full_batch_forms_at_once_and_the_rest_keeps_gathering(
    store: Store, clock: Clock
) -> None:
    await admit(store, 7, *[job() for _ in range(5)])
    formed = await form(store, most=2)
    assert [len(await store.economy_items(f.id)) for f in formed] == [2, 2]
    clock.now += 6
    (last,) = await form(store, most=2)
    assert len(await store.economy_items(last.id)) == 1


async def test_one_process_holds_a_batch_until_its_lease_runs_out(
    backend: Backend, clock: Clock
) -> None:
    one, two = await backend.open(clock=clock), await backend.open(clock=clock)
    await admit(one, 7)
    (batch,) = await form(one, "w1", gather=0)
    assert await two.claim_economy_batch("w2", lease_seconds=30) is None  # w1 holds it
    assert await one.update_economy_batch(
        batch.id, "w1", release=True, state="submitted", name="batches/b1",
        submitted_at=clock.now, next_poll_at=clock.now + 10,
    )  # fmt: skip
    assert await two.claim_economy_batch("w2", lease_seconds=30) is None  # not due yet
    clock.now += 10
    claims = await asyncio.gather(
        one.claim_economy_batch("w1", lease_seconds=30),
        two.claim_economy_batch("w2", lease_seconds=30),
    )
    held = [c for c in claims if c is not None]
    assert len(held) == 1 and held[0].name == "batches/b1" and held[0].state == "submitted"
    holder = held[0].lease_owner
    other = "w2" if holder == "w1" else "w1"
    assert not await one.update_economy_batch(batch.id, other, polls=1)
    assert not await one.renew_economy_batch(batch.id, other, lease_seconds=30)
    assert await one.renew_economy_batch(batch.id, str(holder), lease_seconds=30)
    clock.now += 31  # the holder died
    taken = await two.claim_economy_batch(other, lease_seconds=30)
    assert taken is not None and taken.lease_owner == other
    assert not await one.renew_economy_batch(batch.id, str(holder), lease_seconds=30)


async def test_cancel_works_until_the_batch_starts(store: Store, clock: Clock) -> None:
    waiting = await admit(store, 7)
    done = await store.withdraw_economy_jobs(waiting.job_ids, reason="Cancelled.")
    assert done.cancelled == waiting.job_ids and done.batches == ()
    gen = await store.get_generation(waiting.generation_ids[0])
    assert gen is not None and gen.status == "cancelled"
    assert (await store.reserved_today(user_id=7, guild_id=1)).pending_images == 0

    grouped = await admit(store, 7, job(), job())
    (batch,) = await form(store, gather=0)
    first, second = grouped.job_ids
    withdrawn = await store.withdraw_economy_jobs([first], reason="Cancelled.")
    assert withdrawn.cancelled == (first,) and withdrawn.batches == (batch.id,)
    items = {it.job_id: it for it in await store.economy_items(batch.id)}
    assert items[first].state == "cancelled" and items[first].job_status == "cancelled"
    # Submitted and still pending at Gemini: still possible.
    await store.update_economy_batch(
        batch.id, "w1", state="submitted", gemini_state="JOB_STATE_PENDING"
    )
    # Once Gemini runs it: too late.
    await store.update_economy_batch(
        batch.id, "w1", gemini_state="JOB_STATE_RUNNING", started_at=clock.now
    )
    late = await store.withdraw_economy_jobs([second], reason="Cancelled.")
    assert late.cancelled == () and late.too_late == (second,)
    assert (await store.get_job(second)).status == "running"  # type: ignore[union-attr]


async def test_ending_jobs_and_reading_a_generations_batch(store: Store) -> None:
    admitted = await admit(store, 7, job(), job())
    (batch,) = await form(store, gather=0)
    found = await store.economy_item_of_generation(admitted.generation_ids[1])
    assert found is not None and found[1].id == batch.id and found[0].position == 1
    assert await store.economy_item_of_generation(999) is None
    assert await store.end_economy_job(admitted.job_ids[0], status="done")
    assert not await store.end_economy_job(admitted.job_ids[0], status="failed")
    assert await store.end_economy_job(admitted.job_ids[1], status="failed", error="blocked")
    states = [(it.state, it.job_status) for it in await store.economy_items(batch.id)]
    assert states == [("done", "done"), ("failed", "failed")]
    assert await store.open_economy_batches() == [await store.economy_batch(batch.id)]
    await store.update_economy_batch(batch.id, "w1", release=True, state="ended")
    assert await store.open_economy_batches() == []
    with pytest.raises(ValueError):
        await store.update_economy_batch(batch.id, "w1", lease_owner="x")


async def test_economy_usage_keeps_the_saving_per_day(store: Store) -> None:
    for _ in range(2):
        await store.record_economy_usage(
            user_id=7, guild_id=1, model=PRO, images=1, cost=0.067, full_cost=0.134
        )
    await store.record_economy_usage(
        user_id=8, guild_id=None, model=PRO, images=1, cost=0.067, full_cost=0.134,
        day="2026-03-13",
    )  # fmt: skip
    mine = await store.economy_usage_between(
        user_id=7, guild_id=1, first_day="2026-03-01", last_day="2026-03-14"
    )
    assert (mine.images, mine.cost, mine.saved) == (2, pytest.approx(0.134), pytest.approx(0.134))
    everyone = await store.economy_usage_between(
        user_id=None, guild_id=None, first_day="2026-03-13", last_day="2026-03-13"
    )
    assert everyone.images == 1
