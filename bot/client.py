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
from bot.adapters.gemini_batch import GeminiBatchClient
from bot.adapters.prompts import SpecError, load_templates
from bot.adapters.store import Store
from bot.config import Settings
from bot.core.metrics import Metrics
from bot.presentation.buttons import ActionButton, ActionRegistry
from bot.presentation.places import ANY_INSTALL, EVERYWHERE
from bot.presentation.replies import report_error
from bot.services.batches import BatchSheets
from bot.services.chains import Chains
from bot.services.describe import DescribeService
from bot.services.economy import EconomyService
from bot.services.generation import Generator
from bot.services.health import HealthChecks, HealthServer
from bot.services.posting import ResultPoster
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
    "cogs.economy",
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


class NanoBananaBot(commands.AutoShardedBot):
    """Runs SHARD_IDS of SHARD_COUNT gateway shards (unset: Discord's recommended count, all
    here). Any process on the same database may run any job, whoever received it."""

    store: Store
    gemini: GeminiClient
    poster: ResultPoster
    generator: Generator
    chains: Chains
    requests: RequestService
    templates: TemplateCatalog
    sheets: BatchSheets
    describer: DescribeService
    splitter: SplitService
    economy: EconomyService

    def __init__(self, settings: Settings, **options: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        options.setdefault("guild_ready_timeout", 2.0)
        if settings.shard_count is not None:
            options.setdefault("shard_count", settings.shard_count)
            if settings.shard_ids:
                options.setdefault("shard_ids", list(settings.shard_ids))
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=NanoTree,
            help_command=None,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
            # Every command is installable to servers and to users' accounts and usable in
            # servers, the bot's DM and group DMs unless it says otherwise (/quota).
            allowed_contexts=EVERYWHERE,
            allowed_installs=ANY_INSTALL,
            **options,
        )
        self.settings = settings
        self.actions = ActionRegistry()
        self.metrics = Metrics()
        self.health: HealthServer | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._shutdown: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        s = self.settings
        self.store = await Store.open(s.database)
        self.gemini = GeminiClient(s)
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
            gemini=self.gemini,
            poster=self.poster,
            client=self,
            metrics=self.metrics,
        )
        self.sheets = BatchSheets(store=self.store, client=self, worker_id=self.generator.worker_id)
        self.generator.group_ended = self.sheets.group_ended
        self.economy = EconomyService(
            store=self.store,
            settings=s,
            batches=GeminiBatchClient(s),
            poster=self.poster,
            client=self,
            worker_id=self.generator.worker_id,
        )
        self.economy.group_ended = self.sheets.group_ended
        self.chains = Chains(store=self.store, settings=s, generator=self.generator, client=self)
        self.requests = RequestService(
            store=self.store,
            settings=s,
            generator=self.generator,
            client=self,
            fetch=self.http.get_from_cdn,
        )
        self.requests.economy = self.economy
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
        # Jobs queued by any process (this one before a restart included) start now.
        self.generator.start()
        self.requests.start()
        self.economy.start()  # batches submitted before a restart are polled on
        self._maintenance = asyncio.create_task(self._maintain())

    def _health_checks(self) -> HealthChecks:
        def gateway() -> bool:
            shards = self.shards.values()
            return not self.is_closed() and bool(shards) and not any(s.is_closed() for s in shards)

        return HealthChecks(
            ready=self.is_ready,
            gateway=gateway,
            database=self.store.ping,
            job_counts=self.store.job_counts,
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
        log.info(
            "logged in as %s (%s), shards %s of %s",
            self.user,
            getattr(self.user, "id", "?"),
            sorted(self.shards),
            self.shard_count,
        )

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
        running jobs go back in line and resume in the next process to claim them."""
        if self._shutdown is None:
            self._shutdown = asyncio.create_task(self._close_everything())
        await asyncio.shield(self._shutdown)

    async def _close_everything(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
        if hasattr(self, "requests"):
            await self.requests.stop()
        if hasattr(self, "economy"):
            await self.economy.stop(grace=2.0)  # held batches are handed back at once
        if hasattr(self, "generator"):
            # Jobs held here go back in line; any process (this one restarted) resumes them.
            await self.generator.stop(grace=2.0)
        await super().close()
        if self.health is not None:
            await self.health.stop()
        if hasattr(self, "gemini"):
            await self.gemini.aclose()
        if hasattr(self, "economy"):
            await self.economy.batches.aclose()
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
