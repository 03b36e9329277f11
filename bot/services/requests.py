"""The one path every request from a command or a modal takes: prepare, acknowledge,
download, resolve, check, queue.

Cheap checks (the spec, declared attachment sizes) are refused before anything is shown;
slow work (downloading attachments) happens after the interaction is acknowledged, well
inside Discord's 3 s. Every refusal is raised as a UserError for the central error handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import discord

from bot.adapters import imaging
from bot.adapters.prompts import Defaults, PreparedSpec, RequestOptions, SpecError, prepare
from bot.adapters.store import IntakeRow, Store
from bot.config import Settings
from bot.core.preferences import Preferences, preferences_for
from bot.core.quotas import precheck
from bot.core.resolver import RequestResolver, Upload, normalise_upload
from bot.core.submission import Requester, Submission
from bot.errors import UserError
from bot.presentation.targets import DiscordClient, InteractionTarget, ResumedTarget, Target
from bot.services.economy import EconomyService, economy_wanted
from bot.services.generation import Generator

log = logging.getLogger(__name__)


class PromptProblem(UserError):
    """A spec that cannot be sent, worded as the one message users see for it."""

    def __init__(self, error: SpecError) -> None:
        super().__init__(f"Your prompt has a problem:\n{error}")


def requester_of(interaction: discord.Interaction, *, fallback_channel_id: int = 0) -> Requester:
    channel_id = interaction.channel_id or fallback_channel_id
    return Requester(interaction.user.id, interaction.guild_id, channel_id)


async def acknowledge(interaction: discord.Interaction, *, private: bool) -> None:
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True, ephemeral=private)


def split_names(text: str | None) -> list[str]:
    if not text:
        return []
    return [n.strip().lower() for n in text.split(",") if n.strip()]


def check_declared_sizes(attachments: Sequence[discord.Attachment], settings: Settings) -> None:
    """What can be refused from the declared sizes alone, before acknowledging."""
    for attachment in attachments:
        try:
            imaging.check_declared_size(
                attachment.size, max_bytes=settings.max_attachment_bytes, filename=attachment.filename
            )
        except imaging.ImageError as exc:
            raise UserError(str(exc)) from None


async def download_attachment(attachment: discord.Attachment, settings: Settings) -> Upload:
    """Check the declared size first, then download at once (URLs expire) and normalise."""
    check_declared_sizes([attachment], settings)
    try:
        data = await attachment.read()
    except discord.HTTPException:
        raise UserError(f"I could not download {attachment.filename}; upload it again.") from None
    return await normalise_upload(data, attachment.filename, settings)


Fetch = Callable[[str], Awaitable[bytes]]
GIVE_UP_AFTER_ATTEMPTS = 3


class RequestService:
    """Commands and modals into queued generations. Each request is recorded (intake) together
    with its acknowledgement, so one whose process dies before it is queued is taken over by a
    live process and answered: never lost."""

    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        generator: Generator,
        client: DiscordClient,
        fetch: Fetch,
    ) -> None:
        self.store = store
        self.settings = settings
        self.generator = generator
        self.client = client
        self.fetch = fetch  # downloads an attachment URL (a restarted process re-downloads)
        self._sweeper: asyncio.Task[None] | None = None
        # Economy requests (Gemini's Batch API) are admitted there instead (bot.client wires it).
        self.economy: EconomyService | None = None

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._take_over_stale(), name="intake-takeover")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.wait({self._sweeper})

    async def preferences(self, interaction: discord.Interaction) -> Preferences:
        return await preferences_for(
            self.store, self.settings, interaction.user.id, interaction.guild_id
        )

    async def precheck(
        self, requester: Requester, prepared: Sequence[PreparedSpec], *, economy: bool = False
    ) -> None:
        """Queue room and quota for these images, before acknowledging or charging."""
        await precheck(
            self.store,
            self.settings,
            user_id=requester.user_id,
            guild_id=requester.guild_id,
            prepared=prepared,
            economy=economy,
        )

    async def run(
        self,
        interaction: discord.Interaction,
        *,
        kind: str,
        raw: str | dict[str, Any],
        options: RequestOptions,
        attachments: Sequence[discord.Attachment] = (),
        private: bool | None = None,
        economy: bool | None = False,
    ) -> int:
        """Prepare, acknowledge (recording the request at the same time), check, download,
        resolve and queue one request. Returns its generation id. `economy`: through
        Gemini's Batch API (None: the user's /settings default, for the commands that offer
        it)."""
        prefs = await self.preferences(interaction)
        is_private = prefs.private if private is None else private
        use_economy = self.economy is not None and economy_wanted(
            kind, economy, default=prefs.economy
        )
        try:
            prepared = prepare(raw, options, prefs.defaults)
        except SpecError as exc:
            raise PromptProblem(exc) from None
        check_declared_sizes(attachments, self.settings)
        requester = requester_of(interaction)
        target = InteractionTarget(interaction, private=is_private)
        payload = {
            "kind": kind,
            "spec": prepared.spec.to_dict(),
            "defaults": {"model": prepared.model, "size": prepared.size, "aspect": prepared.aspect},
            "private": is_private,
            "requester": [requester.user_id, requester.guild_id, requester.channel_id],
            "uploads": [
                {"url": a.url, "filename": a.filename, "size": a.size} for a in attachments
            ],
            "target": target.resume_info(),
            "economy": use_economy,
        }
        intake_id, _ = await asyncio.gather(
            self.store.receive(
                user_id=requester.user_id,
                payload=payload,
                worker_id=self.generator.worker_id,
                lease_seconds=self.settings.job_lease_seconds,
            ),
            acknowledge(interaction, private=is_private),
        )

        async def uploads() -> list[Upload]:
            return list(
                await asyncio.gather(*(download_attachment(a, self.settings) for a in attachments))
            )

        return await self._queue(
            intake_id, requester, kind=kind, prepared=prepared, uploads=uploads, target=target,
            economy=use_economy,
        )  # fmt: skip

    async def _queue(
        self,
        intake_id: int,
        requester: Requester,
        *,
        kind: str,
        prepared: PreparedSpec,
        uploads: Callable[[], Awaitable[list[Upload]]],
        target: Target,
        economy: bool = False,
    ) -> int:
        """Download, resolve and admit a received request; its intake record goes with the
        admission (or with a refusal the user is told of)."""
        async with self._holding(intake_id):
            try:
                # Queue room and quotas before downloading anything (admission decides again);
                # after the acknowledgement, so a burst is acknowledged without waiting on them.
                await self.precheck(requester, [prepared], economy=economy)
                resolver = RequestResolver(
                    self.store, user_id=requester.user_id, uploads=await uploads()
                )
                try:
                    inputs = await resolver.resolve_all(prepared.spec, model=prepared.model)
                except SpecError as exc:
                    raise PromptProblem(exc) from None
                sub = Submission.build(
                    requester, kind=kind, prepared=prepared, inputs=inputs, private=target.private
                )
                if economy and self.economy is not None:
                    return await self.economy.submit(sub, target, intake_id=intake_id)
                return await self.generator.submit(sub, target, intake_id=intake_id)
            except Exception:
                # Refused (the user is told) or broken (the user is told, with a reference).
                with contextlib.suppress(Exception):
                    await self.store.drop_intake(intake_id)
                raise

    @contextlib.asynccontextmanager
    async def _holding(self, intake_id: int) -> AsyncIterator[None]:
        """Keep the intake's lease while working on it (downloads can take a while)."""
        lease = self.settings.job_lease_seconds

        async def renew() -> None:
            while True:
                await asyncio.sleep(lease / 3)
                with contextlib.suppress(Exception):
                    await self.store.renew_intake(
                        intake_id, self.generator.worker_id, lease_seconds=lease
                    )

        renewer = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewer.cancel()

    async def submit(self, interaction: discord.Interaction, sub: Submission) -> int:
        """Queue a submission whose progress and result show in the interaction's message."""
        return await self.generator.submit(
            sub, InteractionTarget(interaction, private=sub.private)
        )

    # ------------------------------------------------------------------ taking over

    async def _take_over_stale(self) -> None:
        """Requests whose process died between acknowledging and queueing them."""
        while True:
            await asyncio.sleep(self.settings.job_poll_seconds * 4)
            try:
                rows = await self.store.claim_stale_intake(
                    self.generator.worker_id, lease_seconds=self.settings.job_lease_seconds
                )
            except Exception:
                log.exception("looking for requests to take over failed")
                continue
            for row in rows:
                await self._take_over(row)

    async def _take_over(self, row: IntakeRow) -> None:
        info = row.payload
        target = ResumedTarget(self.client, dict(info.get("target") or {}), user_id=row.user_id)
        try:
            if row.attempts > GIVE_UP_AFTER_ATTEMPTS:
                raise UserError("I could not queue this request after several tries; ask again.")
            defaults = info["defaults"]
            prepared = prepare(
                info["spec"],
                None,
                Defaults(model=defaults["model"], size=defaults["size"], aspect=defaults["aspect"]),
            )
            user_id, guild_id, channel_id = info["requester"]
            requester = Requester(int(user_id), guild_id, int(channel_id))

            async def uploads() -> list[Upload]:
                return [await self._download(item) for item in info.get("uploads") or []]

            gen_id = await self._queue(
                row.id, requester, kind=str(info["kind"]), prepared=prepared, uploads=uploads,
                target=target, economy=bool(info.get("economy")),
            )  # fmt: skip
            log.info("took over request %s (generation %s) after its process died", row.id, gen_id)
        except (UserError, SpecError) as exc:
            await self._tell(row.id, target, str(PromptProblem(exc) if isinstance(exc, SpecError) else exc))
        except Exception:
            log.exception("could not take over request %s", row.id)
            await self._tell(row.id, target, "Something went wrong on our side; ask again.")

    async def _tell(self, intake_id: int, target: Target, text: str) -> None:
        with contextlib.suppress(Exception):
            await self.store.drop_intake(intake_id)
        with contextlib.suppress(discord.HTTPException):
            await target.finish(content=f"❌ {text}")

    async def _download(self, item: dict[str, Any]) -> Upload:
        filename = str(item.get("filename") or "image")
        try:
            imaging.check_declared_size(
                int(item.get("size") or 0),
                max_bytes=self.settings.max_attachment_bytes,
                filename=filename,
            )
        except imaging.ImageError as exc:
            raise UserError(str(exc)) from None
        try:
            data = await self.fetch(str(item["url"]))
        except discord.HTTPException:
            raise UserError(f"I could not download {filename} again; upload it again.") from None
        return await normalise_upload(data, filename, self.settings)
