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
from bot.presentation.buttons import Action
from bot.presentation.places import require_batch_room
from bot.services.batches import BatchRun, cancel_batch, has_path, plan_batch
from bot.services.economy import EconomyBatchRun, economy_wanted
from bot.services.requests import acknowledge, requester_of
from bot.services.templates import spec_from_template
from cogs._shared import (
    ASPECT_CHOICES,
    ECONOMY_HELP,
    MODEL_CHOICES,
    SIZE_CHOICES,
    bot_of,
    template_autocomplete,
)
from cogs.templates import vars_autocomplete


class Batch(commands.Cog):
    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        bot.actions.register(Action.CANCEL_BATCH, self.cancel_batch)  # type: ignore[attr-defined]

    async def cog_unload(self) -> None:
        self.bot.actions.unregister(Action.CANCEL_BATCH)  # type: ignore[attr-defined]

    async def cancel_batch(self, interaction: discord.Interaction, gid: int) -> None:
        """The batch's Cancel: every variant still waiting, at once."""
        bot = bot_of(interaction)
        gen = await bot.store.get_generation(gid)
        if gen is None or gen.batch_id is None:
            raise UserError("I no longer have this batch in my records.")
        if gen.user_id != interaction.user.id:
            raise UserError("Only the person who started this batch can cancel it.")
        cancelled, running = await cancel_batch(bot.store, bot.generator, gen.batch_id)
        if not cancelled:
            text = "Too late to cancel: every image of this batch is already running or finished."
        else:
            text = f"Cancelled {cancelled} waiting image{'s' if cancelled != 1 else ''}; nothing was charged for them."
            if running:
                text += f" {running} already being made will still arrive."
        await interaction.response.send_message(text, ephemeral=True)

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
        economy=ECONOMY_HELP,
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
        economy: bool | None = None,
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
        require_batch_room(interaction, len(variants))  # user installs: 5 followups at most
        added = not has_path(base, field)
        use_economy = economy_wanted("batch", economy, default=prefs.economy)
        # Limits for the whole batch, before anything is shown, queued or charged.
        await bot.requests.precheck(
            requester_of(interaction),
            [v.prepared for v in variants if v.prepared is not None],
            economy=use_economy,
        )
        await acknowledge(interaction, private=prefs.private)
        if use_economy:
            economy_run = EconomyBatchRun(
                store=bot.store,
                economy=bot.economy,
                interaction=interaction,
                field=field.strip(),
                variants=variants,
                private=prefs.private,
            )
            if added:
                economy_run.notes.append(f"`{field.strip()}` was not in the spec, so it was added.")
            await economy_run.start()  # the economy loop takes it from here
            return
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
