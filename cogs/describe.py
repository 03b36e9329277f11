"""/describe and the Describe as JSON menu: a Gemini text model turns an image into a spec.

The answer shows a two-line summary, the spec as describe.json and the buttons Generate,
Generate with this image (the described image as a reference) and Edit spec (the JSON
editor, pre-filled). Thin: the work is bot.services.describe; the buttons load the describe's
record, so they work after a restart.
"""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters.describe import DEFAULT_DETAIL, DETAIL_LEVELS
from bot.adapters.prompts import RequestOptions, ResolvedImage, SpecError, prepare
from bot.config import Settings, model_display_name
from bot.core.resolver import Upload, normalise_upload
from bot.core.submission import InputImage, Requester, Submission, public_spec
from bot.errors import UserError
from bot.presentation.buttons import Action, action_view
from bot.presentation.text import format_cost
from bot.services.describe import Described, DescribeFailed
from bot.services.requests import (
    PromptProblem,
    acknowledge,
    check_declared_sizes,
    download_attachment,
    requester_of,
)
from cogs._shared import bot_of
from cogs.chains import IMAGE_SUFFIXES, IMAGE_TYPES, image_attachments
from cogs.imagine import MODAL_TEXT_LIMIT, PromptModal

if TYPE_CHECKING:
    from bot.adapters.store import GenerationRow
    from bot.client import NanoBananaBot

DETAIL_CHOICES = [
    app_commands.Choice(name=f"{name} — {text.split(':')[0].lower()}"[:100], value=name)
    for name, text in DETAIL_LEVELS.items()
]
DESCRIBE_JSON = "describe.json"
REFERENCE_LABEL = "reference image (the described picture)"
OWNED_ACTIONS = (Action.GENERATE, Action.GENERATE_WITH_IMAGE, Action.EDIT_SPEC, Action.REDESCRIBE)

UploadSource = Callable[[], Awaitable[Upload]]


def _is_image(attachment: discord.Attachment) -> bool:
    kind = (attachment.content_type or "").split(";")[0].strip().lower()
    return kind in IMAGE_TYPES or attachment.filename.lower().endswith(IMAGE_SUFFIXES)


def refuse_non_image(attachment: discord.Attachment, settings: Settings) -> None:
    """Before any call: not an image by its type and name, or over the size limit."""
    if not _is_image(attachment):
        raise UserError(
            f"{attachment.filename[:60]} is not an image: attach a PNG, JPEG, WEBP, GIF or HEIC "
            "picture to describe."
        )
    check_declared_sizes([attachment], settings)


def reply_text(gid: int, described: Described) -> str:
    result = described.description
    first, second = result.summary.split("\n", 1)
    footer = (
        f"-# describe #{gid} · {model_display_name(result.model)} "
        f"({result.model}) · {format_cost(result.cost)}"
    )
    return f"🔎 {first}\n{second}\n{footer}"


