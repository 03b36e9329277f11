"""/imagine and /prompt: text or JSON in, an image back in the channel."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters.prompts import InputRef, RequestOptions, SpecError, parse_template
from bot.errors import UserError
from bot.presentation.replies import report_error
from bot.services.requests import PromptProblem, acknowledge, split_names
from bot.services.templates import spec_from_template
from cogs._shared import (
    ASPECT_CHOICES,
    ECONOMY_HELP,
    MODEL_CHOICES,
    SIZE_CHOICES,
    anchor_autocomplete,
    bot_of,
    template_autocomplete,
)

MAX_JSON_FILE_BYTES = 64 * 1024
MODAL_TEXT_LIMIT = 4000


class PromptModal(discord.ui.Modal, title="JSON prompt"):
    """A JSON editor; Discord caps a text input at 4000 characters."""

    spec: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
        label="Spec (JSON)",
        style=discord.TextStyle.paragraph,
        max_length=MODAL_TEXT_LIMIT,
        custom_id="prompt_json",
    )

    def __init__(self, prefill: str | None, economy: bool | None = None) -> None:
        super().__init__(timeout=None)
        self.economy = economy
        if prefill:
            self.spec.default = prefill[:MODAL_TEXT_LIMIT]

    async def on_submit(self, interaction: discord.Interaction) -> None:
        raw: str | dict[str, object] = self.spec.value
        if "{{" in self.spec.value:
            # Pre-filled from a template: placeholders left in the editor take their defaults.
            try:
                raw = parse_template("editor", self.spec.value).fill({})
            except SpecError as exc:
                raise PromptProblem(exc) from None
        await bot_of(interaction).requests.run(
            interaction, kind="prompt", raw=raw, options=RequestOptions(), economy=self.economy
        )

    async def on_error(  # type: ignore[override]
        self, interaction: discord.Interaction, error: Exception, /
    ) -> None:
        await report_error(interaction, error, where="the JSON prompt editor")


class Imagine(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(
        name="imagine", description="Generate an image from text or a JSON prompt"
    )
    @app_commands.describe(
        prompt="What to draw: plain text or a JSON object",
        aspect="Aspect ratio",
        size="Resolution",
        model="Which model",
        negative="What to avoid",
        style="A style to apply",
        anchors="Your saved anchors, comma-separated",
        reference="A reference image",
        reference2="Another reference image",
        reference3="Another reference image",
        template="Start from a template (the prompt adds to it, or gives key=value; ...)",
        private="Only you see the result",
        economy=ECONOMY_HELP,
    )
    @app_commands.choices(aspect=ASPECT_CHOICES, size=SIZE_CHOICES, model=MODEL_CHOICES)
    @app_commands.autocomplete(anchors=anchor_autocomplete, template=template_autocomplete)
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: str,
        aspect: str | None = None,
        size: str | None = None,
        model: str | None = None,
        negative: str | None = None,
        style: str | None = None,
        anchors: str | None = None,
        reference: discord.Attachment | None = None,
        reference2: discord.Attachment | None = None,
        reference3: discord.Attachment | None = None,
        template: str | None = None,
        private: bool | None = None,
        economy: bool | None = None,
    ) -> None:
        attachments = [a for a in (reference, reference2, reference3) if a is not None]
        raw: str | dict[str, object] = prompt
        if template:
            found = await bot_of(interaction).templates.find(interaction.guild_id, template)
            raw = spec_from_template(found, None, prompt)
        options = RequestOptions(
            model=model,
            size=size,
            aspect=aspect,
            negative=negative,
            style=style,
            anchors=split_names(anchors),
            inputs=[
                InputRef(type="image", data=f"attachment:{i}", role="reference")
                for i in range(1, len(attachments) + 1)
            ],
        )
        await bot_of(interaction).requests.run(
            interaction,
            kind="imagine",
            raw=raw,
            options=options,
            attachments=attachments,
            private=private,
            economy=economy,
        )

    @app_commands.command(
        name="prompt", description="Submit a full JSON prompt (or open an editor)"
    )
    @app_commands.describe(
        json="The JSON spec",
        file="A .json file with the spec",
        template="Pre-fill the editor from a template",
        economy=ECONOMY_HELP,
    )
    @app_commands.autocomplete(template=template_autocomplete)
    async def prompt(
        self,
        interaction: discord.Interaction,
        json: str | None = None,
        file: discord.Attachment | None = None,
        template: str | None = None,
        economy: bool | None = None,
    ) -> None:
        bot = bot_of(interaction)
        if json is None and file is None:
            prefill = None
            if template:
                found = await bot.templates.find(interaction.guild_id, template)
                prefill = found.body
                if len(prefill) > MODAL_TEXT_LIMIT:
                    raise UserError(
                        f"Template '{template}' is too long for the editor; use "
                        f"/template use name:{template} or attach it as a file."
                    )
            await interaction.response.send_modal(PromptModal(prefill, economy))
            return
        if json is not None and file is not None:
            raise UserError("Give either json or file, not both.")
        if template:
            raise UserError("Use template without json/file to open the editor pre-filled.")
        text = json
        if file is not None:
            if file.size > MAX_JSON_FILE_BYTES:
                raise UserError(f"{file.filename} is over 64 KB; a prompt spec is at most 32 KB.")
            # Downloading may take a while: acknowledge first (Discord allows 3 s).
            prefs = await bot.requests.preferences(interaction)
            await acknowledge(interaction, private=prefs.private)
            try:
                data = await file.read()
            except discord.HTTPException:
                raise UserError(f"I could not download {file.filename}; attach it again.") from None
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise UserError(
                    f"{file.filename} is not UTF-8 text; save it as a .json file."
                ) from None
        raw: str | dict[str, object] = text or ""
        if not str(raw).lstrip().startswith("{"):
            raise UserError(
                "/prompt takes a JSON object starting with '{'; for plain text use /imagine."
            )
        await bot.requests.run(
            interaction, kind="prompt", raw=raw, options=RequestOptions(), economy=economy
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Imagine(bot))
