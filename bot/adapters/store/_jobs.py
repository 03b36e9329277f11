"""Jobs: the queue's durable state, so a restart can resume or notify (bot/jobs.py runs it)."""

from __future__ import annotations

import sqlite3
from typing import Any

from bot.adapters.store._base import StoreBase, from_json, to_json
from bot.adapters.store.rows import JOB_STATUSES, JobRow

_COLUMNS = "id, generation_id, user_id, status, payload, created_at, updated_at"


def _job(r: sqlite3.Row) -> JobRow:
    return JobRow(
        id=int(r["id"]),
        generation_id=int(r["generation_id"]),
        user_id=int(r["user_id"]),
        status=r["status"],
        payload=from_json(r["payload"]),
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
    )


class JobsMixin(StoreBase):
    async def create_job(self, *, generation_id: int, user_id: int, payload: dict[str, Any]) -> int:
        """A queued job for a generation. `payload`: whatever resuming/notifying needs (channel,
        progress message id, interaction token, …) — JSON-serialisable."""
        now = self._now()
        async with self._db.transaction() as tx:
            return await tx.insert(
                "INSERT INTO jobs (generation_id, user_id, status, payload, created_at,"
                " updated_at) VALUES (?, ?, 'queued', ?, ?, ?)",
                (generation_id, user_id, to_json(payload), now, now),
            )

    async def update_job(
        self, job_id: int, *, status: str | None = None, payload: dict[str, Any] | None = None
    ) -> bool:
        """Change status (queued|running|done|failed|cancelled|interrupted) and/or replace the
        payload. False if there is no such job."""
        if status is not None and status not in JOB_STATUSES:
            raise ValueError(f"job status must be one of {JOB_STATUSES}, not {status!r}")
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE jobs SET status = COALESCE(?, status), payload = COALESCE(?, payload),"
                " updated_at = ? WHERE id = ?",
                (status, None if payload is None else to_json(payload), self._now(), job_id),
            )
        return changed == 1

    async def get_job(self, job_id: int) -> JobRow | None:
        async with self._db.reading() as tx:
            row = await tx.one(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return None if row is None else _job(row)

    async def open_jobs(self) -> list[JobRow]:
        """Queued or running jobs, oldest first (what a restart must resume or report)."""
        async with self._db.reading() as tx:
            rows = await tx.all(
                f"SELECT {_COLUMNS} FROM jobs WHERE status IN ('queued', 'running')"
                " ORDER BY created_at, id"
            )
        return [_job(r) for r in rows]
