"""Waiting on the fake Discord and its traffic log: `wait_until_ready`, `wait_for_message`,
event numbers (`event_mark`), the "something changed" signal every wait sleeps on, and the
traffic lines shown when a wait times out. FakeDiscord inherits this.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

from tests.fakes.discord_gateway import Gateway
from tests.fakes.discord_state import DiscordState, MessageRecord


class Waiting:
    """Mixin for FakeDiscord: waits, event numbering and the traffic log."""

    state: DiscordState
    gateway: Gateway

    def __init__(self) -> None:
        self.traffic: deque[str] = deque(maxlen=400)
        self._changed = asyncio.Event()
        self._bot_events: list[tuple[int, int]] = []  # (event seq, message id)
        self._event_seq = 0
        self._mark = 0
        self._ready_floor = 0  # wait_until_ready needs more IDENTIFYs than this

    async def wait_until_ready(
        self,
        timeout: float = 10,  # noqa: ASYNC109
        *,
        commands: bool = True,
        shards: int | None = None,
    ) -> None:
        """Bot identified (READY + GUILD_CREATE sent on a live connection; with `shards`, for
        every shard id of that shard count) and, unless commands=False, application commands
        have been synced at least once."""

        def ready() -> bool:
            synced = bool(self.state.global_commands or self.state.guild_commands)
            fresh = self.gateway.identify_count > self._ready_floor
            attached = self.gateway.attached_ready(shards)
            return fresh and attached and (synced or not commands)

        what = "the bot to connect" + (f" all {shards} shards" if shards else "")
        await self._wait(ready, timeout, what + (" and sync commands" if commands else ""))

    async def wait_for_message(
        self,
        *,
        channel: int | str | None = None,
        predicate: Callable[[MessageRecord], bool] | None = None,
        timeout: float = 15,  # noqa: ASYNC109
        since: int | None = None,
        ephemeral: bool | None = None,
        include_deleted: bool = False,
    ) -> MessageRecord:
        """The next bot message created or edited after the last fake-user action (or
        after event number `since`) that matches; AssertionError with traffic on timeout."""
        channel_id = self.state.channel_by_ref(channel).id if channel is not None else None
        start = self._mark if since is None else since
        found: list[MessageRecord] = []

        def check() -> bool:
            for seq, mid in self._bot_events:
                if seq <= start:
                    continue
                msg = self.state.messages[mid]
                if channel_id is not None and msg.channel_id != channel_id:
                    continue
                if msg.deleted and not include_deleted:
                    continue
                if ephemeral is not None and msg.ephemeral != ephemeral:
                    continue
                if msg.loading:
                    continue
                if predicate is None or predicate(msg):
                    found.append(msg)
                    return True
            return False

        where = f" in channel {channel}" if channel is not None else ""
        await self._wait(check, timeout, f"a bot message{where} matching the predicate")
        return found[0]

    def reset_ready(self) -> None:
        """From now on wait_until_ready() waits for a new IDENTIFY (a restarted bot)."""
        self._ready_floor = self.gateway.identify_count

    @property
    def event_mark(self) -> int:
        """The current event number (pass as since= to wait_for_message)."""
        return self._event_seq

    def traffic_dump(self, last: int = 20) -> str:
        lines = list(self.traffic)[-last:]
        return "\n".join(f"  {line}" for line in lines) or "  (no traffic)"

    async def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}. "
                    f"Recent traffic:\n{self.traffic_dump()}"
                )
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _log(self, line: str) -> None:
        self.traffic.append(f"{time.strftime('%H:%M:%S')} {line}")

    def _mark_action(self, description: str) -> None:
        self._mark = self._event_seq
        self._log(f"USER {description}")

    def _bot_message_event(self, msg: MessageRecord) -> None:
        """Number a bot message's creation or edit for wait_for_message (bench hooks this)."""
        if msg.author.id != self.state.bot_user.id:
            return
        self._event_seq += 1
        self._bot_events.append((self._event_seq, msg.id))
        self._notify()
