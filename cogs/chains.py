"""Refining results: replies, chain threads, the Refine and Undo buttons, and the
Edit image context menu."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.chains import Chains, StepRequest
from bot.errors import UserError
from bot.flows import fail_privately, run_request
from bot.prompts import InputRef, RequestOptions
from bot.resolver import Upload, download_attachment
from bot.targets import ChannelTarget, InteractionTarget
from cogs._shared import bot_of

if TYPE_CHECKING:
    from bot.client import NanoBananaBot
    from bot.store import ChainRow, GenerationRow

log = logging.getLogger(__name__)

ChangesCallback = Callable[[discord.Interaction, str], Awaitable[None]]

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/heic", "image/heif")


def image_attachments(message: discord.Message) -> list[discord.Attachment]:
    return [
        a
        for a in message.attachments
        if (a.content_type or "").split(";")[0] in IMAGE_TYPES
        or a.filename.lower().endswith((".png", ".jpg", ".jpeg", ".webp", ".gif", ".heic", ".heif"))
    ]


class ChangesModal(discord.ui.Modal):
    changes: discord.ui.TextInput[ChangesModal] = discord.ui.TextInput(
        label="What should change?",
        style=discord.TextStyle.paragraph,
        max_length=2000,
        custom_id="changes",
        placeholder="e.g. make the sky stormy and add a red umbrella",
    )

    def __init__(self, title: str, on_submit_cb: ChangesCallback) -> None:
        super().__init__(title=title, timeout=None)
        self._cb = on_submit_cb

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self._cb(interaction, self.changes.value)


class ChainsCog(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.nb: NanoBananaBot = bot  # type: ignore[assignment]
        self.chains: Chains = self.nb.chains
        actions = getattr(bot, "actions", {})
        actions.update({"refine": self.refine_button, "undo": self.undo_button})
        self.edit_menu = app_commands.ContextMenu(name="Edit image", callback=self.edit_image_menu)
        bot.tree.add_command(self.edit_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.edit_menu.name, type=self.edit_menu.type)

    # ------------------------------------------------------------- messages

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None:
            return
        text = (message.content or "").strip()
        if text.startswith("//"):
            return  # a note between people, not an edit
        store = self.nb.store
        gen = None
        parent_id = None
        if message.reference and message.reference.message_id:
            gen = await store.generation_by_message(message.reference.message_id)
            if gen is not None:
                parent_id = gen.id
        chain = None
        if gen is None and isinstance(message.channel, discord.Thread):
            chain = await store.chain_by_thread(message.channel.id)
            if chain is None:
                return
        elif gen is None:
            return
        if not text and not message.attachments:
            return
        try:
            await self._step_from_message(message, gen, chain, parent_id, text)
        except UserError as exc:
            await message.reply(str(exc)[:1900], mention_author=False)

    async def _step_from_message(
        self,
        message: discord.Message,
        gen: GenerationRow | None,
        chain: ChainRow | None,
        parent_id: int | None,
        text: str,
    ) -> None:
        bot = self.nb
        if gen is not None:
            if gen.status != "done" or gen.output_image is None:
                raise UserError("That message has no finished image to refine.")
            if gen.private:
                raise UserError("That result is private.")
            chain = await self.chains.chain_for(gen)
        assert chain is not None
        root = await bot.store.get_generation(chain.root_generation_id)
        assert root is not None
        channel_id, is_thread = await self.chains.ensure_thread(chain, root)
        refreshed = await bot.store.get_chain(chain.id)
        assert refreshed is not None
        chain = refreshed
        uploads = [await download_attachment(a, bot.settings) for a in image_attachments(message)]
        in_place = message.channel.id == channel_id
        target = ChannelTarget(
            bot,
            channel_id=channel_id,
            user_id=message.author.id,
            reply_to=message.id if in_place else None,
        )
        if not is_thread and self.chains.should_tell_no_threads(chain.id):
            await message.reply(
                "Threads aren't available here, so this chain continues as replies.",
                mention_author=False,
            )
        request = StepRequest(
            user_id=message.author.id,
            guild_id=message.guild.id if message.guild else None,
            changes=text or "Use the attached image(s) as described.",
            uploads=uploads,
            parent_id=parent_id,
        )
        await self.chains.run_step(chain, request, target)

    # ------------------------------------------------------------- buttons

    async def refine_button(self, interaction: discord.Interaction, gid: int) -> None:
        bot = bot_of(interaction)
        gen = await bot.store.get_generation(gid)
        if gen is None or gen.output_image is None:
            await fail_privately(interaction, "This result has no image to refine.")
            return
        if gen.private and gen.user_id != interaction.user.id:
            await fail_privately(interaction, "That result is private.")
            return

        async def submitted(modal_interaction: discord.Interaction, changes: str) -> None:
            await self._refine(modal_interaction, gid, changes, [])

        await interaction.response.send_modal(ChangesModal("Refine this image", submitted))

    async def _refine(
        self, interaction: discord.Interaction, gid: int, changes: str, uploads: list[Upload]
    ) -> None:
        bot = bot_of(interaction)
        try:
            gen = await bot.store.get_generation(gid)
            if gen is None or gen.output_image is None:
                raise UserError("This result has no image to refine.")
            await interaction.response.defer(thinking=True, ephemeral=gen.private)
            chain = await self.chains.chain_for(gen)
            root = await bot.store.get_generation(chain.root_generation_id)
            assert root is not None
            if gen.private:
                channel_id, is_thread = interaction.channel_id or gen.channel_id, False
            else:
                channel_id, is_thread = await self.chains.ensure_thread(chain, root)
            refreshed = await bot.store.get_chain(chain.id)
            assert refreshed is not None
            chain = refreshed
            request = StepRequest(
                user_id=interaction.user.id,
                guild_id=interaction.guild_id,
                changes=changes,
                uploads=uploads,
                parent_id=gid,
            )
            if gen.private or channel_id == interaction.channel_id:
                here = InteractionTarget(interaction, private=gen.private)
                await self.chains.run_step(chain, request, here, private=gen.private)
            else:
                await interaction.edit_original_response(
                    content=f"Refining in <#{channel_id}>…" if is_thread else "Refining…"
                )
                there = ChannelTarget(bot, channel_id=channel_id, user_id=interaction.user.id)
                await self.chains.run_step(chain, request, there)
        except UserError as exc:
            await fail_privately(interaction, str(exc))

    async def undo_button(self, interaction: discord.Interaction, gid: int) -> None:
        bot = bot_of(interaction)
        chain = await bot.store.chain_for_generation(gid)
        if chain is None:
            await fail_privately(interaction, "This image is not part of a chain.")
            return
        head = await bot.store.get_generation(chain.head_generation_id or gid)
        if interaction.user.id not in (chain.owner_id, head.user_id if head else None):
            await fail_privately(interaction, "Only the chain's owner can undo its steps.")
            return
        try:
            new_head = await self.chains.undo(chain)
        except UserError as exc:
            await fail_privately(interaction, str(exc))
            return
        link = f" ({jump_link(new_head)})" if new_head.message_id else ""
        await interaction.response.send_message(
            f"↩️ Undone: the chain is back at step {new_head.step}{link}. "
            "The next message edits that image."
        )

    # ------------------------------------------------------------- context menu

    async def edit_image_menu(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        bot = bot_of(interaction)
        gen = await bot.store.generation_by_message(message.id)
        if gen is not None and gen.output_image is not None:

            async def refine(modal_interaction: discord.Interaction, changes: str) -> None:
                await self._refine(modal_interaction, gen.id, changes, [])

            await interaction.response.send_modal(ChangesModal("Edit image", refine))
            return
        images = image_attachments(message)
        if not images:
            await fail_privately(interaction, "That message has no image to edit.")
            return

        async def edit(modal_interaction: discord.Interaction, changes: str) -> None:
            await run_request(
                modal_interaction,
                kind="edit",
                raw={"task": "edit_image", "changes": changes},
                options=RequestOptions(
                    inputs=[InputRef(type="image", data="attachment:1", role="edit_target")]
                ),
                attachments=images[:1],
            )

        await interaction.response.send_modal(ChangesModal("Edit image", edit))


def jump_link(gen: GenerationRow) -> str:
    guild = gen.guild_id or "@me"
    return f"https://discord.com/channels/{guild}/{gen.channel_id}/{gen.message_id}"


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ChainsCog(bot))
