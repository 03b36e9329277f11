"""/anchor save | list | show | delete | rename and the Save as anchor context menu.

Anchors are personal data: every answer here is private, and every lookup passes the
caller's id, so nobody can see or use another person's anchor.
"""

from __future__ import annotations

import asyncio
import io
import re

import discord
from discord import app_commands
from discord.ext import commands

from bot import imaging
from bot.errors import UserError
from bot.flows import fail_privately
from bot.resolver import Upload, download_attachment, normalise_upload
from bot.store import AnchorExistsError
from cogs._shared import anchor_name_autocomplete, bot_of

NAME_RULE = re.compile(r"^[a-z0-9_-]{1,32}$")
KINDS = ("face", "character", "object", "product", "style")
KIND_CHOICES = [app_commands.Choice(name=k, value=k) for k in KINDS]


def check_name(name: str) -> str:
    clean = name.strip().lower()
    if not NAME_RULE.match(clean):
        raise UserError(
            f"'{name[:40]}' is not a valid anchor name: use 1–32 lowercase letters, digits, - or _."
        )
    return clean


def check_kind(kind: str | None) -> str:
    value = (kind or "face").strip().lower()
    if value not in KINDS:
        raise UserError(f"'{kind}' is not a kind of anchor; choose one of: {', '.join(KINDS)}.")
    return value


class SaveAnchorModal(discord.ui.Modal, title="Save as anchor"):
    name: discord.ui.TextInput[SaveAnchorModal] = discord.ui.TextInput(
        label="Name (lowercase, digits, - or _)", max_length=32, custom_id="name"
    )
    kind: discord.ui.TextInput[SaveAnchorModal] = discord.ui.TextInput(
        label="Kind: face, character, object, product or style",
        max_length=16,
        default="face",
        custom_id="kind",
    )

    def __init__(
        self, cog: Anchors, attachment: discord.Attachment | None, image_sha: str | None
    ) -> None:
        super().__init__(timeout=None)
        self.cog = cog
        self.attachment = attachment
        self.image_sha = image_sha

    async def on_submit(self, interaction: discord.Interaction) -> None:
        try:
            name = check_name(self.name.value)
            kind = check_kind(self.kind.value)
            await interaction.response.defer(ephemeral=True, thinking=True)
            bot = bot_of(interaction)
            if self.attachment is not None:
                upload = await download_attachment(self.attachment, bot.settings)
            else:
                stored = await bot.store.get_image(self.image_sha or "")
                if stored is None:
                    raise UserError("That image is no longer stored.")
                upload = await normalise_upload(stored[0], "result.png", bot.settings)
            await self.cog.save(interaction, name, kind, None, upload)
        except UserError as exc:
            await fail_privately(interaction, str(exc))


