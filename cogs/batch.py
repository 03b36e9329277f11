"""/batch: one spec, one field swapped per image; a labelled contact sheet plus each image."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import uuid

import discord
from discord import app_commands
from discord.ext import commands

from bot import imaging
from bot.errors import UserError
from bot.flows import (
    acknowledge,
    check_request_quota,
    fail_privately,
    find_template,
    spec_from_template,
)
from bot.generator import Submission
from bot.preferences import preferences_for
from bot.prompts import (
    PreparedSpec,
    RequestOptions,
    SpecError,
    expand_batch,
    parse_batch_values,
    parse_prompt_text,
    prepare,
)
from bot.resolver import RequestResolver
from bot.targets import FollowupTarget
from cogs._shared import ASPECT_CHOICES, MODEL_CHOICES, SIZE_CHOICES, bot_of, template_autocomplete
from cogs.templates import vars_autocomplete

log = logging.getLogger(__name__)


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
                await find_template(bot, interaction.guild_id, template), vars, None
            )
        else:
            base = parse_prompt_text(json or "")
        labels = parse_batch_values(values)
        variants = expand_batch(base, field, labels)
        prefs = await preferences_for(
            bot.store, bot.settings, interaction.user.id, interaction.guild_id
        )
        options = RequestOptions(model=model, size=size, aspect=aspect)
        prepared: list[tuple[str, PreparedSpec]] = [
            (v.label, prepare(v.spec, options, prefs.defaults)) for v in variants
        ]
        # Limits are checked for the whole batch before anything is queued or charged.
        _running, queued = bot.queue.user_load(interaction.user.id)
        room = bot.settings.max_queued_per_user - queued
        if len(prepared) > room:
            raise UserError(
                f"This batch has {len(prepared)} images but you have room for {max(room, 0)} more "
                f"in the queue (limit {bot.settings.max_queued_per_user}). Wait for some to finish "
                "or use fewer values."
            )
        await check_request_quota(
            bot, interaction.user.id, interaction.guild_id, prepared[0][1], images=len(prepared)
        )
        private = prefs.private
        await acknowledge(interaction, private=private)
        try:
            await self._run(interaction, field, prepared, private)
        except (UserError, SpecError) as exc:
            await fail_privately(interaction, str(exc))

    async def _run(
        self,
        interaction: discord.Interaction,
        field: str,
        prepared: list[tuple[str, PreparedSpec]],
        private: bool,
    ) -> None:
        bot = bot_of(interaction)
        batch_id = uuid.uuid4().hex[:12]
        resolver = RequestResolver(bot.store, user_id=interaction.user.id)
        gen_ids: list[tuple[str, int]] = []
        for label, spec in prepared:
            inputs = await resolver.resolve_all(spec.spec)
            sub = Submission(
                user_id=interaction.user.id,
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id or 0,
                kind="batch",
                prepared=spec,
                inputs=inputs,
                batch_id=batch_id,
                private=private,
            )
            target = FollowupTarget(interaction, label=f"{field} = {label}", private=private)
            try:
                gen_ids.append((label, await bot.generator.submit(sub, target)))
            except UserError as exc:
                await interaction.followup.send(f"**{label}** — {exc}", ephemeral=True)
        total = len(gen_ids)
        await self._progress(interaction, field, 0, total)
        done = 0

        async def wait(gid: int) -> None:
            nonlocal done
            await bot.generator.wait_for(gid)
            done += 1
            await self._progress(interaction, field, done, total)

        await asyncio.gather(*(wait(gid) for _, gid in gen_ids))
        await self._contact_sheet(interaction, field, gen_ids)

    async def _progress(
        self, interaction: discord.Interaction, field: str, done: int, total: int
    ) -> None:
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(
                content=f"⏳ Batch on `{field}`: {done} of {total} finished…"
            )

    async def _contact_sheet(
        self, interaction: discord.Interaction, field: str, gen_ids: list[tuple[str, int]]
    ) -> None:
        bot = bot_of(interaction)
        items: list[tuple[bytes, str]] = []
        problems: list[str] = []
        for label, gid in gen_ids:
            gen = await bot.store.get_generation(gid)
            stored = (
                await bot.store.get_image(gen.output_image) if gen and gen.output_image else None
            )
            if gen is None or stored is None:
                status = gen.status if gen else "lost"
                problems.append(
                    f"{label}: {status}" + (f" ({gen.error})" if gen and gen.error else "")
                )
                continue
            items.append((stored[0], label))
        summary = f"Batch on `{field}`: {len(items)} of {len(gen_ids)} images."
        if problems:
            summary += "\nNot made: " + "; ".join(problems)
        if not items:
            await interaction.edit_original_response(content=summary[:2000])
            return
        sheet = await asyncio.to_thread(
            imaging.contact_sheet, items, limit_bytes=interaction.filesize_limit // 2
        )
        ext = "png" if sheet[:4] == b"\x89PNG" else "jpg"
        await interaction.edit_original_response(
            content=summary[:2000],
            attachments=[discord.File(io.BytesIO(sheet), filename=f"batch-contact-sheet.{ext}")],
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Batch(bot))
