"""Jobs: the durable queue. The database is the truth about every job (product.md §9).

Two layers:

* The record the in-process queue keeps today (bot/jobs.py runs the jobs): `create_job`,
  `update_job`, `open_jobs`, `get_job`.
* The primitives for a queue shared by several processes, each decided in ONE transaction:
  `admit` (queued limit + daily quotas + the rows, all or nothing), `claim_jobs` (fair picks
  under the global, per-user and lane limits, with a lease), `renew_lease`, `finish_job`,
  `release_job`, `cancel_queued_job`, `recover_expired_jobs`, `queue_positions`,
  `job_counts`.

How races are excluded: on SQLite every write transaction holds the database's write lock from
its first statement (BEGIN IMMEDIATE), so these transactions simply run one after another, in
every process. On PostgreSQL each takes an advisory lock named after what it decides first:
"jobs:claim" for claims (one claimer at a time across all processes: the global limit and the
fairness order are facts about all running jobs, which `FOR UPDATE SKIP LOCKED` alone cannot
count), and "admit:guild:G" then "admit:user:U" for admissions (always in that order, so two
admissions never deadlock). Everything else changes one row under a WHERE that states the
expected state (`status = 'running' AND lease_owner = me`), which is atomic on both engines.

Fairness mirrors bot/jobs.py exactly: users with waiting jobs in the order least recently
served first (users never served first, ties broken by their oldest waiting job), skipping
users at their running limit; the chosen user's oldest waiting job that its serial lane allows
(a lane runs one job at a time, in arrival order; a job held back by its lane does not hold
back the user's other jobs).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from bot.adapters.store._base import StoreBase, from_json, to_json
from bot.adapters.store._generations import check_generation, generation_in, insert_generation
from bot.adapters.store._usage import reserved_in
from bot.adapters.store.db import Record, Tx
from bot.adapters.store.rows import (
    JOB_FINAL_STATUSES,
    JOB_STATUSES,
    AdmitLimits,
    Admitted,
    JobRow,
    NewJob,
    RecoveredJobs,
    RefusalKind,
    Refused,
)
from bot.adapters.store.tables import batch_sheets, generations, intake, job_turns
from bot.adapters.store.tables import jobs as jobs_table

# Float sums of prices (0.134 + 0.067 …) must not refuse a request that exactly fits.
_EPSILON = 1e-9

j = jobs_table.c
_SELECT = sa.select(*jobs_table.c)
# Economy jobs (Gemini's Batch API) wait in this lane: admitted like any job (quotas, queue
# room), never claimed here nor counted in the line; bot.adapters.store._economy runs them.
ECONOMY_LANE = "economy"
_INTERACTIVE = sa.func.coalesce(j.lane, "") != ECONOMY_LANE


def _job(r: Record) -> JobRow:
    return JobRow(
        id=int(r["id"]),
        generation_id=int(r["generation_id"]),
        user_id=int(r["user_id"]),
        status=r["status"],
        payload=from_json(r["payload"]),
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
        guild_id=r["guild_id"],
        lane=r["lane"],
        group_id=r["group_id"],
        lease_owner=r["lease_owner"],
        lease_expires_at=r["lease_expires_at"],
        attempts=int(r["attempts"]),
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        error=r["error"],
        posting=bool(r["posting"]),
    )


def _check_lease(lease_seconds: float) -> float:
    if not lease_seconds > 0:
        raise ValueError("lease_seconds must be positive")
    return float(lease_seconds)


async def _count(tx: Tx, *where: Any) -> int:
    return int(await tx.scalar(sa.select(sa.func.count()).select_from(jobs_table).where(*where)))


def _next_job_query(max_running_per_user: int) -> sa.Select[Any]:
    """The queued job round-robin would start next, within the per-user and lane limits."""
    q, r = jobs_table.alias("q"), jobs_table.alias("r")
    user_running = (
        sa.select(sa.func.count())
        .where(r.c.status == "running", r.c.posting == 0, r.c.user_id == j.user_id)
        .scalar_subquery()
    )
    lane_busy = sa.exists().where(r.c.status == "running", r.c.lane == j.lane)
    lane_head = (
        sa.select(sa.func.min(q.c.id))
        .where(q.c.status == "queued", q.c.lane == j.lane)
        .scalar_subquery()
    )
    user_oldest = (
        sa.select(sa.func.min(q.c.id))
        .where(q.c.status == "queued", q.c.user_id == j.user_id)
        .scalar_subquery()
    )
    return (
        sa.select(j.id, j.user_id)
        .select_from(jobs_table.outerjoin(job_turns, job_turns.c.user_id == j.user_id))
        .where(
            j.status == "queued",
            _INTERACTIVE,
            user_running < max_running_per_user,
            sa.or_(j.lane.is_(None), sa.and_(~lane_busy, j.id == lane_head)),
        )
        .order_by(sa.func.coalesce(job_turns.c.served, 0), user_oldest, j.id)
        .limit(1)
    )


class JobsMixin(StoreBase):
    # -- the record kept by today's in-process queue --------------------------------------

    async def create_job(self, *, generation_id: int, user_id: int, payload: dict[str, Any]) -> int:
        """A queued job for a generation. `payload`: whatever resuming/notifying needs (channel,
        progress message id, interaction token, …) — JSON-serialisable."""
        now = self._now()
        async with self._db.transaction() as tx:
            return await tx.insert(
                sa.insert(jobs_table).values(
                    generation_id=generation_id, user_id=user_id, status="queued",
                    payload=to_json(payload), created_at=now, updated_at=now,
                )
            )  # fmt: skip

    async def update_job(
        self, job_id: int, *, status: str | None = None, payload: dict[str, Any] | None = None
    ) -> bool:
        """Change status (queued|running|done|failed|cancelled|interrupted) and/or replace the
        payload. False if there is no such job."""
        if status is not None and status not in JOB_STATUSES:
            raise ValueError(f"job status must be one of {JOB_STATUSES}, not {status!r}")
        values: dict[str, Any] = {"updated_at": self._now()}
        if status is not None:
            values["status"] = status
        if payload is not None:
            values["payload"] = to_json(payload)
        async with self._db.transaction() as tx:
            changed = await tx.execute(sa.update(jobs_table).where(j.id == job_id).values(values))
        return changed == 1

    async def get_job(self, job_id: int) -> JobRow | None:
        async with self._db.reading() as tx:
            row = await tx.one(_SELECT.where(j.id == job_id))
        return None if row is None else _job(row)

    async def open_jobs(self) -> list[JobRow]:
        """Queued or running jobs, oldest first (what a restart must resume or report)."""
        async with self._db.reading() as tx:
            rows = await tx.all(
                _SELECT.where(j.status.in_(("queued", "running"))).order_by(j.created_at, j.id)
            )
        return [_job(r) for r in rows]

    # -- admission ---------------------------------------------------------------------------

    async def admit(
        self,
        *,
        user_id: int,
        guild_id: int | None,
        jobs: Sequence[NewJob],
        limits: AdmitLimits,
        group_id: str | None = None,
        intake_id: int | None = None,
    ) -> Admitted | Refused:
        """Check the user's waiting-jobs limit and today's quotas, and record the generations
        and their queued jobs — in ONE transaction, so concurrent requests (in any process)
        can never together pass a limit. All of the request's jobs are recorded, or none.

        Quotas count what was charged today plus every queued/running generation at its
        estimated cost. A request of several jobs gets a group id
        (`group_id`, or a new one). Returns the ids, or `Refused` naming the first limit that
        says no (waiting jobs, then images, dollars, the server's budget).

        `intake_id`: the request's intake record, deleted in the same transaction when it is
        admitted (so a request is never both lost and admitted twice)."""
        items = list(jobs)
        if not items:
            raise ValueError("admit needs at least one job")
        for item in items:
            check_generation(item.kind, item.spec)
        images = len(items)
        cost = sum(float(item.estimated_cost) for item in items)
        if group_id is None and images > 1:
            group_id = uuid.uuid4().hex
        now = self._now()
        day = self._today()
        async with self._db.transaction() as tx:
            await tx.lock(f"admit:guild:{'dm' if guild_id is None else guild_id}")
            await tx.lock(f"admit:user:{user_id}")
            refused = await self._refusal(tx, user_id, guild_id, limits, images, cost, day)
            if refused is not None:
                return refused
            generation_ids: list[int] = []
            job_ids: list[int] = []
            for item in items:
                generation_id = await insert_generation(
                    tx, now=now, user_id=user_id, guild_id=guild_id,
                    channel_id=item.channel_id, kind=item.kind, spec=item.spec,
                    model=item.model, size=item.size, aspect=item.aspect, summary=item.summary,
                    input_images=item.input_images, chain_id=item.chain_id,
                    parent_id=item.parent_id, batch_id=item.batch_id, private=item.private,
                    estimated_cost=item.estimated_cost,
                )  # fmt: skip
                job_id = await tx.insert(
                    sa.insert(jobs_table).values(
                        generation_id=generation_id, user_id=user_id, guild_id=guild_id,
                        status="queued", payload=to_json(item.payload), lane=item.lane,
                        group_id=group_id, created_at=now, updated_at=now,
                    )
                )  # fmt: skip
                generation_ids.append(generation_id)
                job_ids.append(job_id)
            if intake_id is not None:
                await tx.execute(sa.delete(intake).where(intake.c.id == intake_id))
        return Admitted(tuple(generation_ids), tuple(job_ids), group_id)

    async def check_admission(
        self,
        *,
        user_id: int,
        guild_id: int | None,
        images: int,
        cost: float,
        limits: AdmitLimits,
    ) -> Refused | None:
        """What `admit` would say now about `images` more at `cost`, without recording
        anything: a check before a request is acknowledged (admit decides again)."""
        async with self._db.reading() as tx:
            return await self._refusal(tx, user_id, guild_id, limits, images, cost, self._today())

    @staticmethod
    async def _refusal(
        tx: Tx,
        user_id: int,
        guild_id: int | None,
        limits: AdmitLimits,
        images: int,
        cost: float,
        day: str,
    ) -> Refused | None:
        if limits.max_queued_per_user is not None:
            waiting = await _count(tx, j.status == "queued", j.user_id == user_id)
            if waiting + images > limits.max_queued_per_user:
                return Refused(RefusalKind.QUEUED, limits.max_queued_per_user, waiting, images)
        if limits.images_per_user is not None or limits.dollars_per_user is not None:
            mine = await reserved_in(tx, user_id=user_id, guild_id=guild_id, day=day)
            if limits.images_per_user is not None and (
                mine.total_images + images > limits.images_per_user
            ):
                return Refused(
                    RefusalKind.USER_IMAGES, limits.images_per_user, mine.total_images, images,
                    mine.pending_images,
                )  # fmt: skip
            if limits.dollars_per_user is not None and (
                mine.total_cost + cost > limits.dollars_per_user + _EPSILON
            ):
                return Refused(
                    RefusalKind.USER_DOLLARS, limits.dollars_per_user, mine.total_cost, cost,
                    mine.pending_images,
                )  # fmt: skip
        if limits.dollars_guild is not None and guild_id is not None:
            everyone = await reserved_in(tx, user_id=None, guild_id=guild_id, day=day)
            if everyone.total_cost + cost > limits.dollars_guild + _EPSILON:
                return Refused(
                    RefusalKind.GUILD_DOLLARS, limits.dollars_guild, everyone.total_cost, cost,
                    everyone.pending_images,
                )  # fmt: skip
        return None

    # -- running ----------------------------------------------------------------------------

    async def claim_job(
        self,
        worker_id: str,
        *,
        lease_seconds: float,
        concurrency: int,
        max_running_per_user: int,
    ) -> JobRow | None:
        """Atomically take the next job for `worker_id` (see claim_jobs), or None."""
        claimed = await self.claim_jobs(
            worker_id, lease_seconds=lease_seconds, concurrency=concurrency,
            max_running_per_user=max_running_per_user, at_most=1,
        )  # fmt: skip
        return claimed[0] if claimed else None

    async def claim_jobs(
        self,
        worker_id: str,
        *,
        lease_seconds: float,
        concurrency: int,
        max_running_per_user: int,
        at_most: int,
    ) -> list[JobRow]:
        """Atomically take up to `at_most` jobs for `worker_id`, in fair order, in ONE
        transaction: each set running with a lease until now + `lease_seconds`. Fewer (or
        none) when `concurrency` jobs run (across all processes) or no more waiting jobs may
        start (every waiting user at `max_running_per_user`, or held by a lane): then a
        claim now would take nothing more either. Running jobs whose lease ran out are put
        back in line first (see recover_expired_jobs), so a dead process cannot hold slots for
        ever. A job with `attempts` > 1 was started before by a worker that died: resume it,
        or tell the user. Each job carries its generation (`JobRow.generation`), set running
        in the same transaction if it was still queued.
        """
        lease = _check_lease(lease_seconds)
        if concurrency < 1 or max_running_per_user < 1 or at_most < 1:
            raise ValueError("limits must be at least 1")
        claimed: list[JobRow] = []
        async with self._db.transaction(urgent=True) as tx:
            await tx.lock("jobs:claim")
            now = self._now()
            await self._requeue_expired(tx, now)
            # The limit is for Gemini: a job storing and uploading its result takes no slot.
            running = await _count(tx, j.status == "running", j.posting == 0)
            while len(claimed) < min(at_most, concurrency - running):
                job = await self._claim_next(tx, worker_id, now, lease, max_running_per_user)
                if job is None:
                    break
                claimed.append(job)
        return claimed

    async def _claim_next(
        self, tx: Tx, worker_id: str, now: float, lease: float, max_running_per_user: int
    ) -> JobRow | None:
        while True:
            pick = await tx.one(_next_job_query(max_running_per_user))
            if pick is None:
                return None
            job_id, user_id = int(pick["id"]), int(pick["user_id"])
            # Still queued? On PostgreSQL a cancel may have committed since the SELECT
            # (claims exclude each other, not cancels): then pick again.
            taken = await tx.execute(
                sa.update(jobs_table)
                .where(j.id == job_id, j.status == "queued")
                .values(
                    status="running", lease_owner=worker_id, lease_expires_at=now + lease,
                    attempts=j.attempts + 1, started_at=sa.func.coalesce(j.started_at, now),
                    updated_at=now,
                )
            )  # fmt: skip
            if taken == 1:
                break
        next_turn = sa.select(
            sa.func.coalesce(sa.func.max(job_turns.c.served), 0) + 1
        ).scalar_subquery()
        turn = self._insert(job_turns).values(user_id=user_id, served=next_turn, served_at=now)
        await tx.execute(
            turn.on_conflict_do_update(
                index_elements=[job_turns.c.user_id],
                set_={"served": turn.excluded.served, "served_at": turn.excluded.served_at},
            )
        )
        row = await tx.one(_SELECT.where(j.id == job_id))
        assert row is not None
        job = _job(row)
        # Its generation starts now too (a resumed one is already running or further).
        await tx.execute(
            sa.update(generations)
            .where(generations.c.id == job.generation_id, generations.c.status == "queued")
            .values(status="running", started_at=now)
        )
        return dataclasses.replace(job, generation=await generation_in(tx, job.generation_id))

    async def job_posting(self, job_id: int, worker_id: str) -> bool:
        """The job's Gemini call has returned: it keeps its lease and lane while its result is
        stored and uploaded, but no longer counts against the concurrency limit."""
        async with self._db.transaction(urgent=True) as tx:
            changed = await tx.execute(
                sa.update(jobs_table)
                .where(j.id == job_id, j.status == "running", j.lease_owner == worker_id)
                .values(posting=1, updated_at=self._now())
            )
        return changed == 1

    async def job_for_generation(self, generation_id: int) -> JobRow | None:
        """The latest job of a generation (a retry or resume may have made several)."""
        async with self._db.reading() as tx:
            row = await tx.one(
                _SELECT.where(j.generation_id == generation_id).order_by(j.id.desc()).limit(1)
            )
        return None if row is None else _job(row)

    async def renew_lease(self, job_id: int, worker_id: str, *, lease_seconds: float) -> bool:
        """Extend a running job's lease. False if `worker_id` no longer holds it (its lease ran
        out and the job went back in line, or it ended): stop working on it."""
        lease = _check_lease(lease_seconds)
        now = self._now()
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                sa.update(jobs_table)
                .where(j.id == job_id, j.status == "running", j.lease_owner == worker_id)
                .values(lease_expires_at=now + lease, updated_at=now)
            )
        return changed == 1

    async def finish_job(
        self, job_id: int, worker_id: str | None, *, status: str, error: str | None = None
    ) -> bool:
        """End a running job: done | failed | cancelled | interrupted, with an optional reason.
        Only the lease holder may (`worker_id` None: anyone, e.g. an admin tool). False if the
        job is not running under that worker (taken over, or already ended). The generation's
        own status is the caller's (finish_generation / fail_generation)."""
        if status not in JOB_FINAL_STATUSES:
            raise ValueError(f"a job ends {JOB_FINAL_STATUSES}, not {status!r}")
        now = self._now()
        where = [j.id == job_id, j.status == "running"]
        if worker_id is not None:
            where.append(j.lease_owner == worker_id)
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                sa.update(jobs_table)
                .where(*where)
                .values(
                    status=status, error=error, finished_at=now, updated_at=now,
                    lease_owner=None, lease_expires_at=None,
                )
            )  # fmt: skip
        return changed == 1

    async def release_job(self, job_id: int, worker_id: str) -> bool:
        """Hand a running job back to the queue now (a process shutting down), instead of
        waiting for its lease to run out; it keeps its place in line. False if not held."""
        now = self._now()
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                sa.update(jobs_table)
                .where(j.id == job_id, j.status == "running", j.lease_owner == worker_id)
                .values(
                    status="queued",
                    lease_owner=None,
                    lease_expires_at=None,
                    posting=0,
                    updated_at=now,
                )
            )
        return changed == 1

    async def cancel_queued_job(self, job_id: int, *, reason: str = "cancelled") -> bool:
        """Cancel a job that is still waiting, and its generation (which stops counting against
        quotas), in one transaction. False if it already started or ended: a running job is
        its worker's to stop."""
        now = self._now()
        async with self._db.transaction() as tx:
            row = await tx.one(
                sa.select(j.generation_id).where(j.id == job_id, j.status == "queued")
            )
            if row is None:
                return False
            changed = await tx.execute(
                sa.update(jobs_table)
                .where(j.id == job_id, j.status == "queued")
                .values(status="cancelled", error=reason, finished_at=now, updated_at=now)
            )
            if changed != 1:  # PostgreSQL: a claim committed since the SELECT
                return False
            await tx.execute(
                sa.update(generations)
                .where(
                    generations.c.id == int(row["generation_id"]),
                    generations.c.status.in_(("queued", "running")),
                )
                .values(status="cancelled", error_kind="cancelled", error=reason, finished_at=now)
            )
        return True

    async def recover_expired_jobs(self) -> RecoveredJobs:
        """Put running jobs whose lease ran out back in line (state queued, keeping their place:
        the oldest of their user and lane), so any live process takes them over. claim_job
        does this too; call it to learn which (logs, metrics)."""
        async with self._db.transaction() as tx:
            await tx.lock("jobs:claim")
            return RecoveredJobs(tuple(await self._requeue_expired(tx, self._now())))

    @staticmethod
    async def _requeue_expired(tx: Tx, now: float) -> list[int]:
        expired = [
            int(r[0])
            for r in await tx.all(
                sa.select(j.id)
                .where(j.status == "running", j.lease_expires_at <= now)
                .order_by(j.id)
            )
        ]
        if expired:
            await tx.execute(
                sa.update(jobs_table)
                .where(j.id.in_(expired), j.status == "running", j.lease_expires_at <= now)
                .values(
                    status="queued",
                    lease_owner=None,
                    lease_expires_at=None,
                    posting=0,
                    updated_at=now,
                )
            )
        return expired

    # -- looking at the queue ----------------------------------------------------------------

    async def queue_positions(self) -> dict[int, int]:
        """Every waiting job's place in line (1 = next), in the order round-robin would start
        them (ignoring limits and lanes), as the queue shows "3rd in line"."""
        async with self._db.reading() as tx:
            waiting = await tx.all(
                sa.select(j.id, j.user_id, job_turns.c.served)
                .select_from(jobs_table.outerjoin(job_turns, job_turns.c.user_id == j.user_id))
                .where(j.status == "queued", _INTERACTIVE)
                .order_by(j.id)
            )
        per_user: dict[int, list[int]] = {}
        served: dict[int, int] = {}
        for r in waiting:
            user = int(r["user_id"])
            per_user.setdefault(user, []).append(int(r["id"]))
            served[user] = int(r["served"] or 0)
        rotation = sorted(per_user, key=lambda u: (served[u], per_user[u][0]))
        positions: dict[int, int] = {}
        depth = max((len(q) for q in per_user.values()), default=0)
        for i in range(depth):
            for user in rotation:
                queue = per_user[user]
                if i < len(queue):
                    positions[queue[i]] = len(positions) + 1
        return positions

    async def job_position(self, job_id: int) -> int | None:
        """A waiting job's place in line (1-based); None once it runs or ends."""
        return (await self.queue_positions()).get(job_id)

    async def job_counts(self) -> dict[str, int]:
        """How many jobs are in each state (every state present, 0 if none): for /metrics."""
        async with self._db.reading() as tx:
            rows = await tx.all(sa.select(j.status, sa.func.count().label("n")).group_by(j.status))
        counts = dict.fromkeys(JOB_STATUSES, 0)
        counts.update({str(r["status"]): int(r["n"]) for r in rows})
        return counts

    async def claim_batch_sheet(self, group_id: str, worker_id: str) -> bool:
        """True for exactly one caller per group: the one that posts its contact sheet."""
        async with self._db.transaction() as tx:
            insert = self._insert(batch_sheets).values(
                group_id=group_id, worker=worker_id, claimed_at=self._now()
            )
            changed = await tx.execute(insert.on_conflict_do_nothing())
        return changed == 1

    async def group_jobs(self, group_id: str) -> list[JobRow]:
        """The jobs admitted together under `group_id`, in order."""
        async with self._db.reading() as tx:
            rows = await tx.all(_SELECT.where(j.group_id == group_id).order_by(j.id))
        return [_job(r) for r in rows]
