"""Usage per user per UTC day (only successful generations are charged), and quota checks."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bot.adapters.store._base import StoreBase, check_day
from bot.adapters.store.db import Tx
from bot.adapters.store.rows import OPEN_STATUSES, QuotaUse, UsageRow
from bot.adapters.store.tables import generations, usage_daily

DM = 0  # usage_daily.guild_id for direct messages (see the table)
u = usage_daily.c


def _filters(user_id: int | None, guild_id: int | None, user: Any, guild: Any) -> list[Any]:
    """WHERE terms: user_id None = every user; guild_id None = every server and DMs
    (guild_id 0 = DMs only)."""
    terms: list[Any] = []
    if user_id is not None:
        terms.append(user == user_id)
    if guild_id is not None:
        terms.append(guild == guild_id)
    return terms


async def reserved_in(tx: Tx, *, user_id: int | None, guild_id: int | None, day: str) -> QuotaUse:
    """reserved_today inside the caller's transaction (admit decides on it)."""
    used = await tx.one(
        sa.select(
            sa.func.coalesce(sa.func.sum(u.images), 0).label("images"),
            sa.func.coalesce(sa.func.sum(u.cost), 0.0).label("cost"),
        ).where(u.day == day, *_filters(user_id, guild_id, u.user_id, u.guild_id))
    )
    g = generations.c
    # generations keep NULL for DMs where usage_daily keeps 0.
    pending = await tx.one(
        sa.select(
            sa.func.count().label("images"),
            sa.func.coalesce(sa.func.sum(g.estimated_cost), 0.0).label("cost"),
        ).where(
            g.status.in_(OPEN_STATUSES),
            *_filters(user_id, guild_id, g.user_id, sa.func.coalesce(g.guild_id, DM)),
        )
    )
    assert used is not None and pending is not None  # aggregates always return a row
    return QuotaUse(
        images=int(used["images"]),
        cost=float(used["cost"]),
        pending_images=int(pending["images"]),
        pending_cost=float(pending["cost"]),
    )


class UsageMixin(StoreBase):
    async def record_usage(
        self,
        *,
        user_id: int,
        guild_id: int | None,
        model: str,
        images: int,
        cost: float,
        day: str | None = None,
    ) -> None:
        """Charge a user (call only for successful generations). `day` is "YYYY-MM-DD" UTC,
        today by default."""
        if images < 0 or cost < 0:
            raise ValueError("usage cannot be negative")
        day = self._today() if day is None else check_day(day)
        stmt = self._insert(usage_daily).values(
            day=day, user_id=user_id, guild_id=DM if guild_id is None else guild_id,
            model=model, images=images, cost=float(cost),
        )  # fmt: skip
        stmt = stmt.on_conflict_do_update(
            index_elements=[u.day, u.user_id, u.guild_id, u.model],
            set_={"images": u.images + stmt.excluded.images, "cost": u.cost + stmt.excluded.cost},
        )
        async with self._db.transaction() as tx:
            await tx.execute(stmt)

    async def usage_between(
        self, *, user_id: int | None, guild_id: int | None, first_day: str, last_day: str
    ) -> list[UsageRow]:
        """Charged usage over the inclusive day range, one row per model (by model name).
        user_id None = the whole guild; guild_id None = every server and DMs."""
        query = (
            sa.select(
                u.model, sa.func.sum(u.images).label("images"), sa.func.sum(u.cost).label("cost")
            )
            .where(
                u.day >= check_day(first_day),
                u.day <= check_day(last_day),
                *_filters(user_id, guild_id, u.user_id, u.guild_id),
            )
            .group_by(u.model)
            .order_by(u.model)
        )
        async with self._db.reading() as tx:
            rows = await tx.all(query)
        return [UsageRow(str(r["model"]), int(r["images"]), float(r["cost"])) for r in rows]

    async def reserved_today(
        self, *, user_id: int | None, guild_id: int | None, day: str | None = None
    ) -> QuotaUse:
        """For a quota check before queueing: what was charged on `day` (default today, UTC)
        plus what is queued or running and not charged yet (counted at its estimated_cost), so
        queueing ten jobs at once cannot overrun a daily limit. Same filters as usage_between."""
        day = self._today() if day is None else check_day(day)
        async with self._db.reading() as tx:
            return await reserved_in(tx, user_id=user_id, guild_id=guild_id, day=day)
