"""The shared Gemini limiter: at most N calls in flight per model and M calls per minute, counted
across every process that shares the database.

A call holds a row in `gemini_slots` with a lease (expires_at): a process that dies mid-call
frees its slot when the lease runs out, not never. Each call also leaves a row in
`gemini_calls`, the sliding window the per-minute limit counts (rows older than a minute are
deleted as it goes). Deciding is one transaction under the lock "gemini:<model>" (see
bot.adapters.store._jobs for how locks work on each engine).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import sqlalchemy as sa

from bot.adapters.store._base import StoreBase
from bot.adapters.store.rows import GeminiBusy, GeminiSlot
from bot.adapters.store.tables import gemini_calls, gemini_slots

_WINDOW = 60.0
s = gemini_slots.c
c = gemini_calls.c


class LimiterMixin(StoreBase):
    async def acquire_gemini_slot(
        self,
        model: str,
        holder: str,
        *,
        max_in_flight: int,
        per_minute: int | None,
        lease_seconds: float,
    ) -> GeminiSlot | GeminiBusy:
        """A slot for one call to `model`, or GeminiBusy saying why not and when to retry.
        `lease_seconds` must outlast the call (its timeout); renew_gemini_slot extends it."""
        if max_in_flight < 1 or (per_minute is not None and per_minute < 1):
            raise ValueError("limits must be at least 1")
        if not lease_seconds > 0:
            raise ValueError("lease_seconds must be positive")
        async with self._db.transaction(urgent=True) as tx:
            await tx.lock(f"gemini:{model}")
            now = self._now()
            await tx.execute(sa.delete(gemini_slots).where(s.model == model, s.expires_at <= now))
            await tx.execute(sa.delete(gemini_calls).where(c.model == model, c.at <= now - _WINDOW))
            flying = await tx.one(
                sa.select(sa.func.count().label("n"), sa.func.min(s.expires_at).label("soonest"))
                .where(s.model == model)
            )  # fmt: skip
            assert flying is not None
            if int(flying["n"]) >= max_in_flight:
                return GeminiBusy("in_flight", max(0.0, float(flying["soonest"]) - now))
            if per_minute is not None:
                recent = await tx.one(
                    sa.select(sa.func.count().label("n"), sa.func.min(c.at).label("oldest"))
                    .where(c.model == model)
                )  # fmt: skip
                assert recent is not None
                if int(recent["n"]) >= per_minute:
                    retry = float(recent["oldest"]) + _WINDOW - now
                    return GeminiBusy("per_minute", max(0.0, retry))
            expires = now + float(lease_seconds)
            slot_id = await tx.insert(
                sa.insert(gemini_slots).values(
                    model=model, holder=holder, acquired_at=now, expires_at=expires
                )
            )
            await tx.execute(sa.insert(gemini_calls).values(model=model, at=now))
        return GeminiSlot(slot_id, model, holder, expires)

    async def renew_gemini_slot(self, slot_id: int, *, lease_seconds: float) -> bool:
        """Extend a held slot's lease. False if it already ran out (or was released)."""
        now = self._now()
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                sa.update(gemini_slots)
                .where(s.id == slot_id, s.expires_at > now)
                .values(expires_at=now + float(lease_seconds))
            )
        return changed == 1

    async def release_gemini_slot(self, slot_id: int) -> bool:
        """The call ended: free its slot (the per-minute window still counts the call)."""
        async with self._db.transaction(urgent=True) as tx:
            changed = await tx.execute(sa.delete(gemini_slots).where(s.id == slot_id))
        return changed == 1

    async def gemini_in_flight(self, model: str) -> int:
        """Calls to `model` holding a live slot now, across processes."""
        async with self._db.reading() as tx:
            return int(
                await tx.scalar(
                    sa.select(sa.func.count())
                    .select_from(gemini_slots)
                    .where(s.model == model, s.expires_at > self._now())
                )
            )

    @contextlib.asynccontextmanager
    async def gemini_slot(
        self,
        model: str,
        holder: str,
        *,
        max_in_flight: int,
        per_minute: int | None,
        lease_seconds: float,
        poll_seconds: float = 0.25,
    ) -> AsyncIterator[GeminiSlot]:
        """Wait for a slot (polling, at most `poll_seconds` apart; bound the wait with
        `asyncio.timeout` around it), hold it for the block, release it after, whatever
        happens."""
        while True:
            got = await self.acquire_gemini_slot(
                model, holder, max_in_flight=max_in_flight, per_minute=per_minute,
                lease_seconds=lease_seconds,
            )  # fmt: skip
            if isinstance(got, GeminiSlot):
                break
            await asyncio.sleep(min(max(got.retry_after, 0.01), poll_seconds))
        try:
            yield got
        finally:
            await asyncio.shield(self.release_gemini_slot(got.id))
