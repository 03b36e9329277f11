"""/batch: one spec, one field swapped per image; a labelled contact sheet plus each image.

Everything that can be refused is refused before the interaction is acknowledged: the spec,
every variant, the user's queue room and daily quota. The variants are then queued together
(all or none), the queue runs them fairly beside everyone else's jobs, one message shows the
batch's progress, each image arrives as its own message with its own buttons, and the
progress message becomes the contact sheet (bot.services.batches).
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters.prompts import RequestOptions, parse_prompt_text
from bot.errors import UserError
from bot.services.batches import BatchRun, has_path, plan_batch
from bot.services.requests import acknowledge, requester_of
from bot.services.templates import spec_from_template
from cogs._shared import ASPECT_CHOICES, MODEL_CHOICES, SIZE_CHOICES, bot_of, template_autocomplete
from cogs.templates import vars_autocomplete


class Batch(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot

    @app_commands.command(
        name="batch", description="Variants of one prompt, one field swapped per image"
    )
    @app_commands.describe(
        field="Dotted path of the field to vary, e.g. product.color",
        values="2–10 comma-separated values",
        template="Start from a template",
        json="Or a JSON spec",
        vars='Template values: "product=running shoe; color=red"',
        aspect="Aspect ratio",
        size="Resolution",
        model="Which model",
    )
    @app_commands.choices(aspect=ASPECT_CHOICES, size=SIZE_CHOICES, model=MODEL_CHOICES)
    @app_commands.autocomplete(template=template_autocomplete, vars=vars_autocomplete)
    async def batch(
        self,
        interaction: discord.Interaction,
        field: str,
        values: str,
        template: str | None = None,
        json: str | None = None,
        vars: str | None = None,
        aspect: str | None = None,
        size: str | None = None,
        model: str | None = None,
    ) -> None:
        bot = bot_of(interaction)
        if (template is None) == (json is None):
            raise UserError("Give either a template or a json spec to vary (one of them).")
        if template is not None:
            base = spec_from_template(
                await bot.templates.find(interaction.guild_id, template), vars, None
            )
        else:
            if vars:
                raise UserError("vars fill a template's placeholders; with json, edit the JSON.")
            base = parse_prompt_text(json or "")
        prefs = await bot.requests.preferences(interaction)
        options = RequestOptions(model=model, size=size, aspect=aspect)
        variants = plan_batch(base, field, values, options, prefs.defaults)
        added = not has_path(base, field)
        # Limits for the whole batch, before anything is shown, queued or charged.
        await bot.requests.precheck(requester_of(interaction), [v.prepared for v in variants])
        await acknowledge(interaction, private=prefs.private)
        run = BatchRun(
            store=bot.store,
            settings=bot.settings,
            generator=bot.generator,
            interaction=interaction,
            field=field.strip(),
            variants=variants,
            private=prefs.private,
        )
        if added:
            run.notes.append(f"`{field.strip()}` was not in the spec, so it was added.")
        await run.start()
        await run.finish()



async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Batch(bot))
