"""The one path every request from a command or a modal takes: prepare, acknowledge,
download, resolve, check, queue.

Cheap checks (the spec, declared attachment sizes) are refused before anything is shown;
slow work (downloading attachments) happens after the interaction is acknowledged, well
inside Discord's 3 s. Every refusal is raised as a UserError for the central error handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import discord

from bot.adapters import imaging
from bot.adapters.prompts import PreparedSpec, RequestOptions, SpecError, prepare
from bot.adapters.store import Store
from bot.config import Settings
from bot.core.preferences import Preferences, preferences_for
from bot.core.quotas import precheck
from bot.core.resolver import RequestResolver, Upload, normalise_upload
from bot.core.submission import InputImage, Requester, Submission
from bot.errors import UserError
from bot.presentation.targets import InteractionTarget
from bot.services.generation import Generator


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


class RequestService:
    def __init__(self, *, store: Store, settings: Settings, generator: Generator) -> None:
        self.store = store
        self.settings = settings
        self.generator = generator

    async def preferences(self, interaction: discord.Interaction) -> Preferences:
        return await preferences_for(
            self.store, self.settings, interaction.user.id, interaction.guild_id
        )

    async def precheck(self, requester: Requester, prepared: Sequence[PreparedSpec]) -> None:
        """Queue room and quota for these images, before acknowledging or charging."""
        self.generator.queue.check_room(requester.user_id, len(prepared))
        await precheck(
            self.store,
            self.settings,
            user_id=requester.user_id,
            guild_id=requester.guild_id,
            prepared=prepared,
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
    ) -> int:
        """Prepare, acknowledge, resolve, check quota and queue one request. Returns its id."""
        prefs = await self.preferences(interaction)
        is_private = prefs.private if private is None else private
        try:
            prepared = prepare(raw, options, prefs.defaults)
        except SpecError as exc:
            raise PromptProblem(exc) from None
        check_declared_sizes(attachments, self.settings)
        await acknowledge(interaction, private=is_private)
        uploads = list(
            await asyncio.gather(*(download_attachment(a, self.settings) for a in attachments))
        )
        return await self.queue(
            interaction, kind=kind, prepared=prepared, uploads=uploads, private=is_private
        )

    async def queue(
        self,
        interaction: discord.Interaction,
        *,
        kind: str,
        prepared: PreparedSpec,
        uploads: list[Upload],
        private: bool,
    ) -> int:
        requester = requester_of(interaction)
        resolver = RequestResolver(self.store, user_id=requester.user_id, uploads=uploads)
        try:
            inputs: list[InputImage] = await resolver.resolve_all(prepared.spec, model=prepared.model)
        except SpecError as exc:
            raise PromptProblem(exc) from None
        await self.precheck(requester, [prepared])
        sub = Submission.build(
            requester, kind=kind, prepared=prepared, inputs=inputs, private=private
        )
        return await self.submit(interaction, sub)

    async def submit(self, interaction: discord.Interaction, sub: Submission) -> int:
        """Queue a submission whose progress and result show in the interaction's message."""
        return await self.generator.submit(
            sub, InteractionTarget(interaction, private=sub.private)
        )
