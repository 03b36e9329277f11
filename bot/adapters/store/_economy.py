"""Economy: jobs answered through Gemini's Batch API, and the batches that carry them.

An economy request is admitted like any other (`admit`: quotas and queue room in one
transaction) as a job in the lane "economy" (`ECONOMY_LANE`), which the interactive claim
query skips. From there:

* `form_economy_batches`: jobs that have waited `gather_seconds` since their user's latest
  economy job for the same model are grouped into a batch (at most `max_requests` each). In
  the same transaction the batch gets a lease for the caller, and its jobs become running
  with `posting` = 1 and no lease of their own: they take no slot of the interactive
  concurrency limit nor of their user's, and they free their user's queue room (they wait
  at Gemini now, for hours perhaps). Their batch's lease is what a dead process loses.
* `claim_economy_batch`: the batch that is due (its next poll time has come) and that nobody
  holds (or whose holder's lease ran out): exactly one process polls a batch at a time.
  `renew_economy_batch` keeps the lease; `update_economy_batch` writes what was learnt (and
  can release the lease, with the next poll time).
* `end_economy_job`: a job's end (done, failed, cancelled), with its item's.
* `withdraw_economy_jobs`: Cancel. A job still waiting to be grouped, or in a batch Gemini
  has not started, is cancelled with its generation (so it stops counting against quotas);
  later, it is too late.
* `record_economy_usage` / `economy_usage_between`: the batch price paid and the interactive
  price it replaced, per day (charged usage itself goes to usage_daily as usual).

Locks (PostgreSQL advisory; SQLite's one writer anyway): "economy:form" for forming and
withdrawing (a job is never both grouped and cancelled), "economy:claim" for claims.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bot.adapters.store._base import StoreBase, check_day, from_json, to_json
from bot.adapters.store._jobs import ECONOMY_LANE
from bot.adapters.store.db import Record
from bot.adapters.store.tables import economy_batches, economy_items, economy_usage, generations
from bot.adapters.store.tables import jobs as jobs_table

b = economy_batches.c
i = economy_items.c
j = jobs_table.c
g = generations.c
DM = 0  # economy_usage.guild_id for direct messages, as in usage_daily

BATCH_STATES = ("forming", "submitted", "ended")
ITEM_STATES = ("pending", "done", "failed", "cancelled")
_JOB_FINAL = ("done", "failed", "cancelled", "interrupted")
_BATCH_FIELDS = frozenset(
    {
        "state", "gemini_state", "name", "request_keys", "submit_attempts", "submitted_at",
        "started_at", "ended_at", "next_poll_at", "polls", "error",
    }
)  # fmt: skip
# Gemini states in which a batch has not started: its requests can still be withdrawn.
_NOT_STARTED = ("JOB_STATE_PENDING", "JOB_STATE_QUEUED", "JOB_STATE_UNSPECIFIED")


@dataclass(frozen=True)
class EconomyBatchRow:
    id: int
    user_id: int
    model: str
    state: str  # forming | submitted | ended
    gemini_state: str | None
    name: str | None
    display_name: str
    request_keys: list[str] | None  # what was sent, in order (answers may come without keys)
    submit_attempts: int
    created_at: float
    submitted_at: float | None
    started_at: float | None
    ended_at: float | None
    next_poll_at: float
    polls: int
    lease_owner: str | None
    lease_expires_at: float | None
    error: str | None

    @property
    def started(self) -> bool:
        """Gemini began working on it (or it ended): too late to cancel."""
        return self.started_at is not None or self.state == "ended"


@dataclass(frozen=True)
class EconomyItemRow:
    """One job of a batch, with what its job row remembers."""

    job_id: int
    batch_id: int
    generation_id: int
    position: int
    state: str  # pending | done | failed | cancelled
    user_id: int
    guild_id: int | None
    group_id: str | None
    job_status: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class EconomyUsage:
    images: int
    cost: float  # paid, at the batch price
    full_cost: float  # what the same images would have cost interactively

    @property
    def saved(self) -> float:
        return max(0.0, self.full_cost - self.cost)


@dataclass(frozen=True)
class Withdrawn:
    """What Cancel did: the jobs cancelled, and those too late (their batch started)."""

    cancelled: tuple[int, ...]
    too_late: tuple[int, ...]
    batches: tuple[int, ...]  # batches some of whose requests were withdrawn


def _batch(r: Record) -> EconomyBatchRow:
    return EconomyBatchRow(
        id=int(r["id"]),
        user_id=int(r["user_id"]),
        model=str(r["model"]),
        state=str(r["state"]),
        gemini_state=r["gemini_state"],
        name=r["name"],
        display_name=str(r["display_name"]),
        request_keys=from_json(r["request_keys"]),
        submit_attempts=int(r["submit_attempts"]),
        created_at=float(r["created_at"]),
        submitted_at=r["submitted_at"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        next_poll_at=float(r["next_poll_at"]),
        polls=int(r["polls"]),
        lease_owner=r["lease_owner"],
        lease_expires_at=r["lease_expires_at"],
        error=r["error"],
    )


_ITEM_SELECT = (
    sa.select(
        i.job_id, i.batch_id, i.generation_id, i.position, i.state, j.user_id, j.guild_id,
        j.group_id, j.status.label("job_status"), j.payload,
    )
    .select_from(economy_items.join(jobs_table, j.id == i.job_id))
)  # fmt: skip


def _item(r: Record) -> EconomyItemRow:
    return EconomyItemRow(
        job_id=int(r["job_id"]),
        batch_id=int(r["batch_id"]),
        generation_id=int(r["generation_id"]),
        position=int(r["position"]),
        state=str(r["state"]),
        user_id=int(r["user_id"]),
        guild_id=r["guild_id"],
        group_id=r["group_id"],
        job_status=str(r["job_status"]),
        payload=from_json(r["payload"]) or {},
    )


def _lease(lease_seconds: float) -> float:
    if not lease_seconds > 0:
        raise ValueError("lease_seconds must be positive")
    return float(lease_seconds)


class EconomyMixin(StoreBase):
    # -- grouping ---------------------------------------------------------------------------

    async def form_economy_batches(
        self,
        worker_id: str,
        *,
        gather_seconds: float,
        max_requests: int,
        lease_seconds: float,
    ) -> list[EconomyBatchRow]:
        """Group the economy jobs that are ready into batches held by `worker_id` (see the
        module's docstring). A user's jobs for one model are ready once `gather_seconds` have
        passed since the newest of them was admitted, or when they fill a batch."""
        lease = _lease(lease_seconds)
        if max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        formed: list[EconomyBatchRow] = []
        async with self._db.reading() as tx:  # most rounds find nothing: no write lock then
            if not await tx.scalar(
                sa.select(sa.func.count())
                .select_from(jobs_table)
                .where(j.status == "queued", j.lane == ECONOMY_LANE)
            ):
                return formed
        async with self._db.transaction() as tx:
            await tx.lock("economy:form")
            now = self._now()
            waiting = await tx.all(
                sa.select(j.id, j.user_id, j.generation_id, j.created_at, g.model)
                .select_from(jobs_table.join(generations, g.id == j.generation_id))
                .where(j.status == "queued", j.lane == ECONOMY_LANE)
                .order_by(j.id)
            )
            groups: dict[tuple[int, str], list[Record]] = {}
            for row in waiting:
                groups.setdefault((int(row["user_id"]), str(row["model"])), []).append(row)
            for (user_id, model), rows in groups.items():
                newest = max(float(r["created_at"]) for r in rows)
                full = len(rows) >= max_requests
                if not full and now - newest < gather_seconds:
                    continue
                for start in range(0, len(rows), max_requests):
                    chunk = rows[start : start + max_requests]
                    if len(chunk) < max_requests and now - newest < gather_seconds:
                        continue  # the rest keeps gathering
                    batch_id = await tx.insert(
                        sa.insert(economy_batches).values(
                            user_id=user_id, model=model, state="forming",
                            display_name=f"nano-banana-{uuid.uuid4().hex[:16]}",
                            created_at=now, next_poll_at=now, lease_owner=worker_id,
                            lease_expires_at=now + lease,
                        )
                    )  # fmt: skip
                    position = 0
                    for row in chunk:
                        # Still waiting? (PostgreSQL: a cancel may have committed since.)
                        moved = await tx.execute(
                            sa.update(jobs_table)
                            .where(j.id == int(row["id"]), j.status == "queued")
                            .values(
                                status="running", posting=1, lease_owner=None,
                                lease_expires_at=None, attempts=j.attempts + 1,
                                started_at=sa.func.coalesce(j.started_at, now), updated_at=now,
                            )
                        )  # fmt: skip
                        if moved != 1:
                            continue
                        await tx.execute(
                            sa.insert(economy_items).values(
                                job_id=int(row["id"]), batch_id=batch_id,
                                generation_id=int(row["generation_id"]), position=position,
                                state="pending",
                            )
                        )  # fmt: skip
                        position += 1
                    if position == 0:
                        await tx.execute(sa.delete(economy_batches).where(b.id == batch_id))
                        continue
                    found = await tx.one(sa.select(*economy_batches.c).where(b.id == batch_id))
                    assert found is not None
                    formed.append(_batch(found))
        return formed

    # -- leases -----------------------------------------------------------------------------

    async def claim_economy_batch(
        self, worker_id: str, *, lease_seconds: float
    ) -> EconomyBatchRow | None:
        """The batch most overdue for submitting or polling that nobody holds, now held by
        `worker_id`; None when none is due."""
        lease = _lease(lease_seconds)
        now = self._now()
        due = sa.and_(b.state.in_(("forming", "submitted")), b.next_poll_at <= now)
        async with self._db.reading() as tx:  # most rounds find nothing: no write lock then
            if not await tx.scalar(sa.select(sa.func.count()).select_from(economy_batches).where(due)):
                return None
        async with self._db.transaction() as tx:
            await tx.lock("economy:claim")
            now = self._now()
            free = sa.or_(b.lease_owner.is_(None), b.lease_expires_at <= now)
            row = await tx.one(
                sa.select(b.id)
                .where(b.state.in_(("forming", "submitted")), b.next_poll_at <= now, free)
                .order_by(b.next_poll_at, b.id)
                .limit(1)
            )
            if row is None:
                return None
            batch_id = int(row["id"])
            await tx.execute(
                sa.update(economy_batches)
                .where(b.id == batch_id)
                .values(lease_owner=worker_id, lease_expires_at=now + lease)
            )
            found = await tx.one(sa.select(*economy_batches.c).where(b.id == batch_id))
        assert found is not None
        return _batch(found)

    async def renew_economy_batch(
        self, batch_id: int, worker_id: str, *, lease_seconds: float
    ) -> bool:
        """Extend the lease; False if `worker_id` lost it (stop working on the batch)."""
        lease = _lease(lease_seconds)
        now = self._now()
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                sa.update(economy_batches)
                .where(b.id == batch_id, b.lease_owner == worker_id, b.lease_expires_at > now)
                .values(lease_expires_at=now + lease)
            )
        return changed == 1

    async def update_economy_batch(
        self, batch_id: int, worker_id: str, *, release: bool = False, **values: Any
    ) -> bool:
        """Record what the lease holder learnt (state, name, times, next poll…); `release`
        hands the lease back. False, changing nothing, if `worker_id` does not hold it."""
        unknown = set(values) - _BATCH_FIELDS
        if unknown:
            raise ValueError(f"not economy batch fields: {sorted(unknown)}")
        if "state" in values and values["state"] not in BATCH_STATES:
            raise ValueError(f"batch state is one of {BATCH_STATES}")
        if release:
            values.update(lease_owner=None, lease_expires_at=None)
        if not values:
            return True
        if "request_keys" in values:
            values["request_keys"] = to_json(list(values["request_keys"]))
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                sa.update(economy_batches)
                .where(b.id == batch_id, b.lease_owner == worker_id)
                .values(values)
            )
        return changed == 1

    async def poll_economy_batch_soon(self, batch_id: int) -> None:
        """Bring a batch's next poll forward to now (after a Cancel, say); no lease needed."""
        now = self._now()
        async with self._db.transaction() as tx:
            await tx.execute(
                sa.update(economy_batches)
                .where(b.id == batch_id, b.state != "ended", b.next_poll_at > now)
                .values(next_poll_at=now)
            )

    # -- reading ------------------------------------------------------------------------------

    async def economy_batch(self, batch_id: int) -> EconomyBatchRow | None:
        async with self._db.reading() as tx:
            row = await tx.one(sa.select(*economy_batches.c).where(b.id == batch_id))
        return None if row is None else _batch(row)

    async def economy_items(self, batch_id: int) -> list[EconomyItemRow]:
        """A batch's jobs in the order they were sent."""
        async with self._db.reading() as tx:
            rows = await tx.all(_ITEM_SELECT.where(i.batch_id == batch_id).order_by(i.position))
        return [_item(r) for r in rows]

    async def economy_item_of_generation(
        self, generation_id: int
    ) -> tuple[EconomyItemRow, EconomyBatchRow] | None:
        """The batch a generation went into, if it was an economy request that was grouped."""
        async with self._db.reading() as tx:
            row = await tx.one(
                _ITEM_SELECT.where(i.generation_id == generation_id).order_by(i.job_id.desc())
            )
            if row is None:
                return None
            batch = await tx.one(sa.select(*economy_batches.c).where(b.id == row["batch_id"]))
        assert batch is not None
        return _item(row), _batch(batch)

    async def open_economy_batches(self) -> list[EconomyBatchRow]:
        """Batches not ended yet, oldest first (for /metrics and tests)."""
        async with self._db.reading() as tx:
            rows = await tx.all(
                sa.select(*economy_batches.c).where(b.state != "ended").order_by(b.id)
            )
        return [_batch(r) for r in rows]

    # -- ending -------------------------------------------------------------------------------

    async def end_economy_job(
        self, job_id: int, *, status: str, error: str | None = None
    ) -> bool:
        """End an economy job (done | failed | cancelled | interrupted) and its batch item.
        False if it had already ended."""
        if status not in _JOB_FINAL:
            raise ValueError(f"a job ends {_JOB_FINAL}, not {status!r}")
        item_state = status if status in ITEM_STATES else "failed"
        now = self._now()
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                sa.update(jobs_table)
                .where(
                    j.id == job_id,
                    j.lane == ECONOMY_LANE,
                    j.status.in_(("queued", "running")),
                )
                .values(
                    status=status, error=error, finished_at=now, updated_at=now, posting=0,
                    lease_owner=None, lease_expires_at=None,
                )
            )  # fmt: skip
            await tx.execute(
                sa.update(economy_items)
                .where(i.job_id == job_id, i.state == "pending")
                .values(state=item_state, ended_at=now)
            )
        return changed == 1

    async def withdraw_economy_jobs(self, job_ids: Sequence[int], *, reason: str) -> Withdrawn:
        """Cancel these economy jobs where it is not too late: waiting to be grouped, or in a
        batch Gemini has not started. Their generations are cancelled in the same
        transaction (nothing is charged, quotas free up)."""
        cancelled: list[int] = []
        too_late: list[int] = []
        touched: set[int] = set()
        async with self._db.transaction() as tx:
            await tx.lock("economy:form")
            now = self._now()
            for job_id in job_ids:
                row = await tx.one(
                    sa.select(j.status, j.generation_id, i.state.label("item"), i.batch_id,
                              b.state.label("batch"), b.gemini_state, b.started_at)
                    .select_from(
                        jobs_table.outerjoin(economy_items, i.job_id == j.id).outerjoin(
                            economy_batches, b.id == i.batch_id
                        )
                    )
                    .where(j.id == job_id, j.lane == ECONOMY_LANE)
                )  # fmt: skip
                if row is None or row["status"] not in ("queued", "running"):
                    too_late.append(job_id)
                    continue
                if row["status"] == "running":
                    started = row["started_at"] is not None or row["batch"] == "ended"
                    waiting = row["batch"] == "forming" or (
                        row["gemini_state"] in (None, *_NOT_STARTED)
                    )
                    if row["item"] != "pending" or started or not waiting:
                        too_late.append(job_id)
                        continue
                    touched.add(int(row["batch_id"]))
                changed = await tx.execute(
                    sa.update(jobs_table)
                    .where(j.id == job_id, j.status.in_(("queued", "running")))
                    .values(
                        status="cancelled", error=reason, finished_at=now, updated_at=now,
                        posting=0,
                    )
                )  # fmt: skip
                if changed != 1:
                    too_late.append(job_id)
                    continue
                await tx.execute(
                    sa.update(economy_items)
                    .where(i.job_id == job_id, i.state == "pending")
                    .values(state="cancelled", ended_at=now)
                )
                await tx.execute(
                    sa.update(generations)
                    .where(
                        g.id == int(row["generation_id"]),
                        g.status.in_(("queued", "running")),
                    )
                    .values(
                        status="cancelled", error_kind="cancelled", error=reason, finished_at=now
                    )
                )
                cancelled.append(job_id)
        return Withdrawn(tuple(cancelled), tuple(too_late), tuple(sorted(touched)))

    # -- usage --------------------------------------------------------------------------------

    async def record_economy_usage(
        self,
        *,
        user_id: int,
        guild_id: int | None,
        model: str,
        images: int,
        cost: float,
        full_cost: float,
        day: str | None = None,
    ) -> None:
        """What an economy result cost (also charged with record_usage) and what it would
        have cost interactively."""
        if images < 0 or cost < 0 or full_cost < 0:
            raise ValueError("usage cannot be negative")
        day = self._today() if day is None else check_day(day)
        e = economy_usage.c
        stmt = self._insert(economy_usage).values(
            day=day, user_id=user_id, guild_id=DM if guild_id is None else guild_id,
            model=model, images=images, cost=float(cost), full_cost=float(full_cost),
        )  # fmt: skip
        stmt = stmt.on_conflict_do_update(
            index_elements=[e.day, e.user_id, e.guild_id, e.model],
            set_={
                "images": e.images + stmt.excluded.images,
                "cost": e.cost + stmt.excluded.cost,
                "full_cost": e.full_cost + stmt.excluded.full_cost,
            },
        )
        async with self._db.transaction() as tx:
            await tx.execute(stmt)

    async def economy_usage_between(
        self, *, user_id: int | None, guild_id: int | None, first_day: str, last_day: str
    ) -> EconomyUsage:
        """Economy images over the inclusive day range (user_id None: everyone; guild_id
        None: every server and DMs), with what they would have cost interactively."""
        e = economy_usage.c
        where = [e.day >= check_day(first_day), e.day <= check_day(last_day)]
        if user_id is not None:
            where.append(e.user_id == user_id)
        if guild_id is not None:
            where.append(e.guild_id == guild_id)
        async with self._db.reading() as tx:
            row = await tx.one(
                sa.select(
                    sa.func.coalesce(sa.func.sum(e.images), 0).label("images"),
                    sa.func.coalesce(sa.func.sum(e.cost), 0.0).label("cost"),
                    sa.func.coalesce(sa.func.sum(e.full_cost), 0.0).label("full"),
                ).where(*where)
            )
        assert row is not None
        return EconomyUsage(int(row["images"]), float(row["cost"]), float(row["full"]))
