"""Tests for bot.core.lanes: FIFO turns per key, parallel keys, early leavers, emptiness.

Orderings are driven by events and `settle()` (letting ready tasks run), never by sleeps.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.core.lanes import SerialLanes, Ticket


async def settle(rounds: int = 20) -> None:
    """Let ready tasks and done-callbacks run; no wall-clock waiting."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class Runner:
    """Enters tickets in tasks and records who got a turn, holding each until let go."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, ticket: Ticket) -> asyncio.Task[None]:
        self.gates[name] = asyncio.Event()

        async def run() -> None:
            async with ticket:
                self.entered.append(name)
                await self.gates[name].wait()

        self.tasks[name] = asyncio.create_task(run())
        return self.tasks[name]

    async def let_go(self, name: str) -> None:
        self.gates[name].set()
        await self.tasks[name]
        await settle()


async def test_turns_follow_the_order_of_take_not_of_entering() -> None:
    lanes = SerialLanes()
    tickets = {name: lanes.take("chain:1") for name in "abcde"}
    runner = Runner()
    for name in reversed("abcde"):  # tasks start in the opposite order
        runner.start(name, tickets[name])
    await settle()
    for name in "abcde":
        assert runner.entered[-1] == name  # only the head of the lane is inside
        await runner.let_go(name)
    assert runner.entered == list("abcde")


async def test_only_one_holder_per_key_at_a_time() -> None:
    lanes = SerialLanes()
    runner = Runner()
    runner.start("a", lanes.take("k"))
    runner.start("b", lanes.take("k"))
    await settle()
    assert runner.entered == ["a"]
    await runner.let_go("a")
    assert runner.entered == ["a", "b"]
    await runner.let_go("b")


async def test_different_keys_run_in_parallel() -> None:
    lanes = SerialLanes()
    runner = Runner()
    runner.start("a", lanes.take("chain:1"))
    runner.start("b", lanes.take("chain:2"))
    runner.start("c", lanes.take("channel:7"))
    await settle()
    assert sorted(runner.entered) == ["a", "b", "c"]  # all inside at once
    for name in "abc":
        await runner.let_go(name)


async def test_ticket_released_before_its_turn_does_not_let_the_next_jump_ahead() -> None:
    lanes = SerialLanes()
    runner = Runner()
    runner.start("a", lanes.take("k"))
    skipped = lanes.take("k")
    runner.start("c", lanes.take("k"))
    await settle()
    skipped.release()  # gives up its place while "a" still holds the lane
    await settle()
    assert runner.entered == ["a"]  # "c" still waits for "a"
    await runner.let_go("a")
    assert runner.entered == ["a", "c"]  # and is not blocked by the one that left
    await runner.let_go("c")
    assert not lanes.busy("k")


async def test_waiter_cancelled_before_its_turn_keeps_the_order_and_frees_the_lane() -> None:
    lanes = SerialLanes()
    runner = Runner()
    runner.start("a", lanes.take("k"))
    cancelled = runner.start("b", lanes.take("k"))
    runner.start("c", lanes.take("k"))
    await settle()
    cancelled.cancel()
    await settle()
    assert cancelled.cancelled()
    assert runner.entered == ["a"]  # "c" does not jump ahead of "a"
    await runner.let_go("a")
    assert runner.entered == ["a", "c"]  # "b" never got in, and does not block "c"
    await runner.let_go("c")
    assert not lanes.busy("k")


async def test_several_early_leavers_in_a_row_do_not_block_the_lane() -> None:
    lanes = SerialLanes()
    runner = Runner()
    runner.start("a", lanes.take("k"))
    leavers = [lanes.take("k") for _ in range(3)]
    runner.start("e", lanes.take("k"))
    for ticket in reversed(leavers):
        ticket.release()
    await settle()
    assert runner.entered == ["a"]
    await runner.let_go("a")
    assert runner.entered == ["a", "e"]
    await runner.let_go("e")
    assert not lanes.busy("k")


async def test_release_is_idempotent_inside_and_before_the_turn() -> None:
    lanes = SerialLanes()
    runner = Runner()
    first = lanes.take("k")
    early = lanes.take("k")
    runner.start("c", lanes.take("k"))
    async with first:
        early.release()
        early.release()  # a second release of an early leaver frees nothing more
        await settle()
        assert runner.entered == []
        first.release()  # released inside, then again on leaving the block
        first.release()
        await settle()
        assert runner.entered == ["c"]
    await runner.let_go("c")
    assert not lanes.busy("k")


async def test_busy_while_held_or_waited_for_and_the_lane_disappears_when_empty() -> None:
    lanes = SerialLanes()
    assert not lanes.busy("k")
    first = lanes.take("k")
    second = lanes.take("k")
    assert lanes.busy("k") and not lanes.busy("other")
    async with first:
        assert lanes.busy("k")
    await settle()
    assert lanes.busy("k")  # "second" still waits for its turn
    second.release()
    await settle()
    assert not lanes.busy("k")
    # An empty lane starts afresh: the next ticket enters at once.
    async with lanes.take("k"):
        assert lanes.busy("k")
    assert not lanes.busy("k")


async def test_lane_disappears_after_an_early_leaver_once_the_holder_leaves() -> None:
    lanes = SerialLanes()
    holder = lanes.take("k")
    leaver = lanes.take("k")
    await holder.__aenter__()
    leaver.release()
    await settle()
    assert lanes.busy("k")  # the holder is still inside
    holder.release()
    await settle()
    assert not lanes.busy("k")


async def test_exception_inside_the_block_releases_the_ticket() -> None:
    lanes = SerialLanes()
    failing = lanes.take("k")
    runner = Runner()
    runner.start("next", lanes.take("k"))
    with pytest.raises(RuntimeError, match="boom"):
        async with failing:
            raise RuntimeError("boom")
    await settle()
    assert runner.entered == ["next"]
    await runner.let_go("next")
    assert not lanes.busy("k")


async def test_holder_cancelled_inside_the_block_releases_the_ticket() -> None:
    lanes = SerialLanes()
    runner = Runner()
    holder = runner.start("a", lanes.take("k"))
    runner.start("b", lanes.take("k"))
    await settle()
    holder.cancel()
    await settle()
    assert holder.cancelled() and runner.entered == ["a", "b"]
    await runner.let_go("b")
    assert not lanes.busy("k")
