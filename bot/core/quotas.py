"""Daily budgets and queue room: what a request may add, decided by the database.

Per-user image and dollar limits and a server-wide dollar budget (set with /quota, else the
configured defaults), and each user's limit on waiting jobs. The store decides them in the
same transaction that records the request (`Store.admit`), so racing requests, in any number
of processes, can never together pass a limit; `precheck` asks the same question read-only,
to refuse before anything is acknowledged or shown. This module turns the store's answer
(`Refused`, with its numbers) into the message the user reads.

Only successful generations are charged, so blocked and failed calls never count. Jobs still
waiting or running count at their estimated cost, so a batch cannot overshoot. Days are UTC
days: every limit resets at 00:00 UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.adapters.store import AdmitLimits, RefusalKind, Refused
from bot.config import Settings, estimate_cost
from bot.errors import QueueFull, QuotaExceeded, UserError

if TYPE_CHECKING:
    from bot.adapters.prompts import PreparedSpec
    from bot.adapters.store import Store


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


async def admit_limits(store: Store, settings: Settings, guild_id: int | None) -> AdmitLimits:
    """Everything Store.admit enforces for a request in this server."""
    limits = await limits_for(store, settings, guild_id)
    return AdmitLimits(
        max_queued_per_user=settings.max_queued_per_user,
        images_per_user=limits.images_per_user,
        dollars_per_user=limits.dollars_per_user,
        dollars_guild=limits.dollars_guild if guild_id is not None else None,
    )


def request_cost(prepared: Sequence[PreparedSpec], *, economy: bool = False) -> float:
    """The estimated cost of these requests (one image each); `economy`: at the Batch API's
    price."""
    return sum(estimate_cost(p.model, p.size, economy=economy) for p in prepared)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def refusal_error(refused: Refused) -> UserError:
    """The message for a limit the store says a request would pass: what it is, how much is
    used, and what to do (wait, use fewer, or when the quota resets)."""
    pending = f" ({refused.pending_images} of them still being made)" if refused.pending_images else ""
    limit, used, wanted = refused.limit, refused.used, refused.requested
    if refused.kind is RefusalKind.QUEUED:
        waiting, adding = int(used), int(wanted)
        if adding == 1:
            return QueueFull(
                f"You already have {_plural(waiting, 'request')} waiting; "
                "wait for some to finish or cancel one."
            )
        return QueueFull(
            f"That is {adding} images, but you can queue only {int(refused.left)} more right "
            f"now (at most {int(limit)} waiting at a time). Nothing was queued or charged; use "
            "fewer or wait for your queued images to finish."
        )
    if refused.kind is RefusalKind.USER_IMAGES:
        return QuotaExceeded(
            f"That is over your daily limit of {int(limit)} images: {int(used)} used "
            f"today{pending}, {int(refused.left)} left, and this needs {int(wanted)}. "
            f"Your quota {resets_text()}."
        )
    if refused.kind is RefusalKind.USER_DOLLARS:
        return QuotaExceeded(
            f"That is over your daily budget of ${limit:.2f}: ${used:.2f} used today{pending}, "
            f"and this costs about ${wanted:.2f}. Your budget {resets_text()}."
        )
    return QuotaExceeded(
        f"That is over this server's daily budget of ${limit:.2f}: ${used:.2f} used today, "
        f"and this costs about ${wanted:.2f}. The server's budget {resets_text()}."
    )


async def precheck(
    store: Store,
    settings: Settings,
    *,
    user_id: int,
    guild_id: int | None,
    prepared: Sequence[PreparedSpec],
    economy: bool = False,
) -> None:
    """The one pre-check, before a request is acknowledged or shown: QueueFull or
    QuotaExceeded if these images (one per spec) would pass a limit right now. Admission
    decides again, atomically, when it records them. `economy`: at the batch price."""
    await check_budget(
        store,
        settings,
        user_id=user_id,
        guild_id=guild_id,
        images=len(prepared),
        cost=request_cost(prepared, economy=economy),
    )


async def check_budget(
    store: Store,
    settings: Settings,
    *,
    user_id: int,
    guild_id: int | None,
    images: int,
    cost: float,
) -> None:
    """`precheck` for any call (a /describe adds no image, only its cost)."""
    refused = await store.check_admission(
        user_id=user_id,
        guild_id=guild_id,
        images=images,
        cost=cost,
        limits=await admit_limits(store, settings, guild_id),
    )
    if refused is not None:
        raise refusal_error(refused)
