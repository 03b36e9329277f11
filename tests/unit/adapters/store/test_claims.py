"""Claiming several jobs in one transaction, the generation that comes with a claim, and the
turns on SQLite's one connection (urgent work before waiting ordinary work)."""

from __future__ import annotations

import asyncio

import pytest

from bot.adapters.store import Store
from bot.adapters.store.db import _Turns
from tests.unit.adapters.store.conftest import Backend
from tests.unit.adapters.store.test_queue import Clock, admit


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open(clock=Clock())


async def test_claim_jobs_takes_what_may_start_in_fair_order(store: Store) -> None:
    alice = await admit(store, 1, 3)
    bob = await admit(store, 2, 2)
    got = await store.claim_jobs(
        "w", lease_seconds=30, concurrency=3, max_running_per_user=5, at_most=10
    )
    # Round-robin between users, and never more than the global limit.
    assert [j.id for j in got] == [alice[0], bob[0], alice[1]]
    assert all(j.status == "running" and j.lease_owner == "w" for j in got)
    again = await store.claim_jobs(
        "w", lease_seconds=30, concurrency=3, max_running_per_user=5, at_most=10
    )
    assert again == []


async def test_claim_jobs_stops_at_the_users_limit(store: Store) -> None:
    mine = await admit(store, 1, 3)
    got = await store.claim_jobs(
        "w", lease_seconds=30, concurrency=10, max_running_per_user=2, at_most=10
    )
    assert [j.id for j in got] == mine[:2]


async def test_a_claimed_job_carries_its_generation_marked_running(store: Store) -> None:
    (job_id,) = await admit(store, 1)
    got = await store.claim_job("w", lease_seconds=30, concurrency=1, max_running_per_user=1)
    assert got is not None and got.id == job_id
    assert got.generation is not None
    assert got.generation.id == got.generation_id
    assert got.generation.status == "running"
    assert got.generation.started_at is not None
    stored = await store.get_generation(got.generation_id)
    assert stored is not None and stored.status == "running"


async def test_urgent_turns_go_before_waiting_ordinary_ones() -> None:
    turns = _Turns()
    order: list[str] = []
    release = asyncio.Event()

    async def take(name: str, *, urgent: bool = False, hold: bool = False) -> None:
        async with turns.turn(urgent=urgent):
            order.append(name)
            if hold:
                await release.wait()

    holder = asyncio.create_task(take("holder", hold=True))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(take(f"ordinary{i}")) for i in range(2)]
    await asyncio.sleep(0)
    urgent = asyncio.create_task(take("urgent", urgent=True))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(holder, *waiting, urgent)
    # No preemption of the holder; then urgent first; ordinary work keeps its order.
    assert order == ["holder", "urgent", "ordinary0", "ordinary1"]


async def test_a_cancelled_waiter_does_not_keep_the_turn() -> None:
    turns = _Turns()
    release = asyncio.Event()
    done: list[str] = []

    async def take(name: str, *, hold: bool = False) -> None:
        async with turns.turn():
            if hold:
                await release.wait()
            done.append(name)

    holder = asyncio.create_task(take("holder", hold=True))
    await asyncio.sleep(0)
    doomed = asyncio.create_task(take("doomed"))
    after = asyncio.create_task(take("after"))
    await asyncio.sleep(0)
    doomed.cancel()
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, after), timeout=5)
    assert done == ["holder", "after"]
    assert doomed.cancelled()


async def test_image_bytes_are_not_compressed_again_on_postgresql(store: Store) -> None:
    if store.database.is_sqlite:
        return  # SQLite keeps image bytes in files
    async with store.database.reading() as tx:
        storage = await tx.scalar(
            "SELECT attstorage FROM pg_attribute "
            "WHERE attrelid = 'image_blobs'::regclass AND attname = 'data'"
        )
    assert storage in ("e", b"e")  # EXTERNAL: out of line, uncompressed ("char" type)
