"""Discord presentation shared by the cogs: result embeds, persistent buttons, text helpers.

Buttons are `DynamicItem`s whose custom id carries the action and the generation id
("nb:reroll:42"), so they keep working after a restart: all state comes from the database.
The cogs register what each action does in `bot.actions` (bot/ never imports cogs/).
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.adapters.prompts import SpecError
from bot.config import model_display_name
from bot.errors import UserError

if TYPE_CHECKING:
    from bot.adapters.store import GenerationRow

log = logging.getLogger(__name__)

ActionHandler = Callable[[discord.Interaction, int], Awaitable[None]]

# Discord limits (platform-facts.md)
CONTENT_LIMIT = 2000
EMBED_TITLE_LIMIT = 256
EMBED_DESCRIPTION_LIMIT = 4096
EMBED_FIELD_LIMIT = 1024

_BUTTONS: dict[str, tuple[str, discord.ButtonStyle, str | None]] = {
    # action: (label, style, emoji)
    "reroll": ("Reroll", discord.ButtonStyle.secondary, "🎲"),
    "refine": ("Refine", discord.ButtonStyle.primary, "✏️"),
    "up2k": ("Upscale 2K", discord.ButtonStyle.secondary, None),
    "up4k": ("Upscale 4K", discord.ButtonStyle.secondary, None),
    "prompt": ("Prompt", discord.ButtonStyle.secondary, "📄"),
    "undo": ("Undo", discord.ButtonStyle.secondary, "↩️"),
    "delete": ("Delete", discord.ButtonStyle.danger, "🗑️"),
    "cancel": ("Cancel", discord.ButtonStyle.danger, None),
    "retry": ("Retry", discord.ButtonStyle.primary, "🔁"),
}


def truncate(text: str, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class ActionButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"nb:(?P<action>[a-z0-9]+):(?P<gid>[0-9]+)",
):
    """One persistent button; the action's handler is looked up on the bot at click time."""

    def __init__(self, action: str, generation_id: int) -> None:
        label, style, emoji = _BUTTONS.get(
            action, (action.title(), discord.ButtonStyle.secondary, None)
        )
        super().__init__(
            discord.ui.Button(
                label=label, style=style, emoji=emoji, custom_id=f"nb:{action}:{generation_id}"
            )
        )
        self.action = action
        self.generation_id = generation_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ActionButton:
        return cls(match["action"], int(match["gid"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        handlers: dict[str, ActionHandler] = getattr(interaction.client, "actions", {})
        handler = handlers.get(self.action)
        if handler is None:
            await interaction.response.send_message(
                "That button no longer does anything.", ephemeral=True
            )
            return
        try:
            await handler(interaction, self.generation_id)
        except Exception as exc:  # a button must always answer, never "interaction failed"
            await report_error(interaction, exc, where=f"button {self.action} #{self.generation_id}")


def action_view(generation_id: int, actions: list[str]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(ActionButton(action, generation_id))
    return view


def result_actions(*, in_chain: bool) -> list[str]:
    actions = ["reroll", "refine", "up2k", "up4k", "prompt"]
    if in_chain:
        actions.append("undo")
    actions.append("delete")
    return actions


def format_cost(dollars: float) -> str:
    return f"${dollars:.3f}" if dollars < 1 else f"${dollars:.2f}"


def result_embed(
    gen: GenerationRow,
    *,
    image_filename: str | None,
    fit_note: str | None = None,
    parent_step: int | None = None,
) -> discord.Embed:
    """The embed under a result: what was asked, model, size, time, cost, chain step."""
    embed = discord.Embed(
        title=truncate(gen.summary or "Image", EMBED_TITLE_LIMIT),
        colour=discord.Colour.gold(),
    )
    if gen.model_text:
        embed.description = truncate(gen.model_text.strip(), 1500)
    embed.add_field(name="Model", value=model_display_name(gen.model))
    embed.add_field(name="Size", value=f"{gen.size} · {gen.aspect}")
    embed.add_field(name="Time", value=f"{gen.seconds or 0:.1f} s")
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


# --------------------------------------------------------------------------- errors


async def send_private(interaction: discord.Interaction, text: str) -> None:
    """Reply privately whatever state the interaction is in. A public "thinking…"
    placeholder is removed first, so an error never shows up in the channel."""
    text = truncate(text, 1900)
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True)
            return
        if interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()
        await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException as exc:
        log.warning("could not send a private message: %s", exc)


def describe_error(interaction: discord.Interaction, error: BaseException, *, where: str) -> str:
    """The one short line a user sees for an error; unexpected ones are logged with a
    reference id the user can quote."""
    original = getattr(error, "original", error)
    if isinstance(original, UserError | SpecError):
        return str(original)
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s."
    if isinstance(error, app_commands.MissingPermissions):
        return "You need these permissions: " + ", ".join(error.missing_permissions) + "."
    if isinstance(error, app_commands.BotMissingPermissions):
        return "I need these permissions here: " + ", ".join(error.missing_permissions) + "."
    if isinstance(error, app_commands.CheckFailure):
        return str(error) or "You can't use this command here."
    if isinstance(error, app_commands.TransformerError):
        return f"'{error.value}' is not valid for this option."
    ref = uuid.uuid4().hex[:8]
    log.error(
        "unexpected error in %s (user %s, guild %s, ref %s)",
        where,
        interaction.user.id,
        interaction.guild_id,
        ref,
        exc_info=original,
    )
    return f"Something went wrong on our side (reference `{ref}`). Please try again."


async def report_error(
    interaction: discord.Interaction, error: BaseException, *, where: str
) -> None:
    await send_private(interaction, describe_error(interaction, error, where=where))
