"""Serial lanes: FIFO turns by key ("chain:42", "channel:7"), taken synchronously so the order
of `take` calls is the order of turns. A lane exists only while someone holds or waits."""

from __future__ import annotations

import asyncio
from types import TracebackType


class Ticket:
    """A place in a lane. `async with ticket:` waits for the places before it; leaving (or
    `release()`, idempotent) lets the next one go. Taken synchronously, so the order of
    `take` calls is the order of turns."""

    def __init__(self, lanes: SerialLanes, key: str, prev: asyncio.Future[None] | None) -> None:
        self._lanes = lanes
        self._key = key
        self._prev = prev
        self._mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._released = False

    async def __aenter__(self) -> Ticket:
        if self._prev is not None and not self._prev.done():
            try:
                await asyncio.shield(self._prev)
            except BaseException:
                self.release()
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._prev is None or self._prev.done():
            self._finish()
        else:  # left before its turn came: the next one still waits for ours
            self._prev.add_done_callback(lambda _f: self._finish())

    def _finish(self) -> None:
        if not self._mine.done():
            self._mine.set_result(None)
        self._lanes._forget(self._key, self._mine)


class SerialLanes:
    """FIFO lanes by key; a lane exists only while someone holds or waits for a turn."""

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future[None]] = {}

    def take(self, key: str) -> Ticket:
        ticket = Ticket(self, key, self._tails.get(key))
        self._tails[key] = ticket._mine
        return ticket

    def busy(self, key: str) -> bool:
        return key in self._tails

    def _forget(self, key: str, future: asyncio.Future[None]) -> None:
        if self._tails.get(key) is future:
            del self._tails[key]