class Anchors(
    commands.GroupCog, group_name="anchor", group_description="Your saved identity anchors"
):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(name="Save as anchor", callback=self.save_menu)
        bot.tree.add_command(self.menu)
        super().__init__()

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    async def save(
        self,
        interaction: discord.Interaction,
        name: str,
        kind: str,
        note: str | None,
        upload: Upload,
    ) -> None:
        bot = bot_of(interaction)
        image = upload.image
        sha = await bot.store.put_image(image.data, image.mime_type)
        try:
            await bot.store.save_anchor(
                owner_id=interaction.user.id,
                name=name,
                kind=kind,
                note=note,
                image_sha=sha,
                width=image.width,
                height=image.height,
            )
        except AnchorExistsError:
            raise UserError(
                f"You already have an anchor called '{name}'. Pick another name, or "
                f"/anchor delete name:{name} first."
            ) from None
        await interaction.followup.send(
            f"Saved anchor **{name}** ({kind}, {image.width}×{image.height}). "
            f'Use it with `anchors:{name}` or `"data": "anchor:{name}"`.',
            ephemeral=True,
        )

    @app_commands.command(name="save", description="Save an image as a personal anchor")
    @app_commands.describe(
        name="A short name (lowercase)", image="The image", kind="What it is", note="A note"
    )
    @app_commands.choices(kind=KIND_CHOICES)
    async def save_cmd(
        self,
        interaction: discord.Interaction,
        name: str,
        image: discord.Attachment,
        kind: str | None = None,
        note: str | None = None,
    ) -> None:
        clean = check_name(name)
        kind_value = check_kind(kind)
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            upload = await download_attachment(image, bot_of(interaction).settings)
            await self.save(interaction, clean, kind_value, (note or None), upload)
        except UserError as exc:
            await fail_privately(interaction, str(exc))

    @app_commands.command(name="list", description="Your anchors, as one contact sheet")
    async def list_cmd(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        anchors = await bot.store.list_anchors(interaction.user.id)
        if not anchors:
            await interaction.followup.send(
                "You have no anchors yet. Save one with /anchor save.", ephemeral=True
            )
            return
        items = []
        for anchor in anchors:
            stored = await bot.store.get_image(anchor.image_sha)
            if stored is not None:
                items.append((stored[0], f"{anchor.name} ({anchor.kind})"))
        sheet = await asyncio.to_thread(
            imaging.contact_sheet, items, limit_bytes=interaction.filesize_limit // 2
        )
        ext = "png" if sheet[:4] == b"\x89PNG" else "jpg"
        lines = ", ".join(f"**{a.name}** ({a.kind})" for a in anchors)
        await interaction.followup.send(
            f"Your {len(anchors)} anchor{'s' if len(anchors) != 1 else ''}: {lines}"[:1900],
            file=discord.File(io.BytesIO(sheet), filename=f"anchors.{ext}"),
            ephemeral=True,
        )

    @app_commands.command(name="show", description="Show one of your anchors")
    @app_commands.autocomplete(name=anchor_name_autocomplete)
    async def show_cmd(self, interaction: discord.Interaction, name: str) -> None:
        bot = bot_of(interaction)
        anchor = await bot.store.get_anchor(interaction.user.id, name.strip().lower())
        if anchor is None:
            raise UserError(f"You have no anchor called '{name}'. See /anchor list.")
        stored = await bot.store.get_image(anchor.image_sha)
        if stored is None:
            raise UserError(f"The image of anchor '{anchor.name}' is missing; save it again.")
        data, mime = stored
        text = f"**{anchor.name}** — {anchor.kind}, {anchor.width}×{anchor.height}"
        if anchor.note:
            text += f"\n{anchor.note}"
        await interaction.response.send_message(
            text[:1900],
            file=discord.File(
                io.BytesIO(data), filename=f"{anchor.name}.{imaging.extension_for(mime)}"
            ),
            ephemeral=True,
        )

    @app_commands.command(name="delete", description="Delete one of your anchors (and its image)")
    @app_commands.autocomplete(name=anchor_name_autocomplete)
    async def delete_cmd(self, interaction: discord.Interaction, name: str) -> None:
        bot = bot_of(interaction)
        if not await bot.store.delete_anchor(interaction.user.id, name.strip().lower()):
            raise UserError(f"You have no anchor called '{name}'. See /anchor list.")
        await interaction.response.send_message(
            f"Deleted anchor **{name.strip().lower()}** and its image.", ephemeral=True
        )

    @app_commands.command(name="rename", description="Rename one of your anchors")
    @app_commands.autocomplete(name=anchor_name_autocomplete)
    async def rename_cmd(self, interaction: discord.Interaction, name: str, new_name: str) -> None:
        bot = bot_of(interaction)
        new = check_name(new_name)
        try:
            renamed = await bot.store.rename_anchor(interaction.user.id, name.strip().lower(), new)
        except AnchorExistsError:
            raise UserError(f"You already have an anchor called '{new}'.") from None
        if not renamed:
            raise UserError(f"You have no anchor called '{name}'. See /anchor list.")
        await interaction.response.send_message(
            f"Renamed **{name.strip().lower()}** to **{new}**.", ephemeral=True
        )

    async def save_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        from cogs.chains import image_attachments

        bot = bot_of(interaction)
        images = image_attachments(message)
        image_sha = None
        gen = await bot.store.generation_by_message(message.id)
        if gen is not None and gen.output_image is not None:
            image_sha = gen.output_image  # the original, not the re-encoded upload
        elif not images:
            await fail_privately(interaction, "That message has no image to save.")
            return
        attachment = None if image_sha else images[0]
        await interaction.response.send_modal(SaveAnchorModal(self, attachment, image_sha))


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Anchors(bot))
