"""Split under grid results: the tiles in one numbered message with a tile picker; each picked
tile comes with Refine (a chain from the tile), Upscale 2K/4K and Save as anchor. Thin: the
cutting and bookkeeping are bot.services.split; the handlers load everything from the
database, so the picker and the buttons work after a restart."""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.adapters import imaging
from bot.errors import UserError
from bot.presentation.buttons import Action, action_view
from bot.presentation.targets import InteractionTarget
from bot.presentation.tiles import TilePicker, picked_tile, tile_picker_view
from bot.services.split import MAX_FILES
from cogs._shared import bot_of
from cogs.anchors import Anchors, SaveAnchorModal

if TYPE_CHECKING:
    from bot.adapters.store import GenerationRow
    from bot.client import NanoBananaBot

OWNED_ACTIONS = (Action.SPLIT, Action.PICK_TILE, Action.SAVE_ANCHOR)
TILE_ACTIONS = (Action.REFINE, Action.UPSCALE_2K, Action.UPSCALE_4K, Action.SAVE_ANCHOR)


class SplitCog(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.nb: NanoBananaBot = bot  # type: ignore[assignment]
        self.nb.actions.register(Action.SPLIT, self.split)
        self.nb.actions.register(Action.PICK_TILE, self.pick)
        self.nb.actions.register(Action.SAVE_ANCHOR, self.save_anchor)
        bot.add_dynamic_items(TilePicker)

    async def cog_unload(self) -> None:
        self.nb.actions.unregister(*OWNED_ACTIONS)
        self.bot.remove_dynamic_items(TilePicker)

    async def _result(self, interaction: discord.Interaction, gid: int) -> GenerationRow:
        gen = await bot_of(interaction).store.get_generation(gid)
        if gen is None:
            raise UserError("I no longer have this result in my records.")
        if gen.private and gen.user_id != interaction.user.id:
            raise UserError("That result is private.")
        return gen

    async def split(self, interaction: discord.Interaction, gid: int) -> None:
        bot = bot_of(interaction)
        gen = await self._result(interaction, gid)
        await interaction.response.defer(thinking=True, ephemeral=gen.private)
        sheet = await bot.splitter.split(gen)
        limit = InteractionTarget(interaction, private=gen.private).upload_limit
        files = await bot.splitter.message_files(sheet, limit_bytes=limit)
        count = len(sheet.tiles)
        width, height = sheet.tile_size
        text = (
            f"✂️ #{gid} split into {count} tiles ({sheet.rows}×{sheet.cols}, "
            f"{width}×{height} px each), numbered left to right, top to bottom. "
            "Pick a tile below to refine it, upscale it or save it as an anchor."
        )
        if count + 1 > MAX_FILES:
            text += " (Too many tiles for one message: the menu posts each one.)"
        await interaction.followup.send(
            text,
            files=[discord.File(io.BytesIO(data), filename=name) for name, data in files],
            view=tile_picker_view(gid, count, sheet.cols),
            ephemeral=gen.private,
            wait=True,
        )

    async def pick(self, interaction: discord.Interaction, gid: int) -> None:
        bot = bot_of(interaction)
        number = picked_tile(interaction)
        if number is None:
            raise UserError("Pick a tile from the menu.")
        gen = await self._result(interaction, gid)
        await interaction.response.defer(thinking=True, ephemeral=gen.private)
        tile = await bot.splitter.tile(gen, number)
        assert tile.row.output_image is not None
        stored = await bot.store.get_image(tile.row.output_image)
        if stored is None:
            raise UserError("This tile is past the retention period and no longer stored.")
        limit = InteractionTarget(interaction, private=gen.private).upload_limit
        fitted = await asyncio.to_thread(
            imaging.fit_to_limit, stored[0], stored[1], limit_bytes=limit
        )
        message = await interaction.followup.send(
            f"Tile {number} of #{gid} ({tile.width}×{tile.height} px). "
            "Refine starts a chain from this tile; reply to it to edit it too.",
            file=discord.File(
                io.BytesIO(fitted.data), filename=f"tile-{gid}-{number}.{fitted.extension}"
            ),
            view=action_view(tile.row.id, TILE_ACTIONS),
            ephemeral=gen.private,
            wait=True,
        )
        await bot.store.set_generation_message(
            tile.row.id,
            message_id=message.id,
            channel_id=message.channel.id,
            public=not gen.private,
        )

    async def save_anchor(self, interaction: discord.Interaction, gid: int) -> None:
        gen = await self._result(interaction, gid)
        if gen.output_image is None:
            raise UserError("This has no image to save.")
        cog = self.bot.get_cog("Anchors")
        if not isinstance(cog, Anchors):
            raise UserError("Anchors are not available right now.")
        await interaction.response.send_modal(SaveAnchorModal(cog, None, gen.output_image))


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(SplitCog(bot))
