"""The one path every slash-command request takes: acknowledge, prepare, resolve, check, queue.

Cheap checks (the spec) answer privately before anything is shown; slow work (downloading
attachments) happens after the interaction is acknowledged, well inside Discord's 3 s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord

from bot.adapters import imaging
from bot.adapters.prompts import (
    PreparedSpec,
    RequestOptions,
    SpecError,
    Template,
    parse_vars,
    prepare,
)
from bot.config import Settings, estimate_cost
from bot.errors import UserError
from bot.preferences import Preferences, preferences_for
from bot.quotas import check_quota
from bot.resolver import RequestResolver, Upload, download_attachment
from bot.submission import InputImage, Submission
from bot.targets import InteractionTarget
from bot.ui import send_private

if TYPE_CHECKING:
    from bot.client import NanoBananaBot

log = logging.getLogger(__name__)


def bot_of(interaction: discord.Interaction) -> NanoBananaBot:
    return interaction.client  # type: ignore[return-value]


async def acknowledge(interaction: discord.Interaction, *, private: bool) -> None:
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True, ephemeral=private)


async def fail_privately(interaction: discord.Interaction, text: str) -> None:
    """Replace a deferred (possibly public) response with a private error message."""
    await send_private(interaction, text)


def precheck_attachments(attachments: Sequence[discord.Attachment], settings: Settings) -> None:
    """What can be refused from the declared sizes alone, before acknowledging."""
    for attachment in attachments:
        try:
            imaging.check_declared_size(
                attachment.size, max_bytes=settings.max_attachment_bytes, filename=attachment.filename
            )
        except imaging.ImageError as exc:
            raise UserError(str(exc)) from None


async def find_template(bot: NanoBananaBot, guild_id: int | None, name: str) -> Template:
    from bot.adapters.prompts import parse_template

    key = name.strip()
    if guild_id is not None:
        row = await bot.store.get_guild_template(guild_id, key)
        if row is not None:
            return parse_template(row.name, row.body, source="guild")
    template = bot.builtin_templates.get(key)
    if template is None:
        raise UserError(f"There is no template called '{name}'. See /template list.")
    return template


def spec_from_template(
    template: Template, vars_text: str | None, extra: str | None
) -> dict[str, Any]:
    """Fill a template; free text that is not key=value becomes an extra instruction."""
    values: dict[str, str] = {}
    instructions = None
    if extra:
        if "=" in extra:
            values.update(parse_vars(extra))
        else:
            instructions = extra
    values.update(parse_vars(vars_text))
    spec = template.fill(values)
    if instructions:
        spec["instructions"] = instructions
    return spec


def split_names(text: str | None) -> list[str]:
    if not text:
        return []
    return [n.strip().lower() for n in text.split(",") if n.strip()]


async def run_request(
    interaction: discord.Interaction,
    *,
    kind: str,
    raw: str | dict[str, Any],
    options: RequestOptions,
    attachments: Sequence[discord.Attachment] = (),
    private: bool | None = None,
) -> int | None:
    """Prepare, acknowledge, resolve, check quota and queue one request. Returns its id."""
    bot = bot_of(interaction)
    prefs = await preferences_for(
        bot.store, bot.settings, interaction.user.id, interaction.guild_id
    )
    is_private = prefs.private if private is None else private
    try:
        prepared = prepare(raw, options, prefs.defaults)
        precheck_attachments(attachments, bot.settings)
    except SpecError as exc:
        await fail_privately(interaction, f"Your prompt has a problem:\n{exc}")
        return None
    except UserError as exc:
        await fail_privately(interaction, str(exc))
        return None
    await acknowledge(interaction, private=is_private)
    try:
        uploads = list(
            await asyncio.gather(*(download_attachment(a, bot.settings) for a in attachments))
        )
        return await queue_prepared(
            interaction,
            kind=kind,
            prepared=prepared,
            uploads=uploads,
            prefs=prefs,
            private=is_private,
        )
    except SpecError as exc:
        await fail_privately(interaction, f"Your prompt has a problem:\n{exc}")
    except UserError as exc:
        await fail_privately(interaction, str(exc))
    return None


async def queue_prepared(
    interaction: discord.Interaction,
    *,
    kind: str,
    prepared: PreparedSpec,
    uploads: list[Upload],
    prefs: Preferences,
    private: bool,
    chain_image: tuple[str, int | None] | None = None,
) -> int:
    bot = bot_of(interaction)
    resolver = RequestResolver(
        bot.store, user_id=interaction.user.id, uploads=uploads, chain_image=chain_image
    )
    inputs: list[InputImage] = await resolver.resolve_all(prepared.spec)
    await check_request_quota(bot, interaction.user.id, interaction.guild_id, prepared, images=1)
    sub = Submission(
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id or 0,
        kind=kind,
        prepared=prepared,
        inputs=inputs,
        private=private,
    )
    return await bot.generator.submit(sub, InteractionTarget(interaction, private=private))


async def check_request_quota(
    bot: NanoBananaBot, user_id: int, guild_id: int | None, prepared: PreparedSpec, *, images: int
) -> None:
    cost = estimate_cost(prepared.model, prepared.size) * images
    await check_quota(
        bot.store, bot.settings, user_id=user_id, guild_id=guild_id, images=images, cost=cost
    )
