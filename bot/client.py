"""The one place that wires the layers: a commands.Bot whose setup_hook builds the adapters,
core and services with explicit dependencies, loads the extensions and the persistent buttons;
and a CommandTree whose one on_error turns every failure into a short private message."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import sys
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot.adapters.gemini import GeminiClient
from bot.adapters.prompts import SpecError, load_templates
from bot.adapters.store import Store
from bot.config import Settings
from bot.core.jobs import JobQueue
from bot.core.metrics import Metrics
from bot.presentation.buttons import ActionButton, ActionRegistry
from bot.presentation.replies import report_error
from bot.services.chains import Chains
from bot.services.describe import DescribeService
from bot.services.generation import Generator
from bot.services.health import HealthChecks, HealthServer
from bot.services.posting import ResultPoster
from bot.services.recovery import RecoveryService
from bot.services.requests import RequestService
from bot.services.split import SplitService
from bot.services.templates import TemplateCatalog

log = logging.getLogger(__name__)

EXTENSIONS = (
    "cogs.imagine",
    "cogs.edit",
    "cogs.results",
    "cogs.chains",
    "cogs.anchors",
    "cogs.templates",
    "cogs.batch",
    "cogs.account",
    "cogs.describe",
    "cogs.split",
)


def apply_discord_endpoints(settings: Settings) -> None:
    """Point discord.py at a proxy (or a test fake) when configured."""
    if settings.discord_api_base:
        discord.http.Route.BASE = settings.discord_api_base.rstrip("/")
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


class NanoTree(app_commands.CommandTree["NanoBananaBot"]):
    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        where = interaction.command.qualified_name if interaction.command else "a command"
        await report_error(interaction, error, where=f"/{where}")


class NanoBananaBot(commands.Bot):
    store: Store
    gemini: GeminiClient
    queue: JobQueue
    poster: ResultPoster
    generator: Generator
    chains: Chains
    recovery: RecoveryService
    requests: RequestService
    templates: TemplateCatalog
    describer: DescribeService
    splitter: SplitService

    def __init__(self, settings: Settings, **options: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        options.setdefault("guild_ready_timeout", 2.0)
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=NanoTree,
            help_command=None,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
            **options,
        )
        self.settings = settings
        self.actions = ActionRegistry()
        self.metrics = Metrics()
        self.health: HealthServer | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._recovered = False
        self._shutdown: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        s = self.settings
        self.store = await Store.open(s.database_path)
        self.gemini = GeminiClient(s)
        self.queue = JobQueue(
            concurrency=s.max_concurrent_jobs,
            max_running_per_user=s.max_running_per_user,
            max_queued_per_user=s.max_queued_per_user,
        )
        await self.queue.start()
        builtin = {}
        try:
            builtin = load_templates(s.templates_dir)
        except SpecError as exc:
            log.error("built-in templates not loaded: %s", exc)
        self.templates = TemplateCatalog(self.store, builtin)
        self.poster = ResultPoster(self.store)
        self.generator = Generator(
            store=self.store,
            settings=s,
            queue=self.queue,
            gemini=self.gemini,
            poster=self.poster,
            metrics=self.metrics,
        )
        self.chains = Chains(store=self.store, settings=s, generator=self.generator, client=self)
        self.recovery = RecoveryService(
            store=self.store,
            settings=s,
            generator=self.generator,
            poster=self.poster,
            client=self,
        )
        self.requests = RequestService(store=self.store, settings=s, generator=self.generator)
        self.describer = DescribeService(store=self.store, settings=s, gemini=self.gemini)
        self.splitter = SplitService(store=self.store)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        self.add_dynamic_items(ActionButton)
        if s.health_port is not None:
            self.health = HealthServer(
                port=s.health_port, host=s.health_host, checks=self._health_checks(), metrics=self.metrics
            )
            await self.health.start()
        await self.sync_commands()
        self._maintenance = asyncio.create_task(self._maintain())

    def _health_checks(self) -> HealthChecks:
        async def job_counts() -> dict[str, int]:
            return {"queued": self.queue.queued_count, "running": self.queue.running_count}

        return HealthChecks(
            ready=self.is_ready,
            gateway=lambda: not self.is_closed() and self.is_ready() and self.ws is not None,
            database=self.store.ping,
            job_counts=job_counts,
        )

    async def sync_commands(self) -> None:
        if self.settings.discord_guild_ids:
            for guild_id in self.settings.discord_guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
            log.info("commands synced to guilds %s", self.settings.discord_guild_ids)
        else:
            await self.tree.sync()
            log.info("commands synced globally")

    async def on_ready(self) -> None:
        log.info("logged in as %s (%s)", self.user, getattr(self.user, "id", "?"))
        if not self._recovered:
            self._recovered = True
            # Our own task, so that a shutdown can stop it before the store closes.
            self._recovery = asyncio.create_task(self.recovery.recover())
            await asyncio.shield(self._recovery)

    async def _maintain(self) -> None:
        """Retention: image bytes of inactive results past the retention period go."""
        while True:
            try:
                removed = await self.store.purge_expired_images(
                    retention_days=self.settings.image_retention_days
                )
                if removed:
                    log.info("retention removed %d images", removed)
            except Exception:
                log.exception("retention pass failed")
            await asyncio.sleep(6 * 3600)

    async def close(self) -> None:
        """Stop cleanly, once, however many times it is called (SIGTERM, then __aexit__):
        running jobs stay open in the store and resume on the next start."""
        if self._shutdown is None:
            self._shutdown = asyncio.create_task(self._close_everything())
        await asyncio.shield(self._shutdown)

    async def _close_everything(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
        if self._recovery is not None and not self._recovery.done():
            # What it has not handled yet stays open in the store for the next start.
            self._recovery.cancel()
            await asyncio.wait({self._recovery})
        if hasattr(self, "queue"):
            if hasattr(self, "generator"):
                self.generator.shutting_down = True
            interrupted = await self.queue.stop(grace=2.0)
            if interrupted:
                log.info(
                    "%d jobs interrupted by shutdown; they resume on next start", len(interrupted)
                )
            if hasattr(self, "generator"):
                await self.generator.settle()
            if hasattr(self, "recovery"):
                await self.recovery.stop()
        await super().close()
        if self.health is not None:
            await self.health.stop()
        if hasattr(self, "gemini"):
            await self.gemini.aclose()
        if hasattr(self, "store"):
            await self.store.close()


async def _run(settings: Settings) -> None:
    apply_discord_endpoints(settings)
    bot = NanoBananaBot(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows has no signal handlers
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
    assert settings.discord_token is not None
    async with bot:
        try:
            await bot.start(settings.discord_token.get_secret_value())
        except discord.LoginFailure:
            log.error("Discord refused the token: check DISCORD_TOKEN in .env")
            raise SystemExit(2) from None
        finally:
            await bot.close()  # waits for the whole shutdown, whoever started it
    log.info("stopped")


def keep_big_buffers_returnable() -> None:
    """glibc raises its mmap threshold each time a big buffer is freed; after that, 4K image
    buffers (10-50 MB each) are carved from heap arenas that rarely shrink, and a burst of
    4K results leaves the process at ~2x its working set. A fixed threshold keeps buffers
    over 256 KiB in their own mappings, handed back to the OS when freed. No-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl, say)
        pass


def run_bot(settings: Settings) -> None:
    keep_big_buffers_returnable()
    asyncio.run(_run(settings))
