"""/batch: one spec, one field swapped per image; a labelled contact sheet plus each image.

Everything that can be refused is refused before the interaction is acknowledged: the spec,
every variant, the user's queue room and daily quota. The variants are then queued together
(all or none, through `Generator.submit_many`), the queue runs them fairly beside everyone
else's jobs, one message shows the batch's progress, each image arrives as its own message
with its own buttons, and the progress message becomes the contact sheet.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters import imaging
from bot.adapters.prompts import (
    Defaults,
    PreparedSpec,
    RequestOptions,
    SpecError,
    expand_batch,
    parse_batch_values,
    parse_prompt_text,
    prepare,
)
from bot.config import estimate_cost, model_display_name
from bot.errors import UserError
from bot.flows import acknowledge, fail_privately, find_template, spec_from_template
from bot.jobs import JobState
from bot.preferences import preferences_for
from bot.quotas import check_quota
from bot.resolver import RequestResolver
from bot.submission import Submission
from bot.targets import FollowupTarget, InteractionTarget
from bot.ui import ordinal, truncate
from cogs._shared import ASPECT_CHOICES, MODEL_CHOICES, SIZE_CHOICES, bot_of, template_autocomplete
from cogs.templates import vars_autocomplete

if TYPE_CHECKING:
    from bot.adapters.store import GenerationRow
    from bot.client import NanoBananaBot

log = logging.getLogger(__name__)

SHEET_MAX_BYTES = 8 * 1024 * 1024


@dataclass
class Variant:
    label: str  # the value swapped in
    prepared: PreparedSpec
    gen_id: int | None = None
    finished: bool = False


def _has_path(spec: dict[str, Any], path: str) -> bool:
    node: Any = spec
    for part in path.split("."):
        part = part.strip()
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def plan_batch(
    base: dict[str, Any],
    field: str,
    values_text: str,
    options: RequestOptions,
    defaults: Defaults,
) -> list[Variant]:
    """Every variant prepared and validated; SpecError naming the value that broke."""
    variants = expand_batch(base, field, parse_batch_values(values_text))
    planned: list[Variant] = []
    for variant in variants:
        try:
            planned.append(Variant(variant.label, prepare(variant.spec, options, defaults)))
        except SpecError as exc:
            raise exc.prefixed(f"with {field} = {variant.label}") from None
    return planned


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
                await find_template(bot, interaction.guild_id, template), vars, None
            )
        else:
            if vars:
                raise UserError("vars fill a template's placeholders; with json, edit the JSON.")
            base = parse_prompt_text(json or "")
        prefs = await preferences_for(
            bot.store, bot.settings, interaction.user.id, interaction.guild_id
        )
        options = RequestOptions(model=model, size=size, aspect=aspect)
        variants = plan_batch(base, field, values, options, prefs.defaults)
        added = not _has_path(base, field)
        # Limits for the whole batch, before anything is shown, queued or charged.
        _running, queued = bot.queue.user_load(interaction.user.id)
        limit = bot.settings.max_queued_per_user
        if queued + len(variants) > limit:
            room = max(0, limit - queued)
            raise UserError(
                f"This batch is {len(variants)} images, but you can queue only {room} more "
                f"right now (at most {limit} waiting at a time). Nothing was queued or charged; "
                "use fewer values or wait for your queued images to finish."
            )
        await check_quota(
            bot.store,
            bot.settings,
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            images=len(variants),
            cost=sum(estimate_cost(v.prepared.model, v.prepared.size) for v in variants),
        )
        await acknowledge(interaction, private=prefs.private)
        run = BatchRun(bot, interaction, field.strip(), variants, private=prefs.private)
        if added:
            run.notes.append(f"`{field.strip()}` was not in the spec, so it was added.")
        try:
            await run.start()
        except (UserError, SpecError) as exc:
            await fail_privately(interaction, str(exc))
            return
        await run.finish()


class BatchRun:
    """One batch after acknowledgement: queue it, show progress, post the contact sheet."""

    def __init__(
        self,
        bot: NanoBananaBot,
        interaction: discord.Interaction,
        field: str,
        variants: list[Variant],
        *,
        private: bool,
    ) -> None:
        self.bot = bot
        self.interaction = interaction
        self.field = field
        self.variants = variants
        self.private = private
        self.batch_id = uuid.uuid4().hex[:12]
        self.target = InteractionTarget(interaction, private=private)
        self.notes: list[str] = []
        self._changed = asyncio.Event()
        self._all_done = False
        self._shown: str | None = None

    async def start(self) -> None:
        """Resolve inputs and queue every variant, all or none (UserError / SpecError)."""
        resolver = RequestResolver(self.bot.store, user_id=self.interaction.user.id)
        items = []
        for variant in self.variants:
            inputs = await resolver.resolve_all(variant.prepared.spec)
            sub = Submission(
                user_id=self.interaction.user.id,
                guild_id=self.interaction.guild_id,
                channel_id=self.interaction.channel_id or 0,
                kind="batch",
                prepared=variant.prepared,
                inputs=inputs,
                batch_id=self.batch_id,
                private=self.private,
            )
            label = f"{self.field} = {variant.label}"
            items.append((sub, FollowupTarget(self.interaction, label=label, private=self.private)))
        # The "thinking…" message must become the progress message before any variant's
        # followup arrives: Discord would otherwise put the first result in its place.
        await self.interaction.edit_original_response(content=self._progress_text())
        gen_ids = await self.bot.generator.submit_many(items)
        for variant, gen_id in zip(self.variants, gen_ids, strict=True):
            variant.gen_id = gen_id
        log.info(
            "batch %s: %d variants of %s for user %s",
            self.batch_id,
            len(gen_ids),
            self.field,
            self.interaction.user.id,
        )

    async def finish(self) -> None:
        """Wait for every variant (showing progress), then post the contact sheet."""
        ticker = asyncio.create_task(self._keep_progress())
        try:
            await asyncio.gather(*(self._wait(v) for v in self.variants))
        finally:
            # A flag, not cancel(): the last edit must land before the contact sheet's.
            self._all_done = True
            self._changed.set()
            await ticker
        if self.bot.generator.shutting_down:
            return  # the variants resume after the restart, each in its own message
        await self._contact_sheet()

    async def _wait(self, variant: Variant) -> None:
        assert variant.gen_id is not None
        await self.bot.generator.wait_for(variant.gen_id)
        variant.finished = True
        self._changed.set()

    # ------------------------------------------------------------------ progress

    async def _keep_progress(self) -> None:
        interval = max(self.bot.settings.progress_interval_seconds, 0.5)
        while not self._all_done:
            self._changed.clear()
            await self._show(self._progress_text())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._changed.wait()

    async def _show(self, text: str) -> None:
        if text != self._shown:
            self._shown = text
            await self.target.show(text)

    def _progress_text(self) -> str:
        done = sum(v.finished for v in self.variants)
        total = len(self.variants)
        states = " · ".join(self._state(v) for v in self.variants)
        lines = [f"⏳ Batch on `{self.field}`: {done} of {total} finished", states, *self.notes]
        return truncate("\n".join(lines), 2000)

    def _state(self, variant: Variant) -> str:
        if variant.finished:
            return f"✔️ {variant.label}"
        job = (
            self.bot.generator.jobs_by_generation.get(variant.gen_id)
            if variant.gen_id is not None
            else None
        )
        if job is not None and job.state is JobState.RUNNING:
            return f"🎨 {variant.label}"
        if job is not None and job.position:
            return f"🕒 {variant.label} ({ordinal(job.position)} in line)"
        return f"🕒 {variant.label}"

    # ------------------------------------------------------------------ contact sheet

    async def _contact_sheet(self) -> None:
        made: list[tuple[Variant, GenerationRow, bytes]] = []
        problems: list[str] = []
        for variant in self.variants:
            assert variant.gen_id is not None
            gen = await self.bot.store.get_generation(variant.gen_id)
            stored = None
            if gen is not None and gen.status == "done" and gen.output_image:
                stored = await self.bot.store.get_image(gen.output_image)
            if gen is None or stored is None:
                problems.append(f"**{variant.label}** — {_why_not(gen)}")
                continue
            made.append((variant, gen, stored[0]))
        content = self._summary(made, problems)
        files: list[discord.File] = []
        if made:
            limit = min(SHEET_MAX_BYTES, self.target.upload_limit // 2)
            sheet = await asyncio.to_thread(
                imaging.contact_sheet,
                [(data, variant.label) for variant, _, data in made],
                limit_bytes=limit,
            )
            ext = "png" if sheet[:4] == b"\x89PNG" else "jpg"
            files.append(discord.File(io.BytesIO(sheet), filename=f"batch-contact-sheet.{ext}"))
        try:
            await self.target.finish(content=content, files=files)
        except discord.HTTPException:
            log.exception("batch %s: could not post the contact sheet", self.batch_id)

    def _summary(
        self, made: list[tuple[Variant, GenerationRow, bytes]], problems: list[str]
    ) -> str:
        total = len(self.variants)
        first = self.variants[0].prepared
        head = (
            f"🗂️ Batch on `{self.field}`: {len(made)} of {total} images "
            f"({model_display_name(first.model)}, {first.size})"
        )
        lines = [head]
        if made:
            lines.append(
                "Contact sheet, left to right: "
                + " · ".join(
                    f"{n}. {self._link(variant.label, gen)}"
                    for n, (variant, gen, _) in enumerate(made, 1)
                )
            )
        if problems:
            lines.append("Not made:")
            lines += [f"- {p}" for p in problems]
            lines.append("Each has a Retry button on its own message.")
        lines += self.notes
        return truncate("\n".join(lines), 2000)

    def _link(self, label: str, gen: GenerationRow) -> str:
        guild_id = self.interaction.guild_id
        if gen.private or gen.message_id is None or guild_id is None:
            return label
        url = f"https://discord.com/channels/{guild_id}/{gen.channel_id}/{gen.message_id}"
        return f"[{label}]({url})"


def _why_not(gen: GenerationRow | None) -> str:
    if gen is None:
        return "lost"
    if gen.status in ("queued", "running"):
        return "did not finish"
    reason = f": {truncate(gen.error, 200)}" if gen.error else ""
    icon = "🚫" if gen.status in ("blocked", "cancelled") else "❌"
    return f"{icon} {gen.status}{reason}"


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Batch(bot))
