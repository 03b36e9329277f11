"""The buttons of economy requests (Gemini's Batch API): Cancel while the batch has not started,
and Retry in economy under a request that failed inside a batch."""

from __future__ import annotations

import discord
from discord.ext import commands

from bot.core.replay import replay_submission
from bot.errors import UserError
from bot.presentation.buttons import Action
from bot.presentation.targets import InteractionTarget
from bot.services.requests import requester_of
from cogs._shared import bot_of
from cogs.results import load_generation, require_owner

ACTIONS = (Action.ECONOMY_CANCEL, Action.ECONOMY_RETRY)


class Economy(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        bot.actions.register(Action.ECONOMY_CANCEL, self.cancel)  # type: ignore[attr-defined]
        bot.actions.register(Action.ECONOMY_RETRY, self.retry)  # type: ignore[attr-defined]

    async def cog_unload(self) -> None:
        self.bot.actions.unregister(*ACTIONS)  # type: ignore[attr-defined]

    async def cancel(self, interaction: discord.Interaction, gid: int) -> None:
        """Cancel an economy request (or its whole /batch) until Gemini starts the batch."""
        bot = bot_of(interaction)
        gen = await load_generation(interaction, gid)
        require_owner(interaction, gen, "cancel")
        cancelled, too_late = await bot.economy.cancel(gid)
        if not cancelled:
            text = "Too late to cancel: Gemini has started this batch (or it has ended)."
        elif cancelled == 1 and not too_late:
            text = "Cancelled. Nothing was charged."
        else:
            text = f"Cancelled {cancelled} images; nothing was charged for them."
            if too_late:
                text += f" {too_late} already being made will still arrive."
        await interaction.response.send_message(text, ephemeral=True)

    async def retry(self, interaction: discord.Interaction, gid: int) -> None:
        """The same request through the Batch API again, in this message."""
        bot = bot_of(interaction)
        gen = await load_generation(interaction, gid)
        require_owner(interaction, gen, "retry")
        if gen.chain_id is not None:
            raise UserError("Chain steps run interactively; use Retry.")
        await interaction.response.defer()  # the failure message turns back into the state
        requester = requester_of(interaction, fallback_channel_id=gen.channel_id)
        sub = await replay_submission(
            bot.store, gen, requester, kind=gen.kind, private=gen.private, history_window=0
        )
        await bot.requests.precheck(requester, [sub.prepared], economy=True)
        await bot.economy.submit(sub, InteractionTarget(interaction, private=gen.private))


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Economy(bot))
