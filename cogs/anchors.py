"""/anchor save | list | show | delete | rename and the Save as anchor context menu.

Anchors are personal data: every answer here is private (ephemeral), and every lookup passes
the caller's id, so nobody can see, use or change another person's anchor. Asking for someone
else's anchor reads exactly like asking for one that does not exist.
"""

from __future__ import annotations

import asyncio
import io
import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters import imaging
from bot.adapters.store import AnchorExistsError, AnchorRow
from bot.core.resolver import (
    ANCHOR_KINDS,
    Upload,
    check_anchor_kind,
    check_anchor_name,
    normalise_upload,
)
from bot.errors import UserError
from bot.presentation.replies import report_error
from bot.services.requests import download_attachment
from cogs._shared import anchor_name_autocomplete, bot_of

log = logging.getLogger(__name__)

KIND_CHOICES = [app_commands.Choice(name=k, value=k) for k in ANCHOR_KINDS]
SHEET_LIMIT = 48  # tiles on one /anchor list sheet; the text still names every anchor
MODAL_TIMEOUT = 600.0


def no_such_anchor(name: str) -> UserError:
    return UserError(f"You have no anchor called '{name.strip()[:40]}'. See /anchor list.")


def clash(name: str) -> UserError:
    return UserError(
        f"You already have an anchor called '{name}'. Pick another name, "
        f"rename it with /anchor rename, or delete it with /anchor delete name:{name}."
    )


class SaveAnchorModal(discord.ui.Modal):
    """Asks the name and the kind; the image comes from the message the menu was used on."""

    def __init__(
        self, cog: Anchors, attachment: discord.Attachment | None, image_sha: str | None
    ) -> None:
        super().__init__(title="Save as anchor", timeout=MODAL_TIMEOUT)
        self.cog = cog
        self.attachment = attachment
        self.image_sha = image_sha  # a bot result: its stored original, not the posted copy
        self.name_input: discord.ui.TextInput[SaveAnchorModal] = discord.ui.TextInput(
            custom_id="name", min_length=1, max_length=32, placeholder="e.g. kestrel or logo_2"
        )
        self.kind_select: discord.ui.Select[SaveAnchorModal] = discord.ui.Select(
            custom_id="kind",
            min_values=1,
            max_values=1,
            options=[
                discord.SelectOption(label=k, value=k, default=k == "face") for k in ANCHOR_KINDS
            ],
        )
        self.add_item(
            discord.ui.Label(
                text="Name",
                description="1–32 lowercase letters, digits, - or _",
                component=self.name_input,
            )
        )
        self.add_item(discord.ui.Label(text="Kind", component=self.kind_select))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        name = check_anchor_name(self.name_input.value)
        kind = check_anchor_kind(self.kind_select.values[0] if self.kind_select.values else None)
        bot = bot_of(interaction)
        if await bot.store.get_anchor(interaction.user.id, name) is not None:
            raise clash(name)
        await interaction.response.defer(ephemeral=True, thinking=True)
        if self.attachment is not None:
            upload = await download_attachment(self.attachment, bot.settings)
        else:
            stored = await bot.store.get_image(self.image_sha or "")
            if stored is None:
                raise UserError("That image is no longer stored; save it from a newer result.")
            upload = await normalise_upload(stored[0], "result.png", bot.settings)
        await self.cog.save(interaction, name, kind, None, upload)

    async def on_error(  # type: ignore[override]
        self, interaction: discord.Interaction, error: Exception, /
    ) -> None:
        await report_error(interaction, error, where="the Save as anchor modal")


