"""What the buttons under a result do: Reroll, Upscale, Prompt, Delete, Cancel, Retry.

Each handler loads the generation from the database, so buttons work after a restart.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.adapters.prompts import Defaults, RequestOptions, ResolvedImage, prepare
from bot.core.replay import replay_submission
from bot.core.submission import InputImage, Submission, public_spec, uses_anchors
from bot.errors import UserError
from bot.presentation.buttons import Action
from bot.presentation.places import Reach, place_of
from bot.services.requests import acknowledge, requester_of
from cogs._shared import bot_of

if TYPE_CHECKING:
    from bot.adapters.store import GenerationRow

UPSCALE_CHANGES = (
    "Re-render this exact image at a higher resolution. Keep the composition, subjects, "
    "colours, lighting and every detail identical; only add resolution and fine detail."
)


async def load_generation(interaction: discord.Interaction, gid: int) -> GenerationRow:
    gen = await bot_of(interaction).store.get_generation(gid)
    if gen is None:
        raise UserError("I no longer have this result in my records.")
    return gen


def require_owner(interaction: discord.Interaction, gen: GenerationRow, what: str) -> None:
    if interaction.user.id != gen.user_id:
        raise UserError(f"Only the person who asked for this image can {what} it.")


def require_may_reuse(interaction: discord.Interaction, gen: GenerationRow) -> None:
    """Others may reroll or upscale a result, but never with someone's private anchors."""
    if interaction.user.id != gen.user_id and uses_anchors(gen.spec):
        raise UserError(
            "This image was made with someone's private anchors; only they can reuse it."
        )


OWNED_ACTIONS = (
    Action.REROLL,
    Action.RETRY,
    Action.UPSCALE_2K,
    Action.UPSCALE_4K,
    Action.PROMPT,
    Action.DELETE,
    Action.CANCEL,
)


class Results(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        handlers = {
            Action.REROLL: self.reroll,
            Action.RETRY: self.retry,
            Action.UPSCALE_2K: self.upscale_2k,
            Action.UPSCALE_4K: self.upscale_4k,
            Action.PROMPT: self.show_prompt,
            Action.DELETE: self.delete,
            Action.CANCEL: self.cancel,
        }
        for action in OWNED_ACTIONS:
            bot.actions.register(action, handlers[action])  # type: ignore[attr-defined]

    async def cog_unload(self) -> None:
        self.bot.actions.unregister(*OWNED_ACTIONS)  # type: ignore[attr-defined]

    async def rerun(self, interaction: discord.Interaction, gid: int, *, kind: str) -> None:
        bot = bot_of(interaction)
        gen = await load_generation(interaction, gid)
        require_may_reuse(interaction, gen)
        if kind == "retry":
            require_owner(interaction, gen, "retry")
        if gen.chain_id is not None and gen.parent_id is not None:
            # The chain's history goes with the request: it may hold someone's anchor.
            parent = await bot.store.get_generation(gen.parent_id)
            if parent is not None:
                await bot.chains.refuse_others_anchors(parent, interaction.user.id)
        private = gen.private
        if kind == "retry" and interaction.message is not None:
            # The failure message itself turns back into progress, then the result.
            await interaction.response.defer()
        else:
            await acknowledge(interaction, private=private)
        requester = requester_of(interaction, fallback_channel_id=gen.channel_id)
        sub = await replay_submission(
            bot.store,
            gen,
            requester,
            kind=gen.kind if kind == "retry" else kind,
            private=private,
            history_window=bot.settings.chain_history_steps,
        )
        await bot.requests.precheck(requester, [sub.prepared])
        await bot.requests.submit(interaction, sub)

    async def reroll(self, interaction: discord.Interaction, gid: int) -> None:
        await self.rerun(interaction, gid, kind="reroll")

    async def retry(self, interaction: discord.Interaction, gid: int) -> None:
        await self.rerun(interaction, gid, kind="retry")

    async def upscale_2k(self, interaction: discord.Interaction, gid: int) -> None:
        await self._upscale(interaction, gid, "2K")

    async def upscale_4k(self, interaction: discord.Interaction, gid: int) -> None:
        await self._upscale(interaction, gid, "4K")

    async def _upscale(self, interaction: discord.Interaction, gid: int, size: str) -> None:
        bot = bot_of(interaction)
        gen = await load_generation(interaction, gid)
        require_may_reuse(interaction, gen)
        if gen.output_image is None:
            raise UserError("This result has no image to upscale.")
        prepared = prepare(
            {
                "task": "edit_image",
                "changes": UPSCALE_CHANGES,
                "inputs": [{"type": "image", "data": "attachment:1", "role": "edit_target"}],
            },
            RequestOptions(size=size, aspect=gen.aspect, model=gen.model),
            Defaults(model=gen.model, size=size, aspect=gen.aspect),
        )
        await acknowledge(interaction, private=gen.private)
        stored = await bot.store.get_image(gen.output_image)  # megabytes: after the ack
        if stored is None:
            raise UserError("This image is past the retention period and no longer stored.")
        data, mime = stored
        requester = requester_of(interaction, fallback_channel_id=gen.channel_id)
        await bot.requests.precheck(requester, [prepared])
        sub = Submission.build(
            requester,
            kind="upscale",
            prepared=prepared,
            inputs=[
                InputImage(
                    ResolvedImage(
                        data=data, mime_type=mime, description=f"image to upscale (#{gid})"
                    ),
                    gen.output_image,
                )
            ],
            private=gen.private,
        )
        await bot.requests.submit(interaction, sub)

    async def show_prompt(self, interaction: discord.Interaction, gid: int) -> None:
        gen = await load_generation(interaction, gid)
        spec = public_spec(gen.spec, owner_view=interaction.user.id == gen.user_id)
        text = json.dumps(spec, indent=2, ensure_ascii=False)
        if len(text) <= 1900:
            await interaction.response.send_message(f"```json\n{text}\n```", ephemeral=True)
        else:
            await interaction.response.send_message(
                f"The JSON prompt of #{gid}:",
                file=discord.File(io.BytesIO(text.encode()), filename=f"prompt-{gid}.json"),
                ephemeral=True,
            )

    async def delete(self, interaction: discord.Interaction, gid: int) -> None:
        gen = await load_generation(interaction, gid)
        require_owner(interaction, gen, "delete")
        message = interaction.message
        if message is not None and (
            message.flags.ephemeral or place_of(interaction).reach is Reach.INTERACTION
        ):
            # An ephemeral message can only be removed through the interaction, and so can
            # any message where the bot is not a member (a group DM, another server).
            await interaction.response.defer()
            try:
                await interaction.delete_original_response()
            except discord.HTTPException:
                await interaction.followup.send("I could not delete that message.", ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        if message is not None:
            try:
                await message.delete()
            except discord.HTTPException:
                await interaction.followup.send("I could not delete that message.", ephemeral=True)
                return
        await interaction.followup.send("Deleted.", ephemeral=True)

    async def cancel(self, interaction: discord.Interaction, gid: int) -> None:
        bot = bot_of(interaction)
        gen = await bot.store.get_generation(gid)
        if gen is not None and gen.user_id != interaction.user.id:
            raise UserError("Only the person who asked for this can cancel it.")
        if await bot.generator.cancel(gid):
            await interaction.response.send_message(
                "Cancelled. Nothing was charged.", ephemeral=True
            )
        else:
            await interaction.response.send_message(
                "Too late to cancel: it is already running or finished.", ephemeral=True
            )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Results(bot))
