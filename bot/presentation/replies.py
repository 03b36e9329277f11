"""The one error path: every error a user sees is worded here, privately, and unexpected ones
are logged with a reference id the user can quote."""

from __future__ import annotations

import contextlib
import logging
import uuid

import discord
from discord import app_commands

from bot.adapters.prompts import SpecError
from bot.errors import UserError
from bot.presentation.text import truncate

log = logging.getLogger(__name__)

PRIVATE_TEXT_LIMIT = 1900


async def send_private(interaction: discord.Interaction, text: str) -> None:
    """Reply privately whatever state the interaction is in. A public "thinking…"
    placeholder is removed first, so an error never shows up in the channel."""
    text = truncate(text, PRIVATE_TEXT_LIMIT)
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


def describe_error(
    error: BaseException, *, where: str, user_id: int | None, guild_id: int | None
) -> str:
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
        user_id,
        guild_id,
        ref,
        exc_info=original,
    )
    return f"Something went wrong on our side (reference `{ref}`). Please try again."


async def report_error(
    interaction: discord.Interaction, error: BaseException, *, where: str
) -> None:
    """Commands, buttons and modals: the error as a private reply."""
    text = describe_error(
        error, where=where, user_id=interaction.user.id, guild_id=interaction.guild_id
    )
    await send_private(interaction, text)


async def reply_error(message: discord.Message, error: BaseException, *, where: str) -> None:
    """Plain messages (chain steps): the error as a quiet reply to the message."""
    text = describe_error(
        error,
        where=where,
        user_id=message.author.id,
        guild_id=message.guild.id if message.guild else None,
    )
    with contextlib.suppress(discord.HTTPException):
        await message.reply(truncate(text, PRIVATE_TEXT_LIMIT), mention_author=False)