class Anchors(
    commands.GroupCog, group_name="anchor", group_description="Your private identity anchors"
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
    ) -> AnchorRow:
        """Store an already normalised image as the caller's anchor and say so privately."""
        bot = bot_of(interaction)
        image = upload.image
        sha = await bot.store.put_image(image.data, image.mime_type)
        try:
            row = await bot.store.save_anchor(
                owner_id=interaction.user.id,
                name=name,
                kind=kind,
                note=note,
                image_sha=sha,
                width=image.width,
                height=image.height,
            )
        except AnchorExistsError:
            raise clash(name) from None
        log.info("user %s saved anchor %s (%s)", interaction.user.id, row.id, kind)
        await interaction.followup.send(
            f"Saved anchor **{name}** ({kind}, {image.width}×{image.height}). Only you can see "
            f'and use it: `anchors:{name}` in /imagine or /edit, or `"data": "anchor:{name}"` '
            "in a JSON prompt.",
            ephemeral=True,
        )
        return row

    @app_commands.command(name="save", description="Save an image as a private anchor")
    @app_commands.describe(
        name="1–32 lowercase letters, digits, - or _",
        image="The image (a clear, well-lit picture works best)",
        kind="What it keeps the same (default: face)",
        note="A note for yourself",
    )
    @app_commands.choices(kind=KIND_CHOICES)
    async def save_cmd(
        self,
        interaction: discord.Interaction,
        name: str,
        image: discord.Attachment,
        kind: str | None = None,
        note: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        clean = check_anchor_name(name)
        kind_value = check_anchor_kind(kind)
        bot = bot_of(interaction)
        if await bot.store.get_anchor(interaction.user.id, clean) is not None:
            raise clash(clean)
        await interaction.response.defer(ephemeral=True, thinking=True)
        upload = await download_attachment(image, bot.settings)
        await self.save(interaction, clean, kind_value, (note or "").strip() or None, upload)

    @app_commands.command(name="list", description="Your anchors, as one contact sheet")
    async def list_cmd(self, interaction: discord.Interaction) -> None:
        bot = bot_of(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        anchors = await bot.store.list_anchors(interaction.user.id)
        if not anchors:
            await interaction.followup.send(
                "You have no anchors yet. Save one with /anchor save, or use Apps ▸ "
                "Save as anchor on a message with an image.",
                ephemeral=True,
            )
            return
        items: list[tuple[bytes, str]] = []
        for anchor in anchors[:SHEET_LIMIT]:
            stored = await bot.store.get_image(anchor.image_sha)
            # a missing image still gets its labelled tile ("no image")
            items.append((stored[0] if stored else b"", f"{anchor.name} ({anchor.kind})"))
        sheet = await asyncio.to_thread(
            imaging.contact_sheet, items, limit_bytes=interaction.filesize_limit // 2
        )
        count = len(anchors)
        text = f"Your {count} anchor{'s' if count != 1 else ''}: " + ", ".join(
            f"**{a.name}** ({a.kind})" for a in anchors
        )
        if count > SHEET_LIMIT:
            text += f"\nThe sheet shows the first {SHEET_LIMIT}; /anchor show shows any one."
        if len(text) > 1900:
            text = text[:1880].rsplit(", ", 1)[0] + ", …"
        await interaction.followup.send(
            text,
            file=discord.File(
                io.BytesIO(sheet), filename=f"anchors.{imaging.extension_for('image/jpeg')}"
            ),
            ephemeral=True,
        )

    @app_commands.command(name="show", description="Show one of your anchors (only to you)")
    @app_commands.describe(name="The anchor")
    @app_commands.autocomplete(name=anchor_name_autocomplete)
    async def show_cmd(self, interaction: discord.Interaction, name: str) -> None:
        bot = bot_of(interaction)
        anchor = await bot.store.get_anchor(interaction.user.id, name.strip().lower())
        if anchor is None:
            raise no_such_anchor(name)
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

    @app_commands.command(name="delete", description="Delete one of your anchors and its image")
    @app_commands.describe(name="The anchor")
    @app_commands.autocomplete(name=anchor_name_autocomplete)
    async def delete_cmd(self, interaction: discord.Interaction, name: str) -> None:
        bot = bot_of(interaction)
        key = name.strip().lower()
        if not key or not await bot.store.delete_anchor(interaction.user.id, key):
            raise no_such_anchor(name)
        log.info("user %s deleted an anchor", interaction.user.id)
        await interaction.response.send_message(
            f"Deleted anchor **{key}** and its stored image.", ephemeral=True
        )

    @app_commands.command(name="rename", description="Rename one of your anchors")
    @app_commands.describe(name="The anchor", new_name="Its new name")
    @app_commands.autocomplete(name=anchor_name_autocomplete)
    async def rename_cmd(self, interaction: discord.Interaction, name: str, new_name: str) -> None:
        bot = bot_of(interaction)
        old = name.strip().lower()
        new = check_anchor_name(new_name)
        if not old:
            raise no_such_anchor(name)
        try:
            renamed = await bot.store.rename_anchor(interaction.user.id, old, new)
        except AnchorExistsError:
            raise clash(new) from None
        if not renamed:
            raise no_such_anchor(name)
        await interaction.response.send_message(
            f"Renamed **{old}** to **{new}**. Use it as `anchors:{new}` from now on.",
            ephemeral=True,
        )

    async def save_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        from cogs.chains import image_attachments

        bot = bot_of(interaction)
        gen = await bot.store.generation_by_message(message.id)
        if gen is not None and gen.output_image is not None:
            # a result: keep the original, not the copy re-encoded to fit the upload limit
            modal = SaveAnchorModal(self, None, gen.output_image)
        else:
            images = image_attachments(message)
            if not images:
                raise UserError("That message has no image to save as an anchor.")
            modal = SaveAnchorModal(self, images[0], None)
        await interaction.response.send_modal(modal)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Anchors(bot))
