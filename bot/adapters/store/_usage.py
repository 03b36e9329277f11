"""Usage per user per UTC day (only successful generations are charged), and quota checks."""

from __future__ import annotations

from typing import Any

from bot.adapters.store._base import StoreBase, check_day
from bot.adapters.store.rows import QuotaUse, UsageRow

_DM = 0  # usage_daily.guild_id for direct messages (see the migration)


def _filters(
    user_id: int | None, guild_id: int | None, guild_column: str = "guild_id"
) -> tuple[str, list[Any]]:
    """WHERE fragments: user_id None = every user; guild_id None = every server and DMs
    (guild_id 0 = DMs only)."""
    clauses: list[str] = []
    params: list[Any] = []
    if user_id is not None:
        clauses.append("user_id = ?")
        params.append(user_id)
    if guild_id is not None:
        clauses.append(f"{guild_column} = ?")
        params.append(guild_id)
    return "".join(f" AND {c}" for c in clauses), params


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
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO usage_daily (day, user_id, guild_id, model, images, cost)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (day, user_id, guild_id, model) DO UPDATE"
                " SET images = usage_daily.images + excluded.images,"
                " cost = usage_daily.cost + excluded.cost",
                (day, user_id, _DM if guild_id is None else guild_id, model, images, cost),
            )

    async def usage_between(
        self, *, user_id: int | None, guild_id: int | None, first_day: str, last_day: str
    ) -> list[UsageRow]:
        """Charged usage over the inclusive day range, one row per model (by model name).
        user_id None = the whole guild; guild_id None = every server and DMs."""
        where, params = _filters(user_id, guild_id)
        async with self._db.reading() as tx:
            rows = await tx.all(
                "SELECT model, SUM(images) AS images, SUM(cost) AS cost FROM usage_daily"
                f" WHERE day >= ? AND day <= ?{where} GROUP BY model ORDER BY model",
                (check_day(first_day), check_day(last_day), *params),
            )
        return [UsageRow(str(r["model"]), int(r["images"]), float(r["cost"])) for r in rows]

    async def reserved_today(
        self, *, user_id: int | None, guild_id: int | None, day: str | None = None
    ) -> QuotaUse:
        """For a quota check before queueing: what was charged on `day` (default today, UTC)
        plus what is queued or running and not charged yet (counted at its estimated_cost), so
        queueing ten jobs at once cannot overrun a daily limit. Same filters as usage_between."""
        day = self._today() if day is None else check_day(day)
        used_where, used_params = _filters(user_id, guild_id)
        # generations keep NULL for DMs where usage_daily keeps 0.
        open_where, open_params = _filters(user_id, guild_id, "COALESCE(guild_id, 0)")
        async with self._db.reading() as tx:
            used = await tx.one(
                "SELECT COALESCE(SUM(images), 0) AS images, COALESCE(SUM(cost), 0) AS cost"
                f" FROM usage_daily WHERE day = ?{used_where}",
                (day, *used_params),
            )
            pending = await tx.one(
                "SELECT COUNT(*) AS images, COALESCE(SUM(estimated_cost), 0) AS cost"
                f" FROM generations WHERE status IN ('queued', 'running'){open_where}",
                open_params,
            )
        assert used is not None and pending is not None  # aggregates always return a row
        return QuotaUse(
            images=int(used["images"]),
            cost=float(used["cost"]),
            pending_images=int(pending["images"]),
            pending_cost=float(pending["cost"]),
        )
