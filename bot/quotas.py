"""Daily budgets: per-user image and dollar limits and a server-wide dollar budget.

Only successful generations are recorded as usage, so blocked and failed calls never count.
Jobs still waiting or running count at their estimated cost, so a batch cannot overshoot.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.errors import QuotaExceeded

if TYPE_CHECKING:
    from bot.store import Store


@dataclass
class Limits:
    images_per_user: int | None
    dollars_per_user: float | None
    dollars_guild: float | None


def today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


def next_reset() -> int:
    """Epoch seconds of the next UTC midnight, when daily quotas reset."""
    now = dt.datetime.now(dt.UTC)
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(tomorrow.timestamp())


async def limits_for(store: Store, settings: Settings, guild_id: int | None) -> Limits:
    guild = await store.get_guild_settings(guild_id) if guild_id else {}

    def pick(key: str, default: float | int | None) -> float | int | None:
        value = guild.get(key)
        return default if value is None else value

    images = pick("daily_images_per_user", settings.default_daily_images_per_user)
    return Limits(
        images_per_user=int(images) if images is not None else None,
        dollars_per_user=_float(
            pick("daily_dollars_per_user", settings.default_daily_dollars_per_user)
        ),
        dollars_guild=_float(pick("daily_dollars_guild", None)),
    )


def _float(value: float | int | None) -> float | None:
    return float(value) if value is not None else None


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
    if limits == Limits(None, None, None):
        return
    resets = f"<t:{next_reset()}:R>"
    mine = await store.reserved_today(user_id=user_id, guild_id=guild_id)
    used_images, used_cost = mine.total_images, mine.total_cost
    if limits.images_per_user is not None and used_images + images > limits.images_per_user:
        left = max(0, limits.images_per_user - used_images)
        raise QuotaExceeded(
            f"That would pass your daily limit of {limits.images_per_user} images "
            f"({left} left today). It resets {resets}."
        )
    if limits.dollars_per_user is not None and used_cost + cost > limits.dollars_per_user + 1e-9:
        raise QuotaExceeded(
            f"That would pass your daily budget of ${limits.dollars_per_user:.2f} "
            f"(${used_cost:.2f} used, this costs about ${cost:.2f}). It resets {resets}."
        )
    if limits.dollars_guild is not None and guild_id is not None:
        everyone = await store.reserved_today(user_id=None, guild_id=guild_id)
        if everyone.total_cost + cost > limits.dollars_guild + 1e-9:
            raise QuotaExceeded(
                f"This server has used its daily budget of ${limits.dollars_guild:.2f}. "
                f"It resets {resets}."
            )
