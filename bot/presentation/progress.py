"""Coalesced progress edits for a job's message ("Queued — 3rd in line", "Generating… 12 s")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import discord

from bot.presentation.targets import Target

log = logging.getLogger(__name__)


class ProgressUpdater:
    """Coalesces progress edits: at most one edit per interval, the latest text wins.

    An edit already on its way is allowed to land before close() returns, so a late progress
    edit can never overwrite the result that follows it."""

    def __init__(
        self,
        target: Target,
        interval: float,
        *,
        on_message: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.target = target
        self.interval = interval
        self.on_message = on_message  # called when the target's message id becomes known
        self._pending: tuple[str, discord.ui.View | None] | None = None
        self._shown: tuple[str, bool] | None = None
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None
        self._sending = False
        self._closed = False

    def set(self, content: str, view: discord.ui.View | None) -> None:
        if self._closed:
            return
        self._pending = (content, view)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending is not None and not self._closed:
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self._pending is None or self._closed:
                return
            content, view = self._pending
            self._pending = None
            if self._shown == (content, view is not None):
                continue  # same text and buttons: an edit would change nothing
            self._last = time.monotonic()
            known = self.target.message_id
            self._sending = True
            try:
                await self.target.show(content, view=view)
                self._shown = (content, view is not None)
                if self.on_message is not None and self.target.message_id != known:
                    await self.on_message()
            except Exception:
                log.exception("progress update failed")
            finally:
                self._sending = False

    async def close(self) -> None:
        self._closed = True
        self._pending = None
        task = self._task
        if task is None or task.done():
            return
        if self._sending:
            await asyncio.wait({task})
        else:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
