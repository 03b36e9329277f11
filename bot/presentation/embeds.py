"""The embed under a result, and the progress line of a job's message."""

from __future__ import annotations

import discord

from bot.adapters.store import GenerationRow
from bot.config import model_display_name
from bot.presentation.text import format_cost, format_duration, ordinal, truncate

# Discord's embed limits: a title of 256 characters, a field value of 1024.
EMBED_TITLE_LIMIT = 256
EMBED_FIELD_LIMIT = 1024


def result_embed(
    gen: GenerationRow,
    *,
    image_filename: str | None,
    fit_note: str | None = None,
    parent_step: int | None = None,
) -> discord.Embed:
    """What was asked, model, size, time, cost, chain step."""
    embed = discord.Embed(
        title=truncate(gen.summary or "Image", EMBED_TITLE_LIMIT),
        colour=discord.Colour.gold(),
    )
    if gen.model_text:
        embed.description = truncate(gen.model_text.strip(), 1500)
    embed.add_field(name="Model", value=model_display_name(gen.model))
    embed.add_field(name="Size", value=f"{gen.size} · {gen.aspect}")
    embed.add_field(name="Time", value=format_duration(gen.seconds or 0))
    embed.add_field(name="Est. cost", value=format_cost(gen.cost or 0.0))
    if gen.step is not None and gen.chain_id is not None:
        parent = f" (from step {parent_step})" if parent_step is not None else ""
        embed.add_field(name="Chain step", value=f"{gen.step}{parent}")
    notes = list(gen.warnings or [])
    if fit_note:
        notes.append(fit_note)
    if notes:
        embed.add_field(
            name="Notes",
            value=truncate("\n".join(f"• {n}" for n in notes), EMBED_FIELD_LIMIT),
            inline=False,
        )
    if image_filename:
        embed.set_image(url=f"attachment://{image_filename}")
    embed.set_footer(text=f"Generation #{gen.id}")
    return embed


def progress_text(*, position: int | None, model: str, elapsed: float | None) -> str:
    if elapsed is not None:
        return f"⏳ Generating with {model_display_name(model)}… {int(elapsed)} s"
    if position is None or position <= 1:
        return "⏳ Queued — next in line"
    return f"⏳ Queued — {ordinal(position)} in line"
