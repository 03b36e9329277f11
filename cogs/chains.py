"""Refining results: replies, chain threads, the Refine and Undo buttons, and the
Edit image context menu. Thin: the chain logic is bot.services.chains.

In the bot's DM the conversation is the chain: a reply to a result refines that result, and
any other message refines the latest result there. Where the bot is not a member (group DMs,
other servers, through the app installed to the user's account) no message reaches it: the
Refine button and the Edit image menu carry the chain, answered in their own interaction."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters.prompts import InputRef, RequestOptions
from bot.errors import UserError
from bot.presentation.buttons import Action
from bot.presentation.places import place_of
from bot.presentation.replies import reply_error, report_error
from bot.presentation.targets import ChannelTarget, InteractionTarget, Target
from bot.presentation.text import jump_url
from bot.services.chains import Chains, StepRequest, Ticket
from bot.services.requests import download_attachment
from cogs._shared import bot_of

if TYPE_CHECKING:
    from bot.adapters.store import GenerationRow
    from bot.client import NanoBananaBot

log = logging.getLogger(__name__)

ChangesCallback = Callable[[discord.Interaction, str], Awaitable[None]]

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/heic", "image/heif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".heic", ".heif")
ATTACHMENTS_ONLY = "Use the attached image(s) as described."
MODAL_TIMEOUT = 15 * 60  # a modal nobody submits is forgotten with its interaction token
REPLY_LIMIT = 1900
DM_NOTHING_YET = (
    "There's nothing here to refine yet: make an image with /imagine (or /edit), then reply "
    "to it, or just keep writing here, to change it step by step."
)


def image_attachments(message: discord.Message) -> list[discord.Attachment]:
    return [
        a
        for a in message.attachments
        if (a.content_type or "").split(";")[0] in IMAGE_TYPES
        or a.filename.lower().endswith(IMAGE_SUFFIXES)
    ]


def _can_answer_in(message: discord.Message) -> bool:
    """Whether the bot may post where a message was written (its DMs: yes)."""
    channel, guild = message.channel, message.guild
    me = guild.me if guild is not None else None
    if me is None or not hasattr(channel, "permissions_for"):
        return True
    perms = channel.permissions_for(me)
    if isinstance(channel, discord.Thread):
        return perms.send_messages_in_threads
    return perms.send_messages


def refinable(gen: GenerationRow | None, user_id: int) -> GenerationRow:
    """The generation if `user_id` may refine it; else a UserError saying why not."""
    if gen is None or gen.status != "done" or gen.output_image is None:
        raise UserError("That message has no finished image to refine.")
    if gen.private and gen.user_id != user_id:
        raise UserError("That result is private.")
    return gen


class ChangesModal(discord.ui.Modal):
    changes: discord.ui.TextInput[ChangesModal] = discord.ui.TextInput(
        label="What should change?",
        style=discord.TextStyle.paragraph,
        max_length=2000,
        custom_id="changes",
        placeholder="e.g. make the sky stormy and add a red umbrella",
    )

    def __init__(self, title: str, on_submit_cb: ChangesCallback) -> None:
        super().__init__(title=title, timeout=MODAL_TIMEOUT)
        self._cb = on_submit_cb

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self._cb(interaction, self.changes.value)

    async def on_error(  # type: ignore[override]
        self, interaction: discord.Interaction, error: Exception, /
    ) -> None:
        # discord.py's default only logs: the deferred "thinking…" would never be answered.
        await report_error(interaction, error, where=f"the {self.title} modal")


class ChainsCog(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.nb: NanoBananaBot = bot  # type: ignore[assignment]
        self.chains: Chains = self.nb.chains
        self.nb.actions.register(Action.REFINE, self.refine_button)
        self.nb.actions.register(Action.UNDO, self.undo_button)
        self.edit_menu = app_commands.ContextMenu(name="Edit image", callback=self.edit_image_menu)
        bot.tree.add_command(self.edit_menu)

    async def cog_unload(self) -> None:
        self.nb.actions.unregister(Action.REFINE, Action.UNDO)
        self.bot.tree.remove_command(self.edit_menu.name, type=self.edit_menu.type)

    # ------------------------------------------------------------- messages

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        in_dm = isinstance(message.channel, discord.DMChannel)
        if message.author.bot or (message.guild is None and not in_dm):
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return  # system messages (thread created, pins...)
        ref = message.reference
        reply_to = (
            ref.message_id
            if ref is not None and ref.type is discord.MessageReferenceType.reply
            else None
        )
        if reply_to is None and not in_dm and not isinstance(message.channel, discord.Thread):
            return
        if not _can_answer_in(message):
            return  # the bot may read here but not write: a step could never be shown
        text = (message.content or "").strip()
        if text.startswith("//"):
            return  # a note between people, not an edit
        images = image_attachments(message)
        if not text and not images:
            return
        try:
            await self._step_from_message(message, reply_to, text, images)
        except Exception as exc:  # never leave a message unanswered
            await reply_error(message, exc, where=f"chain step from message {message.id}")

    async def _step_from_message(
        self,
        message: discord.Message,
        reply_to: int | None,
        text: str,
        images: list[discord.Attachment],
    ) -> None:
        bot = self.nb
        store = bot.store
        turn: Ticket | None = None
        in_dm = isinstance(message.channel, discord.DMChannel)
        try:
            # Taken before anything slow: two quick messages keep their order.
            async with self.chains.arrival(message.channel.id):
                gen = await store.generation_by_message(reply_to) if reply_to else None
                if gen is not None:
                    # Private results only ever show where just their owner is (their
                    # ephemerals, their DM): refinable() lets nobody else through.
                    gen = refinable(gen, message.author.id)
                    chain = await self.chains.chain_for(gen)
                    private = gen.private
                elif in_dm:
                    # The DM's conversation is the chain: the latest result posted here.
                    latest = await store.latest_result_in_channel(message.channel.id)
                    if latest is None:
                        raise UserError(DM_NOTHING_YET)
                    latest = refinable(latest, message.author.id)
                    chain = await self.chains.chain_for(latest)
                    private = latest.private
                else:
                    found = await store.chain_by_thread(message.channel.id)
                    if found is None:
                        return  # a reply to something else, in an ordinary thread
                    chain = found
                    root = await store.get_generation(chain.root_generation_id)
                    private = root is not None and root.private
                place = await self.chains.place(
                    chain,
                    user_id=message.author.id,
                    result_channel_id=message.channel.id if gen else None,
                    result_message_id=reply_to if gen else None,
                    threads_here=not in_dm,
                )
                turn = self.chains.turn(chain.id)
            if place.notice:
                with contextlib.suppress(discord.HTTPException):
                    await message.reply(place.notice, mention_author=False)
            channel_id = place.thread_id or message.channel.id
            uploads = [await download_attachment(a, bot.settings) for a in images]
            target = ChannelTarget(
                bot,
                channel_id=channel_id,
                user_id=message.author.id,
                reply_to=message.id if channel_id == message.channel.id else None,
            )
            request = StepRequest(
                user_id=message.author.id,
                guild_id=message.guild.id if message.guild else None,
                changes=text or ATTACHMENTS_ONLY,
                uploads=uploads,
                parent_id=gen.id if gen else None,
            )
            async with turn:
                await self.chains.run_step(chain.id, request, target, private=private)
        finally:
            if turn is not None:
                turn.release()

    # ------------------------------------------------------------- buttons and menu

    async def refine_button(self, interaction: discord.Interaction, gid: int) -> None:
        bot = bot_of(interaction)
        refinable(await bot.store.get_generation(gid), interaction.user.id)
        message = interaction.message
        where = (message.channel.id, message.id) if message is not None else None

        async def submitted(modal_interaction: discord.Interaction, changes: str) -> None:
            await self._refine(modal_interaction, gid, changes, where)

        await interaction.response.send_modal(ChangesModal("Refine this image", submitted))

    async def edit_image_menu(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        bot = bot_of(interaction)
        gen = await bot.store.generation_by_message(message.id)
        if gen is not None and gen.output_image is not None:
            gid = gen.id
            where = (message.channel.id, message.id)
            refinable(gen, interaction.user.id)

            async def refine(modal_interaction: discord.Interaction, changes: str) -> None:
                await self._refine(modal_interaction, gid, changes, where)

            await interaction.response.send_modal(ChangesModal("Edit image", refine))
            return
        images = image_attachments(message)
        if not images:
            raise UserError("That message has no image to edit.")

        async def edit(modal_interaction: discord.Interaction, changes: str) -> None:
            await bot.requests.run(
                modal_interaction,
                kind="edit",
                raw={"task": "edit_image", "changes": changes},
                options=RequestOptions(
                    inputs=[InputRef(type="image", data="attachment:1", role="edit_target")]
                ),
                attachments=images[:1],
            )

        await interaction.response.send_modal(ChangesModal("Edit image", edit))

    async def _refine(
        self,
        interaction: discord.Interaction,
        gid: int,
        changes: str,
        where: tuple[int, int] | None,
    ) -> None:
        """A step from a modal (Refine button, Edit image menu) on result `gid`, shown in
        message `where` (channel id, message id)."""
        bot = bot_of(interaction)
        turn: Ticket | None = None
        try:
            gen = refinable(await bot.store.get_generation(gid), interaction.user.id)
            where_here = place_of(interaction)
            await interaction.response.defer(thinking=True, ephemeral=gen.private)
            here = interaction.channel_id or gen.channel_id
            async with self.chains.arrival(here):
                chain = await self.chains.chain_for(gen)
                if gen.private:
                    thread_id, notice = None, None  # a private chain stays in its ephemerals
                else:
                    place = await self.chains.place(
                        chain,
                        user_id=interaction.user.id,
                        result_channel_id=where[0] if where else None,
                        result_message_id=where[1] if where else None,
                        # no threads in DMs; none where only interactions reach
                        threads_here=where_here.can_thread,
                    )
                    thread_id, notice = place.thread_id, place.notice
                turn = self.chains.turn(chain.id)
            elsewhere = thread_id is not None and thread_id != here
            target: Target
            if elsewhere:
                assert thread_id is not None
                await interaction.edit_original_response(content=f"✏️ Refining in <#{thread_id}>…")
                target = ChannelTarget(bot, channel_id=thread_id, user_id=interaction.user.id)
            else:
                if notice:
                    await self._say(here, notice)
                target = InteractionTarget(interaction, private=gen.private)
            request = StepRequest(
                user_id=interaction.user.id,
                guild_id=interaction.guild_id,
                changes=changes,
                uploads=[],
                parent_id=gid,
            )
            async with turn:
                new_id = await self.chains.run_step(chain.id, request, target, private=gen.private)
            if elsewhere:
                await self._link_result(interaction, new_id, thread_id)
        finally:
            if turn is not None:
                turn.release()

    async def _link_result(
        self, interaction: discord.Interaction, gen_id: int, thread_id: int | None
    ) -> None:
        new = await self.nb.store.get_generation(gen_id)
        if new is None or new.status != "done" or new.message_id is None:
            text = f"The step in <#{thread_id}> did not finish; see the thread."
        else:
            text = f"✏️ Step {new.step} is ready in <#{thread_id}>: {jump_link(new)}"
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(content=text)

    async def _say(self, channel_id: int, text: str) -> None:
        channel = self.bot.get_channel(channel_id)
        if isinstance(channel, discord.abc.Messageable):
            with contextlib.suppress(discord.HTTPException):
                await channel.send(text)

    async def undo_button(self, interaction: discord.Interaction, gid: int) -> None:
        bot = bot_of(interaction)
        chain = await bot.store.chain_for_generation(gid)
        if chain is None:
            raise UserError("This image is not part of a chain.")
        # A private chain's steps are ephemeral: its Undo must not be announced publicly.
        clicked = await bot.store.get_generation(gid)
        await interaction.response.defer(
            thinking=True, ephemeral=clicked is not None and clicked.private
        )
        # In line with the chain's steps: an Undo after a message undoes that step.
        async with self.chains.turn(chain.id):
            fresh = await bot.store.get_chain(chain.id)
            head = await bot.store.get_generation(fresh.head_generation_id) if fresh else None
            if interaction.user.id not in (chain.owner_id, head.user_id if head else None):
                raise UserError("Only the chain's owner or the author of its latest step can undo.")
            new_head = await self.chains.undo(chain.id)
        link = f" ({jump_link(new_head)})" if new_head.message_id else ""
        await interaction.followup.send(
            f"↩️ Undone: the chain is back at step {new_head.step}{link}. "
            "The next message edits that image."
        )


def jump_link(gen: GenerationRow) -> str:
    assert gen.message_id is not None
    return jump_url(gen.guild_id, gen.channel_id, gen.message_id)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ChainsCog(bot))
