"""The reference model of the queue's rules: the in-process job queue of the first build.

The bot's queue is now the database (`Store.claim_job`, decided across every process); this
pure asyncio model of the same rules stays as the specification its claims are checked
against (tests/unit/adapters/store/test_queue.py) and is itself tested in
tests/unit/support/test_reference_queue.py.

Scheduling, in one paragraph: whenever a slot may have freed (submit, finish, cancel, start),
the queue starts jobs while fewer than `concurrency` run. Each pick walks the users who have
waiting jobs, least recently served first (round-robin: a user who just got a slot goes to the
back), skips users at their running limit, and takes that user's oldest waiting job that its
serial lane allows to start. A lane (`serial_key`) runs one job at a time in arrival order; a
job held back by its lane does not hold back anything else.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # the run raised; the exception is on `Job.error`
    CANCELLED = "cancelled"  # `Job.reason` says by whom: "cancelled" or "shutdown"
    TIMED_OUT = "timed_out"

    @property
    def is_final(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


class QueueFull(Exception):
    """Refused at submit time (or by `check_room` before it). The message is for the user."""


class QueueClosed(QueueFull):
    """Submitted after `stop()`: the bot is shutting down."""


@dataclass(eq=False)
class Job:
    user_id: int
    run: Callable[[Job], Awaitable[Any]]
    timeout: float | None = None  # seconds of running time (queue wait not counted)
    serial_key: str | None = None  # e.g. "chain:42": same key -> one at a time, in order
    # Sync or async; called (coalesced, never concurrently for one job) after the job's position
    # or state changed. It reads the job as it is at call time. Exceptions are logged and ignored.
    on_update: Callable[[Job], Any] | None = None
    label: str = ""  # for logs
    data: dict[str, Any] = field(default_factory=dict)  # the caller's context

    # Set by the queue.
    id: int = field(default=0, init=False)
    state: JobState = field(default=JobState.QUEUED, init=False)
    position: int | None = field(default=None, init=False)  # 1-based while queued
    result: Any = field(default=None, init=False, repr=False)
    error: BaseException | None = field(default=None, init=False)  # FAILED / TIMED_OUT
    reason: str | None = field(default=None, init=False)  # CANCELLED / TIMED_OUT: why
    submitted_at: float = field(default=0.0, init=False)  # wall clock (time.time())
    started_at: float | None = field(default=None, init=False)
    finished_at: float | None = field(default=None, init=False)
    _done: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    @property
    def finished(self) -> bool:
        return self.state.is_final

    def describe(self) -> str:
        """Context for log lines: job id, user id, label."""
        label = f" {self.label!r}" if self.label else ""
        return f"job {self.id}{label} (user {self.user_id})"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class JobQueue:
    # Finished jobs stay reachable through get()/wait() for a while, then are forgotten so a bot
    # running for weeks does not keep every result in memory.
    KEEP_FINISHED = 1000

    def __init__(
        self, *, concurrency: int, max_running_per_user: int, max_queued_per_user: int
    ) -> None:
        if concurrency < 1 or max_running_per_user < 1 or max_queued_per_user < 1:
            raise ValueError("queue limits must be at least 1")
        self._concurrency = concurrency
        self._max_running_per_user = max_running_per_user
        self._max_queued_per_user = max_queued_per_user

        self._next_id = 1
        self._jobs: dict[int, Job] = {}
        self._finished_ids: OrderedDict[int, None] = OrderedDict()
        self._waiting: dict[int, deque[Job]] = {}  # user id -> FIFO; only users with jobs
        self._lanes: dict[str, deque[Job]] = {}  # serial key -> waiting jobs, arrival order
        self._busy_lanes: set[str] = set()
        self._running: dict[int, asyncio.Task[None]] = {}  # job id -> its task
        self._running_by_user: dict[int, int] = {}
        self._last_served: dict[int, int] = {}  # user id -> serve sequence number
        self._serve_seq = 0
        self._queued = 0
        self._max_running_seen = 0

        self._dirty: set[int] = set()  # job ids with an on_update call pending
        self._pumps: dict[int, asyncio.Task[None]] = {}
        self._started = False
        self._closed = False

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Begin running jobs (submitted ones wait until then)."""
        if self._closed:
            raise RuntimeError("a stopped JobQueue cannot be restarted")
        self._started = True
        self._after_change(allow_increase=False)

    async def stop(self, *, grace: float = 5.0) -> list[Job]:
        """Cancel waiting jobs and running tasks; return every job this interrupted.

        Waiting jobs end CANCELLED with reason "shutdown" at once. Running tasks are cancelled
        and awaited for up to `grace` seconds; one that ignores its cancellation is abandoned
        and its job marked CANCELLED ("shutdown") anyway. Pending on_update calls get what is
        left of the grace period. The returned jobs (ordered by id) were queued or running
        when stop() was called; the caller persists them as interrupted.
        """
        if self._closed:
            return []
        self._closed = True
        deadline = time.monotonic() + grace
        interrupted: list[Job] = []

        waiting = sorted((j for q in self._waiting.values() for j in q), key=lambda j: j.id)
        self._waiting.clear()
        self._lanes.clear()
        self._queued = 0
        for job in waiting:
            self._finalize(job, JobState.CANCELLED, reason="shutdown")
        interrupted.extend(waiting)

        tasks = dict(self._running)
        for job_id, task in tasks.items():
            job = self._jobs[job_id]
            job.reason = "shutdown"
            task.cancel()
            interrupted.append(job)
        if tasks:
            _, stuck = await asyncio.wait(tasks.values(), timeout=max(0.0, grace))
            for job_id, task in tasks.items():
                if task in stuck:
                    job = self._jobs[job_id]
                    log.warning("%s ignored cancellation at shutdown; abandoned", job.describe())
                    self._release(job)
                    self._finalize(job, JobState.CANCELLED, reason="shutdown")

        pumps = list(self._pumps.values())
        if pumps:
            _, late = await asyncio.wait(pumps, timeout=max(0.0, deadline - time.monotonic()))
            for pump in late:
                pump.cancel()
        interrupted.sort(key=lambda j: j.id)
        return interrupted

    # ---------------------------------------------------------------- submitting

    def submit(self, job: Job) -> Job:
        """Queue one job (raises QueueFull over the user's waiting limit). Call from the loop."""
        return self.submit_many([job])[0]

    def submit_many(self, jobs: Sequence[Job]) -> list[Job]:
        """Queue a group atomically: every job is accepted, or QueueFull and none is."""
        jobs = list(jobs)
        if len({id(j) for j in jobs}) != len(jobs):
            raise ValueError("the same Job appears twice")
        for job in jobs:
            if job.id:
                raise ValueError(f"{job.describe()} was already submitted")
            if job.timeout is not None and job.timeout <= 0:
                raise ValueError(f"job timeout must be positive, got {job.timeout}")
        if self._closed:
            raise QueueClosed("The bot is restarting; try again in a minute.")
        adding: dict[int, int] = {}
        for job in jobs:
            adding[job.user_id] = adding.get(job.user_id, 0) + 1
        for user_id, count in adding.items():
            self.check_room(user_id, count)

        now = time.time()
        for job in jobs:
            job.id = self._next_id
            self._next_id += 1
            job.submitted_at = now
            self._jobs[job.id] = job
            self._waiting.setdefault(job.user_id, deque()).append(job)
            if job.serial_key is not None:
                self._lanes.setdefault(job.serial_key, deque()).append(job)
            self._queued += 1
        # A newcomer may rightly move ahead of a flooding user's later jobs: positions may grow.
        self._after_change(allow_increase=True)
        return jobs

    def check_room(self, user_id: int, adding: int = 1) -> None:
        """The one queue-room check: QueueFull unless `adding` more jobs fit in the user's
        waiting limit. Callers use it to refuse before acknowledging or charging."""
        limit = self._max_queued_per_user
        waiting = len(self._waiting.get(user_id, ()))
        if waiting + adding <= limit:
            return
        if adding == 1:
            raise QueueFull(
                f"You already have {_plural(waiting, 'request')} waiting; "
                "wait for some to finish or cancel one."
            )
        room = max(0, limit - waiting)
        raise QueueFull(
            f"That is {adding} images, but you can queue only {room} more right now "
            f"(at most {limit} waiting at a time). Nothing was queued or charged; use fewer "
            "or wait for your queued images to finish."
        )

    # ---------------------------------------------------------------- queries

    def get(self, job_id: int) -> Job | None:
        return self._jobs.get(job_id)

    def position(self, job_id: int) -> int | None:
        """1-based place in line for a waiting job; None once it runs or ends (or unknown)."""
        job = self._jobs.get(job_id)
        return job.position if job is not None and job.state is JobState.QUEUED else None

    async def wait(self, job_id: int) -> Job:
        """The job once it reaches a final state. KeyError if the id is unknown (or forgotten)."""
        job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        await job._done.wait()
        return job

    def user_load(self, user_id: int) -> tuple[int, int]:
        """(running, queued) for one user."""
        return self._running_by_user.get(user_id, 0), len(self._waiting.get(user_id, ()))

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def queued_count(self) -> int:
        return self._queued

    @property
    def max_running_seen(self) -> int:
        return self._max_running_seen

    # ---------------------------------------------------------------- cancel

    def cancel(self, job_id: int, *, running_too: bool = False) -> bool:
        """Cancel a waiting job (at once), or with running_too a running one (its task gets
        CancelledError; the job ends CANCELLED when the task unwinds). False if nothing to do."""
        job = self._jobs.get(job_id)
        if job is None or job.state.is_final:
            return False
        if job.state is JobState.QUEUED:
            self._remove_waiting(job)
            self._finalize(job, JobState.CANCELLED, reason="cancelled")
            self._after_change(allow_increase=False)
            return True
        if not running_too:
            return False
        task = self._running.get(job_id)
        if task is None:
            return False
        if job.reason is None:
            job.reason = "cancelled"
        task.cancel()
        return True

    # ---------------------------------------------------------------- scheduling

    def _after_change(self, *, allow_increase: bool) -> None:
        if self._started and not self._closed:
            self._schedule()
        self._refresh_positions(allow_increase=allow_increase)

    def _rotation(self) -> list[int]:
        """Users with waiting jobs, least recently served first (ties: oldest waiting job)."""
        return sorted(
            self._waiting, key=lambda u: (self._last_served.get(u, 0), self._waiting[u][0].id)
        )

    def _lane_allows(self, job: Job) -> bool:
        key = job.serial_key
        return key is None or (key not in self._busy_lanes and self._lanes[key][0] is job)

    def _pick(self) -> Job | None:
        for user_id in self._rotation():
            if self._running_by_user.get(user_id, 0) >= self._max_running_per_user:
                continue
            for job in self._waiting[user_id]:
                if self._lane_allows(job):
                    return job
        return None

    def _schedule(self) -> None:
        while len(self._running) < self._concurrency:
            job = self._pick()
            if job is None:
                return
            self._start(job)

    def _start(self, job: Job) -> None:
        self._remove_waiting(job)
        self._serve_seq += 1
        self._last_served[job.user_id] = self._serve_seq
        self._running_by_user[job.user_id] = self._running_by_user.get(job.user_id, 0) + 1
        if job.serial_key is not None:
            self._busy_lanes.add(job.serial_key)
        job.state = JobState.RUNNING
        job.position = None
        job.started_at = time.time()
        task = asyncio.get_running_loop().create_task(self._run(job), name=f"job-{job.id}")
        task.add_done_callback(lambda _task: self._task_done(job))
        self._running[job.id] = task
        self._max_running_seen = max(self._max_running_seen, len(self._running))
        self._notify(job)

    def _remove_waiting(self, job: Job) -> None:
        queue = self._waiting[job.user_id]
        queue.remove(job)
        if not queue:
            del self._waiting[job.user_id]
        if job.serial_key is not None:
            lane = self._lanes[job.serial_key]
            lane.remove(job)
            if not lane:
                del self._lanes[job.serial_key]
        self._queued -= 1

    def _release(self, job: Job) -> bool:
        """Give back a running job's slot, user count and lane. False if already released."""
        if self._running.pop(job.id, None) is None:
            return False
        left = self._running_by_user[job.user_id] - 1
        if left:
            self._running_by_user[job.user_id] = left
        else:
            del self._running_by_user[job.user_id]
        if job.serial_key is not None:
            self._busy_lanes.discard(job.serial_key)
        return True

    async def _run(self, job: Job) -> None:
        deadline = asyncio.timeout(job.timeout)  # None: no deadline
        state: JobState = JobState.DONE
        result: Any = None
        error: BaseException | None = None
        reason: str | None = None
        try:
            async with deadline:
                result = await job.run(job)
        except asyncio.CancelledError:
            state, reason = JobState.CANCELLED, job.reason or "cancelled"
            log.info("%s cancelled (%s)", job.describe(), reason)
        except TimeoutError as exc:
            # The run's own TimeoutError (an HTTP timeout, say) is a failure, not our deadline.
            if deadline.expired() and job.reason is None:
                state, error, reason = JobState.TIMED_OUT, exc, "timeout"
                log.warning("%s timed out after %ss", job.describe(), job.timeout)
            else:
                state, error = JobState.FAILED, exc
                log.error("%s failed", job.describe(), exc_info=exc)
        except Exception as exc:
            state, error = JobState.FAILED, exc
            log.error("%s failed", job.describe(), exc_info=exc)
        except BaseException as exc:
            # KeyboardInterrupt, SystemExit, GeneratorExit: the loop is going down. Record the
            # job as failed and let it go; scheduling or callbacks here would fail anyway.
            if self._release(job):
                job.state, job.error, job.position = JobState.FAILED, exc, None
                job.finished_at = time.time()
            raise
        if not self._release(job):
            return  # stop() gave up on this task and already finalized the job
        self._finalize(job, state, result=result, error=error, reason=reason)
        self._after_change(allow_increase=False)

    def _task_done(self, job: Job) -> None:
        # A task cancelled before its first step never enters _run's try block; without this
        # its slot, user count and lane would leak.
        if self._release(job):
            self._finalize(job, JobState.CANCELLED, reason=job.reason or "cancelled")
            self._after_change(allow_increase=False)

    def _finalize(
        self,
        job: Job,
        state: JobState,
        *,
        result: Any = None,
        error: BaseException | None = None,
        reason: str | None = None,
    ) -> None:
        job.state = state
        job.result = result
        job.error = error
        job.reason = reason
        job.position = None
        job.finished_at = time.time()
        job._done.set()
        self._notify(job)
        self._finished_ids[job.id] = None
        while len(self._finished_ids) > self.KEEP_FINISHED:
            old_id, _ = self._finished_ids.popitem(last=False)
            self._jobs.pop(old_id, None)

    # ---------------------------------------------------------------- positions

    def _simulated_order(self) -> Iterable[Job]:
        """Waiting jobs in the order round-robin would start them, ignoring limits and lanes."""
        queues = [self._waiting[u] for u in self._rotation()]
        depth = max((len(q) for q in queues), default=0)
        for i in range(depth):
            for queue in queues:
                if i < len(queue):
                    yield queue[i]

    def _refresh_positions(self, *, allow_increase: bool) -> None:
        # Starts, finishes and cancels never move a waiting job back in line: the simulation
        # already guarantees that except when a lane lets a user's later job start first, and
        # the clamp covers that case. Only a new submission may honestly push a job back.
        for place, job in enumerate(self._simulated_order(), start=1):
            old = job.position
            new = place if old is None or allow_increase else min(old, place)
            if new != old:
                job.position = new
                self._notify(job)

    # ---------------------------------------------------------------- on_update

    def _notify(self, job: Job) -> None:
        if job.on_update is None:
            return
        self._dirty.add(job.id)
        if job.id not in self._pumps:
            self._pumps[job.id] = asyncio.get_running_loop().create_task(
                self._pump(job), name=f"job-{job.id}-update"
            )

    async def _pump(self, job: Job) -> None:
        """Deliver on_update calls for one job in order, coalescing bursts of changes."""
        try:
            while job.id in self._dirty:
                self._dirty.discard(job.id)
                assert job.on_update is not None
                try:
                    outcome = job.on_update(job)
                    if inspect.isawaitable(outcome):
                        await outcome
                except Exception:
                    log.exception("on_update for %s raised; ignored", job.describe())
        finally:
            self._pumps.pop(job.id, None)
            self._dirty.discard(job.id)