class DescribeCog(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.nb: NanoBananaBot = bot  # type: ignore[assignment]
        handlers = {
            Action.GENERATE: self.generate,
            Action.GENERATE_WITH_IMAGE: self.generate_with_image,
            Action.EDIT_SPEC: self.edit_spec,
            Action.REDESCRIBE: self.describe_again,
        }
        for action in OWNED_ACTIONS:
            self.nb.actions.register(action, handlers[action])
        self.menu = app_commands.ContextMenu(name="Describe as JSON", callback=self.describe_menu)
        bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.nb.actions.unregister(*OWNED_ACTIONS)
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    # ------------------------------------------------------------------ describing

    @app_commands.command(name="describe", description="Describe an image as a JSON prompt")
    @app_commands.describe(image="The picture to describe", detail="How much detail")
    @app_commands.choices(detail=DETAIL_CHOICES)
    async def describe(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        detail: str | None = None,
    ) -> None:
        settings = self.nb.settings
        refuse_non_image(image, settings)

        async def download() -> Upload:
            return await download_attachment(image, settings)

        await self._describe(interaction, download, detail)

    async def describe_menu(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        bot = bot_of(interaction)
        gen = await bot.store.generation_by_message(message.id)
        source: UploadSource
        if gen is not None and gen.output_image is not None:
            if gen.private and gen.user_id != interaction.user.id:
                raise UserError("That result is private.")
            sha = gen.output_image

            async def stored() -> Upload:
                found = await bot.store.get_image(sha)
                if found is None:
                    raise UserError("That image is past the retention period and gone.")
                return await normalise_upload(found[0], f"result-{gen.id}.png", bot.settings)

            source = stored
        else:
            images = image_attachments(message)
            if not images:
                raise UserError("That message has no image to describe.")
            first = images[0]
            check_declared_sizes([first], bot.settings)

            async def download() -> Upload:
                return await download_attachment(first, bot.settings)

            source = download
        await self._describe(interaction, source, None)

    async def _describe(
        self, interaction: discord.Interaction, source: UploadSource, detail: str | None
    ) -> None:
        bot = bot_of(interaction)
        prefs = await bot.requests.preferences(interaction)
        requester = requester_of(interaction)
        await bot.describer.precheck(requester)
        await acknowledge(interaction, private=prefs.private)
        upload = await source()
        outcome = await bot.describer.describe(
            requester,
            upload,
            detail=detail or DEFAULT_DETAIL,
            defaults=prefs.defaults,
            private=prefs.private,
        )
        await self._show(interaction, outcome, private=prefs.private)

    async def _show(
        self,
        interaction: discord.Interaction,
        outcome: Described | DescribeFailed,
        *,
        private: bool,
    ) -> None:
        if isinstance(outcome, DescribeFailed):
            icon = "🚫" if outcome.blocked else "❌"
            await interaction.followup.send(
                f"{icon} {outcome.failure.message}",
                view=action_view(outcome.generation_id, [Action.REDESCRIBE]),
                ephemeral=private,
                wait=True,
            )
            return
        gid = outcome.generation_id
        spec = outcome.description.spec
        body = json.dumps(spec, indent=2, ensure_ascii=False).encode()
        await interaction.followup.send(
            reply_text(gid, outcome),
            file=discord.File(io.BytesIO(body), filename=DESCRIBE_JSON),
            view=action_view(gid, [Action.GENERATE, Action.GENERATE_WITH_IMAGE, Action.EDIT_SPEC]),
            ephemeral=private,
            wait=True,
        )

    # ------------------------------------------------------------------ buttons

    async def _described(self, interaction: discord.Interaction, gid: int) -> GenerationRow:
        gen = await bot_of(interaction).store.get_generation(gid)
        if gen is None or gen.kind != "describe":
            raise UserError("I no longer have this description in my records.")
        if gen.private and gen.user_id != interaction.user.id:
            raise UserError("That description is private.")
        if gen.status != "done":
            raise UserError("This description failed; press Retry to describe the image again.")
        return gen

    async def generate(self, interaction: discord.Interaction, gid: int) -> None:
        gen = await self._described(interaction, gid)
        await bot_of(interaction).requests.run(
            interaction,
            kind="prompt",
            raw=gen.spec,
            options=RequestOptions(),
            private=True if gen.private else None,
        )

    async def generate_with_image(self, interaction: discord.Interaction, gid: int) -> None:
        bot = bot_of(interaction)
        gen = await self._described(interaction, gid)
        if not gen.input_images:
            raise UserError("This description has no image on record.")
        sha = gen.input_images[0]
        prefs = await bot.requests.preferences(interaction)
        private = gen.private or prefs.private
        raw = {
            **gen.spec,
            "inputs": [{"type": "image", "data": "attachment:1", "role": "reference"}],
        }
        try:
            prepared = prepare(raw, RequestOptions(), prefs.defaults)
        except SpecError as exc:
            raise PromptProblem(exc) from None
        requester = requester_of(interaction, fallback_channel_id=gen.channel_id)
        await bot.requests.precheck(requester, [prepared])
        await acknowledge(interaction, private=private)
        stored = await bot.store.get_image(sha)  # megabytes: after the ack
        if stored is None:
            raise UserError("The described image is past the retention period and no longer stored.")
        data, mime = stored
        sub = Submission.build(
            requester,
            kind="prompt",
            prepared=prepared,
            inputs=[InputImage(ResolvedImage(data=data, mime_type=mime, description=REFERENCE_LABEL), sha)],
            private=private,
        )
        await bot.requests.submit(interaction, sub)

    async def edit_spec(self, interaction: discord.Interaction, gid: int) -> None:
        gen = await self._described(interaction, gid)
        spec = public_spec(gen.spec, owner_view=True)
        text = json.dumps(spec, indent=2, ensure_ascii=False)
        if len(text) > MODAL_TEXT_LIMIT:
            text = json.dumps(spec, ensure_ascii=False, separators=(",", ":"))
        if len(text) > MODAL_TEXT_LIMIT:
            raise UserError(
                f"This spec is too long for the editor ({len(text)} characters, Discord allows "
                f"{MODAL_TEXT_LIMIT}); download {DESCRIBE_JSON}, edit it and use /prompt file:."
            )
        await interaction.response.send_modal(PromptModal(text))

    async def describe_again(self, interaction: discord.Interaction, gid: int) -> None:
        bot = bot_of(interaction)
        gen = await bot.store.get_generation(gid)
        if gen is None or gen.kind != "describe":
            raise UserError("I no longer have this description in my records.")
        if gen.user_id != interaction.user.id:
            raise UserError("Only the person who asked for this description can retry it.")
        prefs = await bot.requests.preferences(interaction)
        requester = Requester(
            interaction.user.id, interaction.guild_id, interaction.channel_id or gen.channel_id
        )
        await bot.describer.precheck(requester)
        await acknowledge(interaction, private=gen.private)
        outcome = await bot.describer.again(gen, requester, defaults=prefs.defaults)
        if outcome is None:
            raise UserError("The image is past the retention period and no longer stored.")
        await self._show(interaction, outcome, private=gen.private)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(DescribeCog(bot))
