"""The real bot as separate processes (`python -m bot run`) against the loopback fakes, for
what only processes can show: kill -9, several processes sharing one database, shards."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from tests.e2e.harness import BotHarness

ROOT = Path(__file__).resolve().parents[2]


class BotProcess:
    def __init__(self, harness: BotHarness, name: str, **settings: Any) -> None:
        base = harness.settings()
        self.harness = harness
        self.name = name
        self.log_path = harness.data_dir / f"{name}.log"
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            "DISCORD_TOKEN": harness.discord.token,
            "GEMINI_API_KEY": harness.gemini.api_key,
            "GEMINI_BASE_URL": harness.gemini.url,
            "GEMINI_API_VERSION": "v1beta",
            "DISCORD_API_BASE": harness.discord.api_base,
            "DISCORD_GATEWAY_URL": harness.discord.gateway_url,
            "DATABASE_PATH": str(base.database_path),
            "PROGRESS_INTERVAL_SECONDS": "0.3",
            "GEMINI_MAX_ATTEMPTS": "3",
            "GEMINI_RETRY_BUDGET_SECONDS": "20",
            "TIMEOUT_1K_SECONDS": "30",
            "JOB_POLL_SECONDS": "0.2",
        }
        self.env.update({key.upper(): str(value) for key, value in settings.items()})
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> BotProcess:
        log = self.log_path.open("ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run",
                cwd=self.harness.data_dir, env=self.env, stdout=log, stderr=log,
            )  # fmt: skip
        finally:
            log.close()
        return self

    async def kill(self) -> None:
        """kill -9: no shutdown, no hand-back, leases left to run out."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
