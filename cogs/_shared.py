"""Option choices and autocomplete shared by the cogs (not an extension)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.config import BASE_ASPECTS, EXTRA_ASPECTS, MODEL_ALIASES, SIZES_ORDER, model_display_name

if TYPE_CHECKING:
    from bot.client import NanoBananaBot

ASPECT_CHOICES = [app_commands.Choice(name=a, value=a) for a in (*BASE_ASPECTS, *EXTRA_ASPECTS)]
SIZE_CHOICES = [app_commands.Choice(name=s, value=s) for s in SIZES_ORDER]
# The `economy` option (at most 100 characters): chains and edits never use it.
ECONOMY_HELP = "Gemini's Batch API: about half price, ready within 24 hours (default: /settings)"
MODEL_CHOICES = [
    app_commands.Choice(name=f"{alias} — {model_display_name(model_id)}", value=alias)
    for alias, model_id in MODEL_ALIASES.items()
]


def bot_of(interaction: discord.Interaction) -> NanoBananaBot:
    return interaction.client  # type: ignore[return-value]


async def anchor_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    """The caller's own anchors only; completes the last name of a comma-separated list."""
    bot = bot_of(interaction)
    head, _, last = current.rpartition(",")
    prefix = last.strip().lower()
    chosen = {n.strip() for n in head.split(",") if n.strip()}
    names = await bot.store.anchor_names(interaction.user.id, prefix, limit=25)
    out = []
    for name in names:
        if name in chosen:
            continue
        value = f"{head}, {name}" if head.strip() else name
        out.append(app_commands.Choice(name=value[:100], value=value[:100]))
    return out[:25]


async def anchor_name_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    bot = bot_of(interaction)
    names = await bot.store.anchor_names(interaction.user.id, current.strip().lower(), limit=25)
    return [app_commands.Choice(name=n, value=n) for n in names]


async def template_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    prefix = current.strip().lower()
    entries = await bot_of(interaction).templates.labels(interaction.guild_id)
    matches = [
        app_commands.Choice(name=label[:100], value=name)
        for name, label in sorted(entries.items())
        if prefix in name.lower()
    ]
    return matches[:25]
