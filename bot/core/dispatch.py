"""The durable queue's worker side: each process claims jobs from the database, holds them
under a lease it keeps renewing, and gives them back on shutdown.

The database decides what runs (bot.adapters.store: `claim_job` picks fairly under the global,
per-user and lane limits, across every process); this class only asks it often enough. It
asks at once when something in this process may have freed a slot or added work (`wake`),
and every `poll_seconds` for what other processes did. A job whose lease this process loses
(it was paused longer than the lease, say, and another process took the job over) is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.adapters.store import JobRow, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DispatchLimits:
    concurrency: int  # jobs at Gemini at once, across every process
    max_running_per_user: int
    lease_seconds: float = 20.0
    poll_seconds: float = 0.5


Runner = Callable[[JobRow], Awaitable[None]]


class Dispatcher:
    def __init__(
        self, *, store: Store, limits: DispatchLimits, run: Runner, worker_id: str | None = None
    ) -> None:
        self.store = store
        self.limits = limits
        self.run = run
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._closing = False
        self._claiming = asyncio.Lock()  # one round of claims at a time in this process

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._claim_loop(), name="dispatch-claims")
        self._renewer = asyncio.create_task(self._renew_loop(), name="dispatch-leases")

    async def stop(self, *, grace: float = 2.0) -> list[int]:
        """Stop claiming, stop the jobs this process holds and hand them back to the queue
        (they keep their place; any process resumes them). Returns their ids."""
        self._closing = True
        for task in (self._loop_task, self._renewer):
            if task is not None:
                task.cancel()
        held = dict(self._tasks)
        for task in held.values():
            task.cancel()
        if held:
            await asyncio.wait(held.values(), timeout=grace)
        for job_id in held:
            with contextlib.suppress(Exception):
                await self.store.release_job(job_id, self.worker_id)
        return sorted(held)

    def wake(self) -> None:
        """Something may have changed (a job finished here): claim soon."""
        self._wake.set()

    async def claim_now(self) -> None:
        """Claim what may start, before returning (a job admitted here that can start at once
        starts before anyone shows it a place in line)."""
        if self._closing:
            return
        try:
            await self._claim_round()
        except Exception:
            log.exception("claiming jobs failed")

    @property
    def held(self) -> list[int]:
        return list(self._tasks)

    def holds(self, job_id: int) -> bool:
        return job_id in self._tasks

    # ---------------------------------------------------------------- claiming

    async def _claim_loop(self) -> None:
        while not self._closing:
            self._wake.clear()
            try:
                await self._claim_round()
            except Exception:  # the database hiccuped: try again at the next tick
                log.exception("claiming jobs failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.limits.poll_seconds):
                    await self._wake.wait()

    async def _claim_round(self) -> None:
        # One transaction takes every job that may start now; fewer means no more can.
        async with self._claiming:
            if self._closing:
                return
            jobs = await self.store.claim_jobs(
                self.worker_id,
                lease_seconds=self.limits.lease_seconds,
                concurrency=self.limits.concurrency,
                max_running_per_user=self.limits.max_running_per_user,
                at_most=self.limits.concurrency,
            )
            for job in jobs:
                self._tasks[job.id] = asyncio.create_task(self._run(job), name=f"job-{job.id}")

    async def _run(self, job: JobRow) -> None:
        try:
            await self.run(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s crashed (generation %s)", job.id, job.generation_id)
        finally:
            self._tasks.pop(job.id, None)
            self.wake()

    # ---------------------------------------------------------------- leases

    async def _renew_loop(self) -> None:
        interval = self.limits.lease_seconds / 3
        while not self._closing:
            await asyncio.sleep(interval)
            for job_id, task in list(self._tasks.items()):
                try:
                    kept = await self.store.renew_lease(
                        job_id, self.worker_id, lease_seconds=self.limits.lease_seconds
                    )
                except Exception:
                    log.warning("could not renew the lease of job %s", job_id, exc_info=True)
                    continue
                if not kept and not task.done():
                    log.warning("job %s was taken over by another process; stopping it", job_id)
                    task.cancel()
