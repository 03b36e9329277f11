"""Starts the REAL bot (bot.client with every cog) against the loopback fakes.

The bot is configured only through its public settings (DISCORD_API_BASE, DISCORD_GATEWAY_URL,
GEMINI_BASE_URL), exactly as a user would point it at a proxy. It can be stopped and started
again on the same database to test restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from bot.client import NanoBananaBot, apply_discord_endpoints
from bot.config import Settings


class BotHarness:
    def __init__(self, discord_fake: Any, gemini_fake: Any, data_dir: Path) -> None:
        self.discord = discord_fake
        self.gemini = gemini_fake
        self.data_dir = data_dir
        self.bot: NanoBananaBot | None = None
        self._task: asyncio.Task[None] | None = None
        self.overrides: dict[str, Any] = {}

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "discord_token": self.discord.token,
            "gemini_api_key": self.gemini.api_key,
            "database_path": self.data_dir / "bot.db",
            "discord_api_base": self.discord.api_base,
            "discord_gateway_url": self.discord.gateway_url,
            "gemini_base_url": self.gemini.url,
            "gemini_api_version": "v1beta",
            "progress_interval_seconds": 0.3,
            "gemini_max_attempts": 3,
            "gemini_retry_budget_seconds": 20,
            "timeout_1k_seconds": 20,
            "timeout_2k_seconds": 20,
            "timeout_4k_seconds": 30,
        }
        values.update(self.overrides)
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    async def start(self, **overrides: Any) -> NanoBananaBot:
        settings = self.settings(**overrides)
        apply_discord_endpoints(settings)
        bot = NanoBananaBot(settings, guild_ready_timeout=0.05)
        self.bot = bot
        self._task = asyncio.create_task(bot.start(self.discord.token))
        ready = asyncio.create_task(self.discord.wait_until_ready(timeout=15))
        done, _ = await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            ready.cancel()
            self._task.result()  # raises the bot's start-up error
            raise RuntimeError("the bot stopped during start-up")
        ready.result()
        await bot.wait_until_ready()
        return bot

    async def stop(self) -> None:
        if self.bot is not None:
            await self.bot.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 10)
        self.bot = None
        self._task = None

    async def restart(self, **overrides: Any) -> NanoBananaBot:
        await self.stop()
        self.discord.reset_ready()
        return await self.start(**overrides)
