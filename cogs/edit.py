"""/edit and /blend: change one image, or combine several."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters.prompts import InputRef, RequestOptions
from bot.services.requests import split_names
from cogs._shared import ASPECT_CHOICES, MODEL_CHOICES, SIZE_CHOICES, anchor_autocomplete, bot_of


class Edit(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(name="edit", description="Edit an image: describe the changes")
    @app_commands.describe(
        image="The image to edit",
        changes="What to change",
        anchors="Your saved anchors, comma-separated",
        reference="A reference image",
        aspect="Aspect ratio",
        size="Resolution",
        model="Which model",
        private="Only you see the result",
    )
    @app_commands.choices(aspect=ASPECT_CHOICES, size=SIZE_CHOICES, model=MODEL_CHOICES)
    @app_commands.autocomplete(anchors=anchor_autocomplete)
    async def edit(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        changes: str,
        anchors: str | None = None,
        reference: discord.Attachment | None = None,
        aspect: str | None = None,
        size: str | None = None,
        model: str | None = None,
        private: bool | None = None,
    ) -> None:
        attachments = [image] + ([reference] if reference is not None else [])
        inputs = [InputRef(type="image", data="attachment:1", role="edit_target")]
        if reference is not None:
            inputs.append(InputRef(type="image", data="attachment:2", role="reference"))
        spec = {"task": "edit_image", "changes": changes}
        options = RequestOptions(
            model=model,
            size=size,
            aspect=aspect,
            anchors=split_names(anchors),
            inputs=inputs,
        )
        await bot_of(interaction).requests.run(
            interaction,
            kind="edit",
            raw=spec,
            options=options,
            attachments=attachments,
            private=private,
        )

    @app_commands.command(name="blend", description="Blend two to six images into one")
    @app_commands.describe(
        image1="First image",
        image2="Second image",
        image3="Third image",
        image4="Fourth image",
        image5="Fifth image",
        image6="Sixth image",
        instructions="How to combine them",
        aspect="Aspect ratio",
        size="Resolution",
        model="Which model",
    )
    @app_commands.choices(aspect=ASPECT_CHOICES, size=SIZE_CHOICES, model=MODEL_CHOICES)
    async def blend(
        self,
        interaction: discord.Interaction,
        image1: discord.Attachment,
        image2: discord.Attachment,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        image5: discord.Attachment | None = None,
        image6: discord.Attachment | None = None,
        instructions: str | None = None,
        aspect: str | None = None,
        size: str | None = None,
        model: str | None = None,
    ) -> None:
        attachments = [a for a in (image1, image2, image3, image4, image5, image6) if a is not None]
        spec = {
            "task": "blend_images",
            "changes": instructions
            or "Blend these images into one coherent image, combining their key elements.",
        }
        options = RequestOptions(
            model=model,
            size=size,
            aspect=aspect,
            inputs=[
                InputRef(type="image", data=f"attachment:{i}", role="reference")
                for i in range(1, len(attachments) + 1)
            ],
        )
        await bot_of(interaction).requests.run(
            interaction, kind="blend", raw=spec, options=options, attachments=attachments
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Edit(bot))
