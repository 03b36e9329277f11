"""`python -m bot run` plus one thing: an event-loop lag sampler inside the bot's own loop.

The benchmark starts this as a subprocess when it measures event-loop lag. The bot is wired
exactly as `python -m bot run` wires it (settings from the environment, the same client class,
the same signal handling); beside it runs one task that sleeps 10 ms and records by how much
each sleep overshot. On exit (SIGTERM) the samples are written as JSON to $BENCH_LAG_FILE:
`{"period": 0.01, "t": [monotonic start of each sleep], "lag": [overshoot seconds]}`.
CLOCK_MONOTONIC is system-wide on Linux, so the benchmark can cut windows out of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from array import array
from pathlib import Path

from bot.client import NanoBananaBot, apply_discord_endpoints, keep_big_buffers_returnable
from bot.config import ConfigError, Settings, load_settings, require
from bot.logging_setup import setup_logging

PERIOD = 0.010


class LagSampler:
    """Sleeps PERIOD again and again; each overshoot is how long the loop was busy elsewhere."""

    def __init__(self, period: float = PERIOD) -> None:
        self.period = period
        self.starts = array("d")  # compact: 16 bytes a sample, ~1.6 KB a second
        self.lags = array("d")

    async def run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(self.period)
            self.starts.append(start)
            self.lags.append(max(0.0, time.monotonic() - start - self.period))

    def dump(self, path: Path) -> None:
        data = {"period": self.period, "t": list(self.starts), "lag": list(self.lags)}
        path.write_text(json.dumps(data))


async def _run(settings: Settings, sampler: LagSampler) -> None:
    apply_discord_endpoints(settings)
    bot = NanoBananaBot(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
    task = asyncio.create_task(sampler.run())
    if os.environ.get("BENCH_WATCHDOG"):
        from tests.bench.stalls import watch_stalls

        watchdog = asyncio.create_task(watch_stalls())
        task.add_done_callback(lambda _: watchdog.cancel())
    assert settings.discord_token is not None
    try:
        async with bot:
            await bot.start(settings.discord_token.get_secret_value())
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def main() -> int:
    out = Path(os.environ["BENCH_LAG_FILE"])
    try:
        settings = load_settings()
        require(settings, "DISCORD_TOKEN", "GEMINI_API_KEY")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.secrets())
    keep_big_buffers_returnable()  # as `python -m bot run` does
    sampler = LagSampler()
    try:
        asyncio.run(_run(settings, sampler))
    finally:
        sampler.dump(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
