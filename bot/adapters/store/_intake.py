"""Intake: requests acknowledged but not yet admitted.

An interaction is acknowledged within Discord's 3 s, and only then are its attachments
downloaded and its inputs resolved; a process that dies in between must not lose the request.
So the request is recorded here together with its acknowledgement (`receive`), under a lease
its process keeps renewing; admitting it (`Store.admit(intake_id=…)`) deletes the row in the
same transaction. A row whose lease ran out is taken over by a live process
(`claim_stale_intake`), which finishes the intake or tells the user.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bot.adapters.store._base import StoreBase, from_json, to_json
from bot.adapters.store.rows import IntakeRow
from bot.adapters.store.tables import intake

i = intake.c


class IntakeMixin(StoreBase):
    async def receive(
        self, *, user_id: int, payload: dict[str, Any], worker_id: str, lease_seconds: float
    ) -> int:
        """Record a request (JSON `payload`: what to admit and where to answer) under a lease
        held by `worker_id`."""
        now = self._now()
        async with self._db.transaction() as tx:
            return await tx.insert(
                sa.insert(intake).values(
                    user_id=user_id, payload=to_json(payload), lease_owner=worker_id,
                    lease_expires_at=now + lease_seconds, attempts=1, created_at=now,
                )
            )  # fmt: skip

    async def renew_intake(self, intake_id: int, worker_id: str, *, lease_seconds: float) -> bool:
        now = self._now()
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                sa.update(intake)
                .where(i.id == intake_id, i.lease_owner == worker_id)
                .values(lease_expires_at=now + lease_seconds)
            )
        return changed == 1

    async def drop_intake(self, intake_id: int) -> bool:
        """The request was refused or answered without a job: forget it."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(sa.delete(intake).where(i.id == intake_id))
        return changed == 1

    async def claim_stale_intake(
        self, worker_id: str, *, lease_seconds: float, limit: int = 10
    ) -> list[IntakeRow]:
        """Take over requests whose process died before admitting them (lease run out)."""
        now = self._now()
        async with self._db.transaction() as tx:
            await tx.lock("intake:claim")
            rows = await tx.all(
                sa.select(i.id)
                .where(i.lease_expires_at <= now)
                .order_by(i.id)
                .limit(limit)
            )
            ids = [int(r["id"]) for r in rows]
            if not ids:
                return []
            await tx.execute(
                sa.update(intake)
                .where(i.id.in_(ids), i.lease_expires_at <= now)
                .values(
                    lease_owner=worker_id, lease_expires_at=now + lease_seconds,
                    attempts=i.attempts + 1,
                )
            )  # fmt: skip
            taken = await tx.all(sa.select(*intake.c).where(i.id.in_(ids)).order_by(i.id))
        return [
            IntakeRow(
                id=int(r["id"]),
                user_id=int(r["user_id"]),
                payload=from_json(r["payload"]),
                attempts=int(r["attempts"]),
                created_at=float(r["created_at"]),
            )
            for r in taken
        ]
