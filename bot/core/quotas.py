"""Daily budgets: per-user image and dollar limits and a server-wide dollar budget.

Only successful generations are recorded as usage, so blocked and failed calls never count.
Jobs still waiting or running count at their estimated cost, so a batch cannot overshoot.
Days are UTC days: every limit resets at 00:00 UTC.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.config import Settings, estimate_cost
from bot.errors import QuotaExceeded

if TYPE_CHECKING:
    from bot.adapters.prompts import PreparedSpec
    from bot.adapters.store import Store

# Float sums of prices (0.134 + 0.067 …) must not refuse a request that exactly fits.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Limits:
    images_per_user: int | None
    dollars_per_user: float | None
    dollars_guild: float | None

    @property
    def any(self) -> bool:
        return (
            self.images_per_user is not None
            or self.dollars_per_user is not None
            or self.dollars_guild is not None
        )


def today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


def month_start(day: str) -> str:
    return day[:8] + "01"


def next_reset() -> int:
    """Epoch seconds of the next UTC midnight, when daily quotas reset."""
    now = dt.datetime.now(dt.UTC)
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(tomorrow.timestamp())


def resets_text() -> str:
    """'resets in 5 hours (00:00 UTC)' as a Discord timestamp each client shows in its time."""
    return f"resets <t:{next_reset()}:R> (00:00 UTC)"


async def limits_for(store: Store, settings: Settings, guild_id: int | None) -> Limits:
    """The server's limits (set with /quota), else the configured defaults. 0 or unset: none."""
    guild = await store.get_guild_settings(guild_id) if guild_id else {}

    def pick(key: str, default: float | int | None) -> float | None:
        value = guild.get(key) if key in guild else default
        if value is None or float(value) <= 0:
            return None
        return float(value)

    images = pick("daily_images_per_user", settings.default_daily_images_per_user)
    return Limits(
        images_per_user=int(images) if images is not None else None,
        dollars_per_user=pick("daily_dollars_per_user", settings.default_daily_dollars_per_user),
        dollars_guild=pick("daily_dollars_guild", None),
    )


async def check_quota(
    store: Store,
    settings: Settings,
    *,
    user_id: int,
    guild_id: int | None,
    images: int,
    cost: float,
) -> None:
    """Raise QuotaExceeded (saying when it resets) if these images would pass a limit.

    Counts what was charged today plus what is queued or running (at its estimated cost)."""
    limits = await limits_for(store, settings, guild_id)
    if not limits.any:
        return
    mine = await store.reserved_today(user_id=user_id, guild_id=guild_id)
    pending = (
        f" ({mine.pending_images} of them still being made)" if mine.pending_images else ""
    )
    if limits.images_per_user is not None:
        limit = limits.images_per_user
        if mine.total_images + images > limit:
            left = max(0, limit - mine.total_images)
            raise QuotaExceeded(
                f"That is over your daily limit of {limit} images: {mine.total_images} used "
                f"today{pending}, {left} left, and this needs {images}. "
                f"Your quota {resets_text()}."
            )
    if limits.dollars_per_user is not None:
        limit_d = limits.dollars_per_user
        if mine.total_cost + cost > limit_d + _EPSILON:
            raise QuotaExceeded(
                f"That is over your daily budget of ${limit_d:.2f}: ${mine.total_cost:.2f} "
                f"used today{pending}, and this costs about ${cost:.2f}. "
                f"Your budget {resets_text()}."
            )
    if limits.dollars_guild is not None and guild_id is not None:
        everyone = await store.reserved_today(user_id=None, guild_id=guild_id)
        if everyone.total_cost + cost > limits.dollars_guild + _EPSILON:
            raise QuotaExceeded(
                f"That is over this server's daily budget of ${limits.dollars_guild:.2f}: "
                f"${everyone.total_cost:.2f} used today, and this costs about ${cost:.2f}. "
                f"The server's budget {resets_text()}."
            )


def request_cost(prepared: Sequence[PreparedSpec]) -> float:
    """The estimated cost of these requests (one image each)."""
    return sum(estimate_cost(p.model, p.size) for p in prepared)


async def precheck(
    store: Store,
    settings: Settings,
    *,
    user_id: int,
    guild_id: int | None,
    prepared: Sequence[PreparedSpec],
) -> None:
    """The one quota pre-check, before a request is acknowledged or queued: QuotaExceeded if
    these images (one per spec) would pass a limit. `reserve` checks again atomically."""
    await check_quota(
        store,
        settings,
        user_id=user_id,
        guild_id=guild_id,
        images=len(prepared),
        cost=request_cost(prepared),
    )


# One lock per server and store (a store per running bot; weak so a closed bot's go away).
_gates: weakref.WeakKeyDictionary[Store, dict[int, asyncio.Lock]] = weakref.WeakKeyDictionary()


# (store, guild, task) of the reserve() the current task is inside, if any. Tasks started
# inside inherit the value but are other tasks, so they never skip the check.
_holder: ContextVar[tuple[Store, int, asyncio.Task[object] | None] | None] = ContextVar(
    "quota_gate_holder", default=None
)


def _gate(store: Store, guild_id: int | None) -> asyncio.Lock:
    locks = _gates.setdefault(store, {})
    return locks.setdefault(guild_id or 0, asyncio.Lock())


@asynccontextmanager
async def reserve(
    store: Store,
    settings: Settings,
    *,
    user_id: int,
    guild_id: int | None,
    images: int,
    cost: float,
) -> AsyncIterator[None]:
    """Check the quota, then hold the server's gate while the block records the request as a
    queued generation (which reserved_today counts from then on). Without the gate, two
    requests arriving together would both see the last image of a quota as free.

    Nested calls in the same task pass straight through, so a caller can reserve several
    images at once around several Generator.submit calls. One process only: several workers
    sharing a database would need the check and the insert in one database transaction."""
    key = (store, guild_id or 0, asyncio.current_task())
    held = _holder.get()
    if held is not None and all(a is b for a, b in zip(held, key, strict=True)):
        # Nested in this task's own reserve() (a batch recording its images one by one):
        # the outer call checked them all and holds the gate.
        yield
        return
    async with _gate(store, guild_id):
        await check_quota(
            store, settings, user_id=user_id, guild_id=guild_id, images=images, cost=cost
        )
        token = _holder.set(key)
        try:
            yield
        finally:
            _holder.reset(token)
