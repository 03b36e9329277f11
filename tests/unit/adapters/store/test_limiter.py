"""The shared Gemini limiter: calls in flight per model and calls per minute, across processes,
with leases so a dead process frees its slot."""

from __future__ import annotations

import asyncio

import pytest

from bot.adapters.store import GeminiBusy, GeminiSlot, Store
from tests.unit.adapters.store.conftest import Backend

PRO, FLASH = "gemini-3-pro-image", "gemini-3.1-flash-image"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(backend: Backend, clock: Clock) -> Store:
    return await backend.open(clock=clock)


async def acquire(
    store: Store, model: str = PRO, *, in_flight: int = 2, per_minute: int | None = None,
    lease: float = 300.0,
) -> GeminiSlot | GeminiBusy:  # fmt: skip
    return await store.acquire_gemini_slot(
        model, "p1", max_in_flight=in_flight, per_minute=per_minute, lease_seconds=lease
    )


async def test_calls_in_flight_per_model(store: Store, clock: Clock) -> None:
    one, two = await acquire(store), await acquire(store, lease=60)
    assert isinstance(one, GeminiSlot) and isinstance(two, GeminiSlot)
    busy = await acquire(store)
    assert busy == GeminiBusy("in_flight", 60.0)  # the soonest lease ends in a minute
    assert isinstance(await acquire(store, FLASH), GeminiSlot)  # another model, its own count
    assert await store.gemini_in_flight(PRO) == 2
    assert await store.release_gemini_slot(one.id)
    assert not await store.release_gemini_slot(one.id)
    three = await acquire(store)
    assert isinstance(three, GeminiSlot)
    # A holder that died: its slot frees when the lease runs out, renewed ones stay.
    clock.now += 50
    assert await store.renew_gemini_slot(three.id, lease_seconds=300)
    clock.now += 11
    assert not await store.renew_gemini_slot(two.id, lease_seconds=300)  # ran out
    assert await store.gemini_in_flight(PRO) == 1
    assert isinstance(await acquire(store), GeminiSlot)


async def test_calls_per_minute(store: Store, clock: Clock) -> None:
    for _ in range(3):
        slot = await acquire(store, in_flight=10, per_minute=3)
        assert isinstance(slot, GeminiSlot)
        assert await store.release_gemini_slot(slot.id)  # released: still counted this minute
        clock.now += 10
    busy = await acquire(store, in_flight=10, per_minute=3)
    assert busy == GeminiBusy("per_minute", 30.0)  # the first call leaves the window at T0+60
    clock.now = T0 + 60
    assert isinstance(await acquire(store, in_flight=10, per_minute=3), GeminiSlot)
    with pytest.raises(ValueError):
        await acquire(store, in_flight=0)


async def test_two_processes_share_the_limits(backend: Backend) -> None:
    first, second = await backend.open(), await backend.open()
    results = await asyncio.gather(
        *(acquire(s, in_flight=3, per_minute=5) for _ in range(10) for s in (first, second))
    )
    slots = [r for r in results if isinstance(r, GeminiSlot)]
    assert len(slots) == 3
    assert {r.reason for r in results if isinstance(r, GeminiBusy)} == {"in_flight"}
    for slot in slots:
        assert await second.release_gemini_slot(slot.id)
    results = await asyncio.gather(
        *(acquire(s, in_flight=3, per_minute=5) for _ in range(10) for s in (first, second))
    )
    assert sum(isinstance(r, GeminiSlot) for r in results) == 2  # 5 a minute in all
    assert {r.reason for r in results if isinstance(r, GeminiBusy)} == {"per_minute"}


async def test_the_context_manager_waits_for_a_slot_and_gives_it_back(backend: Backend) -> None:
    store = await backend.open()
    held = await acquire(store, in_flight=1)
    assert isinstance(held, GeminiSlot)
    entered = asyncio.Event()

    async def call() -> None:
        async with store.gemini_slot(
            PRO, "p2", max_in_flight=1, per_minute=None, lease_seconds=60, poll_seconds=0.02
        ) as slot:
            assert slot.holder == "p2"
            entered.set()

    waiter = asyncio.create_task(call())
    await asyncio.sleep(0.15)
    assert not entered.is_set()
    await store.release_gemini_slot(held.id)
    await asyncio.wait_for(waiter, 5)
    assert entered.is_set() and await store.gemini_in_flight(PRO) == 0
    with pytest.raises(TimeoutError):  # bounded by the caller
        async with asyncio.timeout(0.1):
            await acquire(store, in_flight=1)
            async with store.gemini_slot(
                PRO, "p3", max_in_flight=1, per_minute=None, lease_seconds=60, poll_seconds=0.02
            ):
                pass  # pragma: no cover
