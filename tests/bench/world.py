"""One benchmark world: fresh fakes in this process, the real bot in a subprocess.

The bot runs as `python -m bot run` (or `python -m tests.bench.botproc`, the same plus a lag
sampler), pointed at the fakes only through its public settings (DISCORD_API_BASE,
DISCORD_GATEWAY_URL, GEMINI_BASE_URL ...), in a scratch directory so no developer `.env` is
read. Its memory is its own: the fakes (and the image bytes they hold) live in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.fakes import ResultClock, TimedGemini, add_members
from tests.fakes.discord_driver import FakeInteraction
from tests.fakes.discord_server import FakeDiscord

REPO = Path(__file__).resolve().parents[2]
READY_LINE = "bot.client: logged in as"  # what on_ready logs


def read_status_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM ... from /proc/<pid>/status, in KiB ({} once the process is gone)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.startswith("Vm") and value.strip().endswith("kB"):
                out[key] = int(value.split()[0])
    return out


@dataclass
class BotProcess:
    """The bot as a child process; `lag=True` runs it with the in-loop lag sampler."""

    env: dict[str, str]
    workdir: Path
    lag: bool = False
    proc: asyncio.subprocess.Process | None = None
    name: str = "bot"
    killed: bool = False  # by the scenario, on purpose (kill -9)
    lag_file: Path = field(init=False)
    log_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.lag_file = self.workdir / f"{self.name}-lag.json"
        self.log_file = self.workdir / f"{self.name}.log"

    async def kill(self) -> None:
        """kill -9: no shutdown, no hand-back; its leases run out."""
        if self.proc is not None and self.proc.returncode is None:
            self.killed = True
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        module = ["tests.bench.botproc"] if self.lag else ["bot", "run"]
        env = dict(self.env)
        if self.lag:
            env["BENCH_LAG_FILE"] = str(self.lag_file)
        with self.log_file.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                *module,
                cwd=self.workdir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def status(self) -> dict[str, int]:
        return read_status_kib(self.pid)

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_file.read_text(errors="replace")
        return ""

    def keep_log(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.log_text())

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def stop(self, timeout: float = 20) -> None:  # noqa: ASYNC109
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def lag_samples(self) -> tuple[list[float], list[float]]:
        """(sleep start times, overshoots) once the process has exited; empty without lag."""
        try:
            data = json.loads(self.lag_file.read_text())
        except (OSError, ValueError):
            return [], []
        return list(data["t"]), list(data["lag"])


@dataclass
class World:
    discord: FakeDiscord
    gemini: TimedGemini
    clock: ResultClock
    bot: BotProcess  # the first process (the only one unless processes > 1)
    bots: list[BotProcess] = field(default_factory=list)

    async def wait(self, condition: Any, timeout: float, what: str) -> None:  # noqa: ASYNC109
        """Until condition() holds; fails fast (with the bot's log) if the bot died."""
        deadline = time.monotonic() + timeout

        def check() -> bool:
            for bot in self.bots or [self.bot]:
                proc = bot.proc
                if proc is not None and proc.returncode is not None and not bot.killed:
                    raise RuntimeError(
                        f"the bot exited ({proc.returncode}) while waiting for {what}:\n"
                        + bot.log_tail()
                    )
            return bool(condition())

        while not check():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
            # the fake's own wait wakes on every Discord event; cap it to re-check the process
            with contextlib.suppress(AssertionError):
                await self.discord._wait(check, min(left, 1.0), what)

    async def result(self, ix: FakeInteraction, timeout: float) -> float:  # noqa: ASYNC109
        """Monotonic time the interaction's response first carried a result image."""
        await self.wait(
            lambda: self.clock.outcome(ix.record.original_id) is not None or ix.record.failed,
            timeout,
            f"the result of {ix.record.name}",
        )
        if ix.record.failed:
            raise RuntimeError(f"interaction failed: {ix.record.fail_reason}")
        outcome = self.clock.outcome(ix.record.original_id)
        if isinstance(outcome, str):
            raise RuntimeError(f"the bot reported an error: {outcome}")
        assert outcome is not None
        return outcome

    async def results(self, ixs: list[FakeInteraction], timeout: float) -> list[float]:  # noqa: ASYNC109
        return list(await asyncio.gather(*(self.result(ix, timeout) for ix in ixs)))


def bot_env(
    discord: FakeDiscord, gemini: TimedGemini, data_dir: Path, **settings: Any
) -> dict[str, str]:
    """The environment a `python -m bot run` pointed at the fakes gets; nothing inherited
    beyond what Python needs (no developer tokens can leak in)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env.update(
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        DISCORD_TOKEN=discord.token,
        GEMINI_API_KEY=gemini.api_key,
        DATABASE_PATH=str(data_dir / "bot.db"),
        DISCORD_API_BASE=discord.api_base,
        DISCORD_GATEWAY_URL=discord.gateway_url,
        GEMINI_BASE_URL=gemini.url,
        GEMINI_API_VERSION="v1beta",
        LOG_LEVEL="INFO",
    )
    env.update({k.upper(): str(v) for k, v in settings.items()})
    return env


@contextlib.asynccontextmanager
async def world(
    *,
    lag: bool = False,
    extra_members: int = 0,
    watchdog: bool = False,
    log_to: Path | None = None,
    processes: int = 1,
    **settings: Any,
) -> AsyncIterator[World]:
    """Fresh fakes + the bot started against them (settings become env vars). `lag`: with
    the loop-lag sampler; `watchdog`: also print stall stacks to the bot's log (see
    tests.bench.stalls); `log_to`: keep a copy of the bot's log there. `processes` > 1: that
    many bot processes, one gateway shard each, on the same database (give `database_url`)."""
    if watchdog:
        lag = True
        settings["bench_watchdog"] = 1
    with tempfile.TemporaryDirectory(prefix="nb-bench-") as tmp:
        workdir = Path(tmp)
        discord = FakeDiscord()
        gemini = TimedGemini()
        await discord.start()
        await gemini.start()
        add_members(discord, extra_members)
        clock = ResultClock(discord)
        bots = []
        for n in range(processes):
            shards = {"shard_count": processes, "shard_ids": n} if processes > 1 else {}
            env = bot_env(discord, gemini, workdir, **settings, **shards)
            bots.append(BotProcess(env, workdir, lag=lag, name=f"bot{n}"))
        w = World(discord, gemini, clock, bots[0], bots)
        try:
            for bot in bots:
                await bot.start()
            await w.wait(
                lambda: (
                    discord.gateway.identify_count > 0
                    and discord.gateway.attached_ready(processes if processes > 1 else None)
                    and bool(discord.state.global_commands or discord.state.guild_commands)
                ),
                60,
                "the bot to connect and sync its commands",
            )
            for bot in bots:
                await w.wait(lambda bot=bot: READY_LINE in bot.log_text(), 60, "on_ready")
            yield w
        finally:
            for bot in bots:
                await bot.stop()
            await gemini.stop()
            await discord.stop()
            if log_to is not None:
                for bot in bots:
                    bot.keep_log(log_to.with_name(f"{log_to.stem}-{bot.name}{log_to.suffix}"))
