"""Tests for bot.core.jobs: limits, round-robin, lanes, positions, cancel, timeouts, shutdown.

Most tests drive jobs with gates (an asyncio.Event per job) rather than sleeps, so they assert
orderings and invariants that hold however slow the machine is.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tests.support.reference_queue import Job, JobQueue, JobState, QueueClosed, QueueFull

FINAL = {JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT}


async def settle(rounds: int = 20) -> None:
    """Let ready tasks run; no wall-clock waiting."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class Probe:
    """Makes gated jobs and records what actually ran, in what order, how concurrently."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.jobs: dict[str, Job] = {}
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled_inside: list[str] = []
        self.active: set[str] = set()
        self.max_active = 0
        self.active_by_user: Counter[int] = Counter()
        self.max_by_user: Counter[int] = Counter()
        self.active_by_lane: Counter[str] = Counter()
        self.max_by_lane: Counter[str] = Counter()
        self.overlaps: set[frozenset[str]] = set()  # pairs of tags seen running together

    def job(
        self,
        user: int,
        tag: str,
        *,
        lane: str | None = None,
        fail: bool = False,
        gated: bool = True,
        **kwargs: Any,
    ) -> Job:
        gate = asyncio.Event()
        if not gated:
            gate.set()
        self.gates[tag] = gate

        async def run(job: Job) -> str:
            self.started.append(tag)
            for other in self.active:
                self.overlaps.add(frozenset((tag, other)))
            self.active.add(tag)
            self.max_active = max(self.max_active, len(self.active))
            self.active_by_user[user] += 1
            self.max_by_user[user] = max(self.max_by_user[user], self.active_by_user[user])
            if lane is not None:
                self.active_by_lane[lane] += 1
                self.max_by_lane[lane] = max(self.max_by_lane[lane], self.active_by_lane[lane])
            try:
                await gate.wait()
                await asyncio.sleep(0)
                if fail:
                    raise ValueError(f"boom {tag}")
                return f"result {tag}"
            except asyncio.CancelledError:
                self.cancelled_inside.append(tag)
                raise
            finally:
                self.active.discard(tag)
                self.active_by_user[user] -= 1
                if lane is not None:
                    self.active_by_lane[lane] -= 1
                self.finished.append(tag)

        job = Job(user_id=user, run=run, serial_key=lane, label=tag, **kwargs)
        self.jobs[tag] = job
        return job

    async def release(self, *tags: str) -> None:
        for tag in tags:
            self.gates[tag].set()
        await settle()

    def running(self) -> set[str]:
        return set(self.active)


@pytest.fixture
async def make_queue():
    queues: list[JobQueue] = []

    async def make(concurrency: int = 2, per_user: int = 2, queued: int = 10) -> JobQueue:
        queue = JobQueue(
            concurrency=concurrency, max_running_per_user=per_user, max_queued_per_user=queued
        )
        await queue.start()
        queues.append(queue)
        return queue

    yield make
    for queue in queues:
        await queue.stop(grace=1.0)


# ------------------------------------------------------------------------- limits


async def test_global_limit_never_exceeded_under_200_jobs(make_queue) -> None:
    queue = await make_queue(concurrency=3, per_user=2, queued=20)
    rng = random.Random(7)
    seen: list[int] = []
    active = 0
    active_by_user: Counter[int] = Counter()

    def make(user: int) -> Job:
        async def run(job: Job) -> int:
            nonlocal active
            active += 1
            active_by_user[user] += 1
            seen.append(active)
            assert active_by_user[user] <= 2
            try:
                await asyncio.sleep(rng.choice([0, 0, 0.001, 0.002]))
            finally:
                active -= 1
                active_by_user[user] -= 1
            return job.id

        return Job(user_id=user, run=run)

    jobs = [queue.submit(make(i % 20)) for i in range(200)]
    assert queue.running_count <= 3
    finals = await asyncio.wait_for(asyncio.gather(*(queue.wait(j.id) for j in jobs)), 30)
    assert all(j.state is JobState.DONE and j.result == j.id for j in finals)
    assert max(seen) <= 3
    assert queue.max_running_seen == 3
    assert queue.running_count == 0 and queue.queued_count == 0


async def test_per_user_running_limit_leaves_room_for_others(make_queue) -> None:
    queue = await make_queue(concurrency=4, per_user=2, queued=10)
    probe = Probe()
    for i in range(5):
        queue.submit(probe.job(1, f"a{i}"))
    await settle()
    assert probe.running() == {"a0", "a1"}
    assert queue.user_load(1) == (2, 3)
    assert queue.running_count == 2 and queue.queued_count == 3
    queue.submit(probe.job(2, "b0"))
    await settle()
    assert probe.running() == {"a0", "a1", "b0"}  # a free slot, but a is at its limit
    await probe.release(*(f"a{i}" for i in range(5)), "b0")
    await settle()
    assert probe.max_by_user[1] == 2
    assert queue.user_load(1) == (0, 0)


async def test_queued_limit_refuses_with_user_message(make_queue) -> None:
    queue = await make_queue(concurrency=1, per_user=1, queued=10)
    probe = Probe()
    queue.submit(probe.job(1, "running"))
    await settle()
    waiting = [queue.submit(probe.job(1, f"w{i}")) for i in range(10)]
    assert queue.user_load(1) == (1, 10)
    with pytest.raises(QueueFull) as caught:
        queue.submit(probe.job(1, "over"))
    assert str(caught.value) == (
        "You already have 10 requests waiting; wait for some to finish or cancel one."
    )
    assert probe.jobs["over"].id == 0  # never entered the queue
    queue.submit(probe.job(2, "other user"))  # other users are not affected
    assert queue.cancel(waiting[0].id)
    queue.submit(probe.job(1, "fits again"))
    assert queue.user_load(1) == (1, 10)


async def test_queued_limit_counts_only_waiting_jobs(make_queue) -> None:
    queue = await make_queue(concurrency=2, per_user=2, queued=1)
    probe = Probe()
    queue.submit(probe.job(1, "a"))
    queue.submit(probe.job(1, "b"))
    await settle()
    assert queue.user_load(1) == (2, 0)
    queue.submit(probe.job(1, "c"))
    with pytest.raises(QueueFull, match="1 request waiting;"):
        queue.submit(probe.job(1, "d"))


async def test_submit_many_is_all_or_nothing(make_queue) -> None:
    queue = await make_queue(concurrency=1, per_user=1, queued=10)
    probe = Probe()
    queue.submit(probe.job(9, "blocker"))
    for i in range(8):
        queue.submit(probe.job(1, f"w{i}"))
    await settle()
    batch = [probe.job(1, f"batch{i}") for i in range(3)]
    with pytest.raises(QueueFull, match=r"That is 3 images, but you can queue only 2 more right now \(at most 10"):
        queue.submit_many(batch)
    assert all(j.id == 0 for j in batch)
    assert queue.user_load(1) == (0, 8)
    assert queue.queued_count == 8

    too_big = [probe.job(2, f"big{i}") for i in range(11)]
    with pytest.raises(QueueFull, match="That is 11 images, but you can queue only 10 more"):
        queue.submit_many(too_big)
    assert queue.user_load(2) == (0, 0)

    # One user over the limit refuses the whole group, other users' jobs included.
    mixed = [probe.job(3, "x"), probe.job(1, "y1"), probe.job(1, "y2"), probe.job(1, "y3")]
    with pytest.raises(QueueFull):
        queue.submit_many(mixed)
    assert queue.user_load(3) == (0, 0)

    accepted = queue.submit_many([probe.job(1, "ok0"), probe.job(1, "ok1")])
    assert [j.state for j in accepted] == [JobState.QUEUED, JobState.QUEUED]
    assert len({j.id for j in accepted}) == 2
    assert queue.user_load(1) == (0, 10)


async def test_bad_submissions_are_rejected(make_queue) -> None:
    queue = await make_queue()
    probe = Probe()
    job = queue.submit(probe.job(1, "a", gated=False))
    with pytest.raises(ValueError):
        queue.submit(job)
    twice = probe.job(1, "b")
    with pytest.raises(ValueError):
        queue.submit_many([twice, twice])
    with pytest.raises(ValueError):
        queue.submit(probe.job(1, "c", timeout=0))
    with pytest.raises(ValueError):
        JobQueue(concurrency=0, max_running_per_user=1, max_queued_per_user=1)


# ------------------------------------------------------------------------- fairness


async def test_round_robin_newcomer_is_not_starved_by_a_flood(make_queue) -> None:
    queue = await make_queue(concurrency=3, per_user=3, queued=20)
    probe = Probe()
    for i in range(20):
        queue.submit(probe.job(1, f"a{i}"))
    await settle()
    assert probe.started == ["a0", "a1", "a2"]
    queue.submit(probe.job(2, "b0"))
    queue.submit(probe.job(2, "b1"))
    assert queue.position(probe.jobs["b0"].id) == 1
    # Free slots one at a time: the next C starts must include both of B's jobs.
    for tag in ("a0", "a1", "a2"):
        await probe.release(tag)
    assert probe.started[3:6] == ["b0", "a3", "b1"]


async def test_fifo_within_a_user_and_alternation_between_users(make_queue) -> None:
    queue = await make_queue(concurrency=1, per_user=1, queued=10)
    probe = Probe()
    for i in range(3):
        queue.submit(probe.job(1, f"a{i}", gated=False))
    for i in range(3):
        queue.submit(probe.job(2, f"b{i}", gated=False))
    for i in range(2):
        queue.submit(probe.job(3, f"c{i}", gated=False))
    await asyncio.wait_for(asyncio.gather(*(queue.wait(j.id) for j in probe.jobs.values())), 10)
    # a0 started alone; then users never served go first, then strict rotation.
    assert probe.started == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2"]


async def test_jobs_submitted_before_start_wait_for_start() -> None:
    queue = JobQueue(concurrency=2, max_running_per_user=2, max_queued_per_user=5)
    probe = Probe()
    job = queue.submit(probe.job(1, "early", gated=False))
    await settle()
    assert probe.started == [] and job.state is JobState.QUEUED and job.position == 1
    await queue.start()
    assert (await asyncio.wait_for(queue.wait(job.id), 5)).state is JobState.DONE
    assert await queue.stop() == []


# ------------------------------------------------------------------------- serial lanes


async def test_serial_lane_runs_in_order_while_other_lanes_run(make_queue) -> None:
    queue = await make_queue(concurrency=4, per_user=4, queued=10)
    probe = Probe()
    for i in range(3):
        queue.submit(probe.job(1, f"x{i}", lane="chain:1"))
    for i in range(2):
        queue.submit(probe.job(2, f"y{i}", lane="chain:2"))
    queue.submit(probe.job(1, "free"))  # after x1 and x2, which their lane holds back
    await settle()
    assert probe.running() == {"x0", "y0", "free"}
    assert probe.jobs["x1"].state is JobState.QUEUED
    await probe.release("x0")
    assert probe.running() == {"x1", "y0", "free"}
    await probe.release("y0", "x1")
    assert probe.running() == {"x2", "y1", "free"}
    await probe.release("x2", "y1", "free")
    assert [t for t in probe.started if t.startswith("x")] == ["x0", "x1", "x2"]
    assert probe.max_by_lane["chain:1"] == 1 and probe.max_by_lane["chain:2"] == 1
    assert frozenset(("x1", "y0")) in probe.overlaps  # different lanes ran in parallel


async def test_lane_order_holds_across_users(make_queue) -> None:
    queue = await make_queue(concurrency=4, per_user=2, queued=10)
    probe = Probe()
    queue.submit(probe.job(1, "first", lane="chain:7"))
    queue.submit(probe.job(2, "second", lane="chain:7"))
    await settle()
    assert probe.running() == {"first"}  # user 2 is idle, but the lane is not
    await probe.release("first")
    assert probe.running() == {"second"}


async def test_lanes_randomized_keep_order_and_never_overlap(make_queue) -> None:
    queue = await make_queue(concurrency=3, per_user=2, queued=40)
    rng = random.Random(3)
    order: dict[str, list[int]] = defaultdict(list)
    active: Counter[str] = Counter()
    overlap_seen: list[int] = []

    def make(user: int, lane: str, n: int) -> Job:
        async def run(job: Job) -> None:
            active[lane] += 1
            assert active[lane] == 1
            overlap_seen.append(sum(1 for v in active.values() if v))
            order[lane].append(n)
            try:
                await asyncio.sleep(rng.choice([0, 0.001]))
            finally:
                active[lane] -= 1

        return Job(user_id=user, run=run, serial_key=lane)

    jobs = []
    for n in range(60):
        lane = rng.choice(["chain:1", "chain:2", "chain:3"])
        jobs.append(queue.submit(make(rng.randrange(4), lane, n)))
    finals = await asyncio.wait_for(asyncio.gather(*(queue.wait(j.id) for j in jobs)), 30)
    assert all(j.state is JobState.DONE for j in finals)
    for lane, seq in order.items():
        assert seq == sorted(seq), lane
    assert sum(len(seq) for seq in order.values()) == 60
    assert queue.max_running_seen <= 3


# ------------------------------------------------------------------------- positions


async def test_positions_follow_round_robin_and_only_decrease(make_queue) -> None:
    queue = await make_queue(concurrency=1, per_user=1, queued=10)
    probe = Probe()
    calls: dict[str, list[tuple[JobState, int | None]]] = defaultdict(list)

    def recorder(tag: str) -> Any:
        def on_update(job: Job) -> None:
            calls[tag].append((job.state, job.position))

        return on_update

    queue.submit(probe.job(1, "blocker"))
    await settle()
    for tag, user in (("a1", 1), ("a2", 1), ("b1", 2), ("b2", 2)):
        queue.submit(probe.job(user, tag, on_update=recorder(tag)))
    await settle()

    def positions() -> dict[str, int | None]:
        return {t: queue.position(probe.jobs[t].id) for t in ("a1", "a2", "b1", "b2")}

    # User 2 has not been served yet, so goes first; then the two users alternate.
    assert positions() == {"b1": 1, "a1": 2, "b2": 3, "a2": 4}
    await probe.release("blocker")
    assert positions() == {"b1": None, "a1": 1, "b2": 2, "a2": 3}
    await probe.release("b1")
    assert positions() == {"b1": None, "a1": None, "b2": 1, "a2": 2}
    await probe.release("a1", "b2", "a2")
    await settle()
    assert positions() == dict.fromkeys(("a1", "a2", "b1", "b2"))

    for tag, seen in calls.items():
        queued = [pos for state, pos in seen if state is JobState.QUEUED and pos is not None]
        assert queued == sorted(queued, reverse=True), (tag, seen)
        assert len(queued) == len(set(queued)), (tag, seen)  # called on changes only
        assert seen[-1] == (JobState.DONE, None), (tag, seen)
    assert [pos for _, pos in calls["a2"] if pos is not None] == [4, 3, 2, 1]


async def test_async_on_update_is_serialized_and_errors_are_ignored(make_queue, caplog) -> None:
    queue = await make_queue(concurrency=1, per_user=1, queued=10)
    probe = Probe()
    inside = 0
    seen: list[JobState] = []

    async def slow_update(job: Job) -> None:
        nonlocal inside
        inside += 1
        assert inside == 1  # never two calls at once for one job
        seen.append(job.state)
        await asyncio.sleep(0)
        inside -= 1

    def broken_update(job: Job) -> None:
        raise RuntimeError("edit failed")

    job = queue.submit(probe.job(1, "a", on_update=slow_update))
    bad = queue.submit(probe.job(2, "b", on_update=broken_update))
    await settle()
    await probe.release("a", "b")
    await asyncio.wait_for(queue.wait(bad.id), 5)
    await settle()
    assert seen[-1] is JobState.DONE and job.state is JobState.DONE
    assert bad.state is JobState.DONE  # a broken callback does not break the job
    assert any(
        "on_update" in r.getMessage() and f"job {bad.id}" in r.getMessage() for r in caplog.records
    )


# ------------------------------------------------------------------------- cancel


async def test_cancel_queued_job(make_queue) -> None:
    queue = await make_queue(concurrency=1, per_user=1, queued=10)
    probe = Probe()
    queue.submit(probe.job(1, "running"))
    first = queue.submit(probe.job(1, "first"))
    second = queue.submit(probe.job(1, "second"))
    await settle()
    assert queue.position(second.id) == 2
    assert queue.cancel(first.id) is True
    assert first.state is JobState.CANCELLED and first.reason == "cancelled"
    assert queue.position(second.id) == 1
    assert (await queue.wait(first.id)) is first
    assert queue.cancel(first.id) is False  # already over
    assert queue.cancel(12345) is False
    await probe.release("running", "second")
    assert "first" not in probe.started
    assert second.state is JobState.DONE


async def test_cancel_running_job_needs_running_too(make_queue) -> None:
    queue = await make_queue(concurrency=1, per_user=1, queued=10)
    probe = Probe()
    job = queue.submit(probe.job(1, "long"))
    nxt = queue.submit(probe.job(1, "next", gated=False))
    await settle()
    assert job.state is JobState.RUNNING
    assert queue.cancel(job.id) is False
    assert job.state is JobState.RUNNING
    assert queue.cancel(job.id, running_too=True) is True
    final = await asyncio.wait_for(queue.wait(job.id), 5)
    assert final.state is JobState.CANCELLED and final.reason == "cancelled"
    assert probe.cancelled_inside == ["long"]
    assert (await asyncio.wait_for(queue.wait(nxt.id), 5)).state is JobState.DONE


async def test_cancel_before_the_task_first_runs_frees_the_slot(make_queue) -> None:
    queue = await make_queue(concurrency=1, per_user=1, queued=10)
    probe = Probe()
    job = queue.submit(probe.job(1, "instant"))
    assert job.state is JobState.RUNNING  # started synchronously, task not yet stepped
    assert queue.cancel(job.id, running_too=True)
    final = await asyncio.wait_for(queue.wait(job.id), 5)
    assert final.state is JobState.CANCELLED
    assert probe.started == []
    assert queue.running_count == 0 and queue.user_load(1) == (0, 0)
    after = queue.submit(probe.job(1, "after", gated=False))
    assert (await asyncio.wait_for(queue.wait(after.id), 5)).state is JobState.DONE


# ------------------------------------------------------------------------- outcomes


async def test_timeout_cancels_the_run_and_marks_timed_out(make_queue) -> None:
    queue = await make_queue()
    saw_cancel = asyncio.Event()

    async def slow(job: Job) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            saw_cancel.set()
            raise

    job = queue.submit(Job(user_id=1, run=slow, timeout=0.02))
    final = await asyncio.wait_for(queue.wait(job.id), 10)
    assert final.state is JobState.TIMED_OUT and final.reason == "timeout"
    assert isinstance(final.error, TimeoutError)
    assert saw_cancel.is_set()
    assert queue.running_count == 0


async def test_runs_own_timeout_error_is_a_failure(make_queue) -> None:
    queue = await make_queue()

    async def http_timeout(job: Job) -> None:
        raise TimeoutError("read timed out")

    job = queue.submit(Job(user_id=1, run=http_timeout, timeout=30))
    final = await asyncio.wait_for(queue.wait(job.id), 10)
    assert final.state is JobState.FAILED
    assert str(final.error) == "read timed out"


async def test_failing_job_is_recorded_logged_and_others_go_on(make_queue, caplog) -> None:
    queue = await make_queue(concurrency=1, per_user=1, queued=10)
    probe = Probe()
    bad = queue.submit(probe.job(42, "bad", fail=True, gated=False))
    good = queue.submit(probe.job(43, "good", gated=False))
    with caplog.at_level(logging.ERROR, logger="tests.support.reference_queue"):
        assert (await asyncio.wait_for(queue.wait(bad.id), 5)).state is JobState.FAILED
        assert (await asyncio.wait_for(queue.wait(good.id), 5)).state is JobState.DONE
    assert isinstance(bad.error, ValueError) and str(bad.error) == "boom bad"
    assert good.result == "result good"
    assert bad.started_at is not None and bad.finished_at is not None
    assert bad.finished_at >= bad.started_at >= bad.submitted_at
    record = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert f"job {bad.id}" in record.getMessage() and "user 42" in record.getMessage()
    assert record.exc_info is not None


async def test_wait_unknown_job_raises_key_error(make_queue) -> None:
    queue = await make_queue()
    with pytest.raises(KeyError):
        await queue.wait(999)
    assert queue.get(999) is None and queue.position(999) is None


async def test_finished_jobs_are_forgotten_after_a_while(make_queue, monkeypatch) -> None:
    queue = await make_queue(concurrency=2, per_user=2, queued=10)
    monkeypatch.setattr(queue, "KEEP_FINISHED", 3)
    probe = Probe()
    jobs = [queue.submit(probe.job(1, f"j{i}", gated=False)) for i in range(5)]
    for job in jobs:
        await asyncio.wait_for(queue.wait(job.id), 5)
    assert [queue.get(j.id) is not None for j in jobs] == [False, False, True, True, True]


# ------------------------------------------------------------------------- shutdown


async def test_stop_cancels_everything_and_returns_interrupted_jobs() -> None:
    queue = JobQueue(concurrency=2, max_running_per_user=2, max_queued_per_user=10)
    await queue.start()
    probe = Probe()
    updates: list[tuple[int, JobState]] = []
    running = [queue.submit(probe.job(1, f"r{i}")) for i in range(2)]
    waiting = [
        queue.submit(probe.job(2, f"w{i}", on_update=lambda j: updates.append((j.id, j.state))))
        for i in range(4)
    ]
    done = queue.submit(probe.job(3, "done"))
    await settle()
    assert probe.running() == {"r0", "r1"}
    await probe.release("r0")
    assert probe.running() == {"r1", "w0"}
    await probe.release("w0")
    assert probe.running() == {"r1", "done"}
    await probe.release("done")
    assert done.state is JobState.DONE
    assert probe.running() == {"r1", "w1"}

    interrupted = await queue.stop(grace=5)
    assert [j.label for j in interrupted] == ["r1", "w1", "w2", "w3"]
    assert all(j.state is JobState.CANCELLED and j.reason == "shutdown" for j in interrupted)
    assert set(probe.cancelled_inside) == {"r1", "w1"}
    assert running[0].state is JobState.DONE and waiting[0].state is JobState.DONE
    assert (waiting[3].id, JobState.CANCELLED) in updates  # final updates were delivered
    assert queue.running_count == 0 and queue.queued_count == 0
    with pytest.raises(QueueClosed) as caught:
        queue.submit(probe.job(1, "late"))
    assert isinstance(caught.value, QueueFull) and "restarting" in str(caught.value)
    assert await queue.stop() == []


async def test_stop_gives_up_on_a_job_that_ignores_cancellation() -> None:
    queue = JobQueue(concurrency=1, max_running_per_user=1, max_queued_per_user=10)
    await queue.start()
    entered = asyncio.Event()
    release = asyncio.Event()

    async def stubborn(job: Job) -> str:
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await release.wait()  # ignores the shutdown
        return "late"

    job = queue.submit(Job(user_id=1, run=stubborn))
    await entered.wait()
    interrupted = await asyncio.wait_for(queue.stop(grace=0.05), 5)
    assert interrupted == [job]
    assert job.state is JobState.CANCELLED and job.reason == "shutdown"
    release.set()
    await settle()
    assert job.state is JobState.CANCELLED  # the late return does not resurrect it


# ------------------------------------------------------------------------- stateful


class QueueMachine(RuleBasedStateMachine):
    """Random submits, submit_many, releases, cancels and timeouts against the invariants."""

    USERS = st.integers(min_value=1, max_value=4)
    LANES = st.sampled_from([None, None, "chain:a", "chain:b"])

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.queue: JobQueue | None = None
        self.jobs: list[Job] = []
        self.gates: dict[int, asyncio.Event] = {}
        self.plan_fail: dict[int, bool] = {}
        self.cancelled_queued: set[int] = set()
        self.entered: list[int] = []
        self.active: set[int] = set()
        self.active_by_user: Counter[int] = Counter()
        self.active_by_lane: Counter[str] = Counter()
        self.violations: list[str] = []
        self.last_positions: dict[int, int] = {}

    @property
    def q(self) -> JobQueue:
        assert self.queue is not None
        return self.queue

    def drive(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def call(self, fn: Any) -> Any:
        """Run a sync queue method inside the loop (it creates tasks)."""

        async def inside() -> Any:
            return fn()

        return self.drive(inside())

    @initialize(concurrency=st.integers(1, 4), per_user=st.integers(1, 3), queued=st.integers(1, 4))
    def setup(self, concurrency: int, per_user: int, queued: int) -> None:
        self.c, self.r, self.qmax = concurrency, per_user, queued

        async def make() -> JobQueue:
            queue = JobQueue(
                concurrency=concurrency, max_running_per_user=per_user, max_queued_per_user=queued
            )
            await queue.start()
            return queue

        self.queue = self.drive(make())

    def new_job(self, user: int, lane: str | None, fail: bool, timeout: bool) -> Job:
        gate = asyncio.Event()

        async def run(job: Job) -> None:
            self.entered.append(job.id)
            self.active.add(job.id)
            self.active_by_user[user] += 1
            if len(self.active) > self.c:
                self.violations.append(f"{len(self.active)} running > {self.c}")
            if self.active_by_user[user] > self.r:
                self.violations.append(f"user {user} runs {self.active_by_user[user]}")
            if lane is not None:
                self.active_by_lane[lane] += 1
                if self.active_by_lane[lane] > 1:
                    self.violations.append(f"lane {lane} overlaps")
            try:
                await gate.wait()
                if self.plan_fail[job.id]:
                    raise RuntimeError("planned failure")
            finally:
                self.active.discard(job.id)
                self.active_by_user[user] -= 1
                if lane is not None:
                    self.active_by_lane[lane] -= 1

        job = Job(user_id=user, run=run, serial_key=lane, timeout=0.002 if timeout else None)
        job.data["gate"] = gate
        job.data["fail"] = fail
        return job

    def accepted(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.jobs.append(job)
            self.gates[job.id] = job.data["gate"]
            self.plan_fail[job.id] = job.data["fail"]

    def check_exact_positions(self, extra: list[Job]) -> None:
        """Right after a submit the positions are recomputed: exactly 1..N, no clamping."""
        waiting = [j for j in (*self.jobs, *extra) if j.state is JobState.QUEUED]
        assert sorted(self.q.position(j.id) or 0 for j in waiting) == list(
            range(1, len(waiting) + 1)
        )

    def after_step(self, *, submitted: bool) -> None:
        self.drive(settle(10))
        waiting = [j for j in self.jobs if j.state is JobState.QUEUED]
        positions = {j.id: self.q.position(j.id) for j in waiting}
        assert all(p is not None and 1 <= p <= len(waiting) for p in positions.values())
        if not submitted:
            for job_id, pos in positions.items():
                assert pos is not None
                assert pos <= self.last_positions.get(job_id, pos), "position went up"
        self.last_positions = {k: v for k, v in positions.items() if v is not None}

    # Each check below runs inside one synchronous call, so no job moves between the
    # "before" reading and the queue operation.

    @rule(user=USERS, lane=LANES, fail=st.booleans(), timeout=st.booleans())
    def submit(self, user: int, lane: str | None, fail: bool, timeout: bool) -> None:
        job = self.new_job(user, lane, fail, timeout and not fail)

        def act() -> bool:
            waiting_before = self.q.user_load(user)[1]
            try:
                self.q.submit(job)
            except QueueFull:
                assert waiting_before + 1 > self.qmax
                assert job.id == 0
                return False
            assert waiting_before + 1 <= self.qmax
            self.check_exact_positions([job])
            return True

        ok = self.call(act)
        if ok:
            self.accepted([job])
        self.after_step(submitted=ok)

    @rule(users=st.lists(USERS, min_size=1, max_size=5), lane=LANES)
    def submit_many(self, users: list[int], lane: str | None) -> None:
        jobs = [self.new_job(u, lane, False, False) for u in users]

        def act() -> bool:
            before = {u: self.q.user_load(u)[1] for u in set(users)}
            total_before = self.q.queued_count + self.q.running_count
            fits = all(before[u] + users.count(u) <= self.qmax for u in before)
            try:
                self.q.submit_many(jobs)
            except QueueFull:
                assert not fits
                assert all(j.id == 0 for j in jobs)
                assert self.q.queued_count + self.q.running_count == total_before
                return False
            assert fits
            assert self.q.queued_count + self.q.running_count == total_before + len(jobs)
            self.check_exact_positions(jobs)
            return True

        ok = self.call(act)
        if ok:
            self.accepted(jobs)
        self.after_step(submitted=ok)

    # Preconditions must not depend on timing (a timeout may end a job at any step), or
    # hypothesis sees the rule choice change between replays.
    @precondition(lambda self: self.queue is not None and bool(self.jobs))
    @rule(pick=st.integers(min_value=0))
    def release(self, pick: int) -> None:
        running = sorted(self.active)
        if running:
            self.gates[running[pick % len(running)]].set()
        self.after_step(submitted=False)

    @precondition(lambda self: self.queue is not None and bool(self.jobs))
    @rule(pick=st.integers(min_value=0), running_too=st.booleans())
    def cancel(self, pick: int, running_too: bool) -> None:
        job = self.jobs[pick % len(self.jobs)]

        def act() -> None:
            state = job.state
            result = self.q.cancel(job.id, running_too=running_too)
            if state is JobState.QUEUED:
                assert result is True and job.state is JobState.CANCELLED
                self.cancelled_queued.add(job.id)
            elif state is JobState.RUNNING:
                assert result is running_too
            else:
                assert result is False

        self.call(act)
        self.after_step(submitted=False)

    @invariant()
    def limits_hold(self) -> None:
        if self.queue is None:
            return
        assert not self.violations, self.violations
        assert self.q.running_count <= self.c
        assert self.q.max_running_seen <= self.c
        for user in range(1, 5):
            running, queued = self.q.user_load(user)
            assert running <= self.r and queued <= self.qmax
        assert self.q.queued_count == sum(1 for j in self.jobs if j.state is JobState.QUEUED)
        assert self.q.running_count == sum(1 for j in self.jobs if j.state is JobState.RUNNING)

    @invariant()
    def lanes_and_users_start_in_order(self) -> None:
        by_id = {j.id: j for j in self.jobs}
        lanes: dict[str, list[int]] = defaultdict(list)
        free: dict[int, list[int]] = defaultdict(list)
        for job_id in self.entered:
            job = by_id[job_id]
            if job.serial_key is not None:
                lanes[job.serial_key].append(job_id)
            else:
                free[job.user_id].append(job_id)
        for seq in (*lanes.values(), *free.values()):
            assert seq == sorted(seq)

    def teardown(self) -> None:
        try:
            if self.queue is None:
                return
            for gate in self.gates.values():
                gate.set()

            async def finish() -> list[Job]:
                return await asyncio.wait_for(
                    asyncio.gather(*(self.q.wait(j.id) for j in self.jobs)), 10
                )

            finals = self.drive(finish())
            assert all(j.state in FINAL for j in finals)
            assert not self.violations, self.violations
            for job in finals:
                assert job.position is None and job.finished_at is not None
                if job.id in self.cancelled_queued:
                    assert job.state is JobState.CANCELLED and job.id not in self.entered
                elif job.state is JobState.DONE:
                    assert not self.plan_fail[job.id] and job.id in self.entered
                elif job.state is JobState.FAILED:
                    assert self.plan_fail[job.id] and isinstance(job.error, RuntimeError)
                elif job.state is JobState.TIMED_OUT:
                    assert job.timeout is not None
            assert self.q.running_count == 0 and self.q.queued_count == 0
            assert self.drive(self.q.stop(grace=1)) == []
        finally:
            # After a failed example, end whatever is still pending before closing the loop.
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.wait(pending, timeout=5))
            self.loop.close()


QueueMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestQueueInvariants = QueueMachine.TestCase
