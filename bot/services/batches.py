"""/batch after acknowledgement: queue every variant (all or none), show the batch's progress
in one message, and turn that message into the labelled contact sheet."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import discord

from bot.adapters import imaging
from bot.adapters.prompts import (
    Defaults,
    PreparedSpec,
    RequestOptions,
    SpecError,
    expand_batch,
    parse_batch_values,
    prepare,
)
from bot.adapters.store import GenerationRow, Store
from bot.config import Settings, model_display_name
from bot.core.resolver import RequestResolver
from bot.core.submission import Requester, Submission
from bot.presentation.buttons import Action, action_view
from bot.presentation.targets import (
    DiscordClient,
    FollowupTarget,
    InteractionTarget,
    ResumedTarget,
    Target,
)
from bot.presentation.text import jump_url, ordinal, truncate
from bot.services.generation import Generator

log = logging.getLogger(__name__)

SHEET_MAX_BYTES = 8 * 1024 * 1024


@dataclass
class Variant:
    label: str  # the value swapped in
    model: str
    size: str
    prepared: PreparedSpec | None = None  # None once resumed from the store
    gen_id: int | None = None
    finished: bool = False

    @classmethod
    def of(cls, label: str, prepared: PreparedSpec) -> Variant:
        return cls(label, prepared.model, prepared.size, prepared)


_MISSING = object()


def value_at(spec: dict[str, Any], path: str) -> Any:
    """The value at a dotted path ("product.color", "props.0.item"), or _MISSING."""
    node: Any = spec
    for part in path.split("."):
        part = part.strip()
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def has_path(spec: dict[str, Any], path: str) -> bool:
    return value_at(spec, path) is not _MISSING


def label_of(spec: dict[str, Any], field: str) -> str:
    value = value_at(spec, field)
    if value is _MISSING:
        return "?"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


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
            planned.append(Variant.of(variant.label, prepare(variant.spec, options, defaults)))
        except SpecError as exc:
            raise exc.prefixed(f"with {field} = {variant.label}") from None
    return planned


class BatchRun:
    """One batch after acknowledgement: queue every variant, all or none, then watch it."""

    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        generator: Generator,
        interaction: discord.Interaction,
        field: str,
        variants: list[Variant],
        private: bool,
    ) -> None:
        self.store = store
        self.settings = settings
        self.generator = generator
        self.interaction = interaction
        self.field = field
        self.variants = variants
        self.private = private
        self.batch_id = uuid.uuid4().hex[:12]
        self.target = InteractionTarget(interaction, private=private)
        self.notes: list[str] = []
        self.progress = BatchProgress(
            settings=settings,
            generator=generator,
            target=self.target,
            field=field,
            variants=variants,
            notes=self.notes,
        )

    async def start(self) -> None:
        """Resolve inputs and queue every variant, all or none (UserError / SpecError)."""
        resolver = RequestResolver(self.store, user_id=self.interaction.user.id)
        requester = Requester(
            self.interaction.user.id, self.interaction.guild_id, self.interaction.channel_id or 0
        )
        # The "thinking…" message must become the progress message before any variant's
        # followup arrives: Discord would otherwise put the first result in its place.
        shown = await self.interaction.edit_original_response(
            content=self.progress.progress_text()
        )
        self.target.message_id = shown.id
        # Each variant's job carries the batch, so that a restart resumes it as a batch.
        batch = {
            "id": self.batch_id,
            "field": self.field,
            "notes": list(self.notes),
            "progress": self.target.resume_info(),
        }
        items = []
        for variant in self.variants:
            assert variant.prepared is not None
            inputs = await resolver.resolve_all(
                variant.prepared.spec, model=variant.prepared.model
            )
            sub = Submission.build(
                requester,
                kind="batch",
                prepared=variant.prepared,
                inputs=inputs,
                batch_id=self.batch_id,
                private=self.private,
            )
            label = f"{self.field} = {variant.label}"
            target = FollowupTarget(
                self.interaction, label=label, private=self.private, batch=batch
            )
            items.append((sub, target))
        gen_ids = await self.generator.submit_many(items)
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
        await self.progress.watch()


FINAL = ("done", "failed", "cancelled", "interrupted")


class BatchProgress:
    """Shows a queued batch's progress in one message, with Cancel batch while a variant
    waits, until every variant has ended (wherever it ran). The contact sheet that then
    replaces it is posted by whichever process ends the last variant (BatchSheets)."""

    def __init__(
        self,
        *,
        settings: Settings,
        generator: Generator,
        target: Target,
        field: str,
        variants: list[Variant],
        notes: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.generator = generator
        self.target = target
        self.field = field
        self.variants = variants
        self.notes = notes if notes is not None else []
        self._states: dict[int, tuple[str, int | None]] = {}
        self._shown: tuple[str, bool] | None = None

    async def watch(self) -> None:
        """Until every variant has ended (or this process stops)."""
        interval = max(self.settings.progress_interval_seconds, 0.5)
        while not self.generator.shutting_down:
            ids = [v.gen_id for v in self.variants if v.gen_id is not None]
            self._states = await self.generator.progress_of(ids)
            for variant in self.variants:
                state = self._states.get(variant.gen_id or 0)
                variant.finished = state is None or state[0] in FINAL
            if all(v.finished for v in self.variants):
                return  # no edit now: the contact sheet takes this message over
            waiting = any(state[0] == "queued" for state in self._states.values())
            await self._show(self.progress_text(), cancellable=waiting)
            await asyncio.sleep(interval)

    async def _show(self, text: str, *, cancellable: bool = False) -> None:
        if (text, cancellable) != self._shown:
            self._shown = (text, cancellable)
            first = self.variants[0].gen_id
            view = (
                action_view(first, [Action.CANCEL_BATCH])
                if cancellable and first is not None
                else None
            )
            await self.target.show(text, view=view)

    def progress_text(self) -> str:
        done = sum(v.finished for v in self.variants)
        total = len(self.variants)
        states = " · ".join(self._state(v) for v in self.variants)
        lines = [f"⏳ Batch on `{self.field}`: {done} of {total} finished", states, *self.notes]
        return truncate("\n".join(lines), 2000)

    def _state(self, variant: Variant) -> str:
        if variant.finished:
            return f"✔️ {variant.label}"
        status, place = self._states.get(variant.gen_id or 0, ("queued", None))
        if status in ("running", "posting"):
            return f"🎨 {variant.label}"
        if place:
            return f"🕒 {variant.label} ({ordinal(place)} in line)"
        return f"🕒 {variant.label}"


class BatchSheets:
    """Posts a batch's contact sheet once its last variant has ended: in the batch's own
    message, by whichever process ended it (the database lets exactly one post it)."""

    def __init__(self, *, store: Store, client: DiscordClient, worker_id: str) -> None:
        self.store = store
        self.client = client
        self.worker_id = worker_id

    async def group_ended(self, group_id: str) -> None:
        jobs = await self.store.group_jobs(group_id)
        if not jobs or any(job.status not in FINAL for job in jobs):
            return
        info = jobs[0].payload.get("batch")
        if not isinstance(info, dict):
            return  # a group that is not a /batch
        if not await self.store.claim_batch_sheet(group_id, self.worker_id):
            return  # another process is posting it
        field = str(info.get("field") or "")
        gens = [await self.store.get_generation(job.generation_id) for job in jobs]
        variants = [
            Variant(label_of(gen.spec, field), gen.model, gen.size, gen_id=gen.id)
            for gen in gens
            if gen is not None
        ]
        target = ResumedTarget(
            self.client, dict(info.get("progress") or {}), user_id=jobs[0].user_id
        )
        await post_contact_sheet(
            self.store,
            target,
            batch_id=group_id,
            field=field,
            variants=variants,
            guild_id=jobs[0].guild_id,
            notes=[str(n) for n in info.get("notes") or []],
        )


async def post_contact_sheet(
    store: Store,
    target: Target,
    *,
    batch_id: str,
    field: str,
    variants: list[Variant],
    guild_id: int | None,
    notes: list[str],
) -> None:
    """The labelled contact sheet of the variants that were made, and what became of the
    others, in the batch's message."""
    made: list[tuple[Variant, GenerationRow, bytes]] = []
    problems: list[str] = []
    for variant in variants:
        assert variant.gen_id is not None
        gen = await store.get_generation(variant.gen_id)
        stored = None
        if gen is not None and gen.status == "done" and gen.output_image:
            stored = await store.get_image(gen.output_image)
        if gen is None or stored is None:
            problems.append(f"**{variant.label}** — {_why_not(gen)}")
            continue
        made.append((variant, gen, stored[0]))
    content = _summary(field, variants, made, problems, notes, guild_id)
    files: list[discord.File] = []
    if made:
        limit = min(SHEET_MAX_BYTES, target.upload_limit // 2)
        sheet = await asyncio.to_thread(
            imaging.contact_sheet,
            [(data, variant.label) for variant, _, data in made],
            limit_bytes=limit,
        )
        ext = "png" if sheet[:4] == b"\x89PNG" else "jpg"
        files.append(discord.File(io.BytesIO(sheet), filename=f"batch-contact-sheet.{ext}"))
    try:
        await target.finish(content=content, files=files)
    except discord.HTTPException:
        log.exception("batch %s: could not post the contact sheet", batch_id)


def _summary(
    field: str,
    variants: list[Variant],
    made: list[tuple[Variant, GenerationRow, bytes]],
    problems: list[str],
    notes: list[str],
    guild_id: int | None,
) -> str:
    first = variants[0]
    head = (
        f"🗂️ Batch on `{field}`: {len(made)} of {len(variants)} images "
        f"({model_display_name(first.model)}, {first.size})"
    )
    lines = [head]
    if made:
        lines.append(
            "Contact sheet, left to right: "
            + " · ".join(
                f"{n}. {_link(variant.label, gen, guild_id)}"
                for n, (variant, gen, _) in enumerate(made, 1)
            )
        )
    if problems:
        lines.append("Not made:")
        lines += [f"- {p}" for p in problems]
        lines.append("Each has a Retry button on its own message.")
    lines += notes
    return truncate("\n".join(lines), 2000)


def _link(label: str, gen: GenerationRow, guild_id: int | None) -> str:
    if gen.private or gen.message_id is None or guild_id is None:
        return label
    return f"[{label}]({jump_url(guild_id, gen.channel_id, gen.message_id)})"


async def cancel_batch(store: Store, generator: Generator, batch_id: str) -> tuple[int, int]:
    """Cancel every variant of a batch still waiting; (cancelled, still running)."""
    cancelled = running = 0
    for gen in await store.batch_generations(batch_id):
        if await generator.cancel(gen.id):
            cancelled += 1
        elif gen.status in ("queued", "running"):
            running += 1
    return cancelled, running


def _why_not(gen: GenerationRow | None) -> str:
    if gen is None:
        return "lost"
    if gen.status in ("queued", "running"):
        return "did not finish"
    reason = f": {truncate(gen.error, 200)}" if gen.error else ""
    icon = "🚫" if gen.status in ("blocked", "cancelled") else "❌"
    return f"{icon} {gen.status}{reason}"


