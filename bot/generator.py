"""The generation pipeline: spec -> queue -> gemini -> imaging -> post -> store.

Cogs build a `Submission` (a prepared spec with its resolved images) and a `Target`; this
module records it, queues it fairly, shows progress, calls the model, fits the image to the
upload limit, posts the result with its buttons and records usage. Every step that can fail
ends in a message with a Retry button: a request is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord
from google.genai import types

from bot.adapters import imaging
from bot.adapters.gemini import Failure, FailureKind, Generation
from bot.adapters.prompts import (
    Defaults,
    ResolvedImage,
    SpecError,
    compile_request,
    prepare,
)
from bot.config import estimate_cost
from bot.errors import UserError
from bot.jobs import Job, JobQueue, JobState, QueueFull
from bot.progress import ProgressUpdater
from bot.quotas import reserve
from bot.submission import InputImage, Submission, public_spec, stored_spec
from bot.targets import ResumedTarget, Target
from bot.ui import action_view, progress_text, result_actions, result_embed

if TYPE_CHECKING:
    from bot.adapters.store import GenerationRow
    from bot.client import NanoBananaBot

log = logging.getLogger(__name__)

# Results processed at once (stored content, fit to the upload limit): each 4K one needs
# ~120 MB while it is worked on and the work is CPU-bound. Half the cores: the rest keep the
# event loop, Gemini's answers and Discord uploads moving; twenty 4K answers arriving
# together then stay within a few hundred MB.
HEAVY_SLOTS = max(1, (os.cpu_count() or 2) // 2)

BLOCKED_KINDS = {FailureKind.PROMPT_BLOCKED, FailureKind.OUTPUT_BLOCKED}


class Generator:
    def __init__(self, bot: NanoBananaBot) -> None:
        self.bot = bot
        self.settings = bot.settings
        self.store = bot.store
        self.queue: JobQueue = bot.queue
        self.jobs_by_generation: dict[int, Job] = {}
        # Set on shutdown: interrupted jobs stay open in the store and resume on next start.
        self.shutting_down = False
        self._watchers: set[asyncio.Task[None]] = set()
        # Job rows from this id on were created by this process: recover() (run at on_ready,
        # which can come after the first interactions) must not take them for leftovers.
        self._first_own_job_row: int | None = None
        self._heavy = asyncio.Semaphore(HEAVY_SLOTS)

    # ------------------------------------------------------------------ submission

    async def submit(self, sub: Submission, target: Target) -> int:
        """Record and queue one generation. Raises UserError (queue full) before any charge."""
        _running, queued = self.queue.user_load(sub.user_id)
        if queued >= self.settings.max_queued_per_user:
            raise UserError(
                f"You already have {queued} requests waiting; "
                "wait for some to finish or cancel one."
            )
        # The quota is checked again here, atomically with the insert that reserves it.
        async with reserve(
            self.store,
            self.settings,
            user_id=sub.user_id,
            guild_id=sub.guild_id,
            images=1,
            cost=estimate_cost(sub.prepared.model, sub.prepared.size),
        ):
            gen_id = await self._record(sub)
        await self._enqueue(gen_id, sub, target)
        return gen_id

    async def _record(self, sub: Submission) -> int:
        prepared = sub.prepared
        gen_id = await self.store.create_generation(
            user_id=sub.user_id,
            guild_id=sub.guild_id,
            channel_id=sub.channel_id,
            kind=sub.kind,
            spec=stored_spec(prepared, sub.inputs),
            model=prepared.model,
            size=prepared.size,
            aspect=prepared.aspect,
            summary=prepared.summary(),
            input_images=[item.sha for item in sub.inputs],
            chain_id=sub.chain_id,
            parent_id=sub.parent_id,
            batch_id=sub.batch_id,
            private=sub.private,
            estimated_cost=estimate_cost(prepared.model, prepared.size),
        )
        if sub.chain_id is not None and sub.parent_id is not None:
            await self.store.add_chain_step(
                chain_id=sub.chain_id, generation_id=gen_id, parent_generation_id=sub.parent_id
            )
        return gen_id

    async def wait_for(self, gen_id: int) -> None:
        """Until generation gen_id (queued in this process) has ended, however it ended."""
        job = self.jobs_by_generation.get(gen_id)
        if job is not None:
            await self.queue.wait(job.id)
            # let _watch record the outcome first
            await asyncio.sleep(0)

    async def submit_many(self, items: Sequence[tuple[Submission, Target]]) -> list[int]:
        """Record and queue one user's group (a batch) atomically: all of it is queued, or
        UserError and none is. Queue room and quota are checked for the whole group at once."""
        if not items:
            return []
        first = items[0][0]
        _running, queued = self.queue.user_load(first.user_id)
        limit = self.settings.max_queued_per_user
        if queued + len(items) > limit:
            raise UserError(
                f"That is {len(items)} images and you have {max(0, limit - queued)} of your "
                f"{limit} queue places free; wait for some to finish or use fewer values."
            )
        async with reserve(
            self.store,
            self.settings,
            user_id=first.user_id,
            guild_id=first.guild_id,
            images=len(items),
            cost=sum(estimate_cost(s.prepared.model, s.prepared.size) for s, _ in items),
        ):
            gen_ids = [await self._record(sub) for sub, _ in items]
        built = [
            await self._build_job(gen_id, sub, target)
            for gen_id, (sub, target) in zip(gen_ids, items, strict=True)
        ]
        try:
            self.queue.submit_many([job for job, _ in built])
        except QueueFull as exc:
            for gen_id, (job, _) in zip(gen_ids, built, strict=True):
                await self.store.fail_generation(
                    gen_id, status="cancelled", error_kind="queue_full", error=str(exc)
                )
                await self.store.update_job(job.data["job_row"], status="cancelled")
            raise UserError(str(exc)) from None
        for gen_id, (job, updater), (_, target) in zip(gen_ids, built, items, strict=True):
            self._activate(gen_id, job, target, updater)
        return gen_ids

    async def _enqueue(self, gen_id: int, sub: Submission, target: Target) -> Job:
        job, updater = await self._build_job(gen_id, sub, target)
        try:
            self.queue.submit(job)
        except QueueFull as exc:
            await self.store.fail_generation(
                gen_id, status="cancelled", error_kind="queue_full", error=str(exc)
            )
            await self.store.update_job(job.data["job_row"], status="cancelled")
            raise UserError(str(exc)) from None
        self._activate(gen_id, job, target, updater)
        return job

    async def _build_job(
        self, gen_id: int, sub: Submission, target: Target
    ) -> tuple[Job, ProgressUpdater]:
        """The job for a recorded generation, with its row in the store; not queued yet."""
        model = sub.prepared.model
        created = time.time()
        job_row = await self.store.create_job(
            generation_id=gen_id,
            user_id=sub.user_id,
            payload={**target.resume_info(), "created_at": created},
        )
        if self._first_own_job_row is None:
            self._first_own_job_row = job_row

        async def remember_message() -> None:
            # Once the progress message exists, a restart can carry on in it.
            await self.store.update_job(
                job_row, payload={**target.resume_info(), "created_at": created}
            )

        updater = ProgressUpdater(
            target, self.settings.progress_interval_seconds, on_message=remember_message
        )

        def on_update(job: Job) -> None:
            if job.state is JobState.QUEUED:
                updater.set(
                    progress_text(position=job.position, model=model, elapsed=None),
                    action_view(gen_id, ["cancel"]),
                )

        async def run(job: Job) -> None:
            await self._run(job, gen_id, sub, target, updater)

        job = Job(
            user_id=sub.user_id,
            run=run,
            timeout=self.settings.timeout_for(sub.prepared.size) * 2 + 30,
            serial_key=f"chain:{sub.chain_id}" if sub.chain_id else None,
            on_update=on_update,
            label=f"generation {gen_id}",
            data={"generation_id": gen_id},
        )
        job.data["job_row"] = job_row
        return job, updater

    def _activate(self, gen_id: int, job: Job, target: Target, updater: ProgressUpdater) -> None:
        """A queued job: track it, watch for its end, show its place in line."""
        self.jobs_by_generation[gen_id] = job
        watcher = asyncio.create_task(self._watch(job, gen_id, target, updater))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        if job.on_update is not None:
            job.on_update(job)

    async def _watch(self, job: Job, gen_id: int, target: Target, updater: ProgressUpdater) -> None:
        """Ends every job with a message: cancelled, timed out or crashed ones included."""
        final = await self.queue.wait(job.id)
        self.jobs_by_generation.pop(gen_id, None)
        await updater.close()
        row = job.data["job_row"]
        if self.shutting_down:
            # Left open in the store: recover() resumes it on the next start. Say so, rather
            # than leave "Generating… 12 s" standing still (unless the result is already out).
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    gen = await self.store.get_generation(gen_id)
                    if gen is not None and gen.status in ("queued", "running"):
                        await target.show(
                            "⏸️ The bot is restarting; this request continues when it is back."
                        )
            return
        if final.state is JobState.DONE:
            await self.store.update_job(row, status="done")
            return
        status, kind, text = {
            JobState.CANCELLED: ("cancelled", "cancelled", "Cancelled. Nothing was charged."),
            JobState.TIMED_OUT: (
                "failed",
                "timed_out",
                "This took too long and was stopped. Nothing was charged; try again, "
                "perhaps at a smaller size.",
            ),
        }.get(
            final.state,
            ("failed", "internal", "Something went wrong on our side. Nothing was charged."),
        )
        if final.state is JobState.FAILED:
            log.error("generation %s crashed (user %s)", gen_id, job.user_id, exc_info=final.error)
        await self.store.update_job(row, status=status)
        gen = await self.store.get_generation(gen_id)
        if gen is not None and gen.status in ("queued", "running"):
            await self.store.fail_generation(gen_id, status=status, error_kind=kind, error=text)
        elif gen is not None and gen.status == "done":
            # The image was made (and counted) but posting it failed: it is not lost.
            text = (
                f"Your image #{gen_id} was made but could not be posted here; "
                f"/history id:{gen_id} shows it."
            )
        with_retry = final.state is not JobState.CANCELLED and not (
            gen is not None and gen.status == "done"
        )
        try:
            await target.finish(
                content=f"❌ {text}" if with_retry else f"🚫 {text}",
                view=action_view(gen_id, ["retry"]) if with_retry else None,
            )
        except discord.HTTPException:
            log.warning("could not report the end of generation %s", gen_id)

    async def settle(self, grace: float = 2.0) -> None:
        """At shutdown, after the queue stopped: let watchers finish their last edits."""
        if self._watchers:
            await asyncio.wait(set(self._watchers), timeout=grace)

    def cancel(self, gen_id: int) -> bool:
        job = self.jobs_by_generation.get(gen_id)
        if job is None:
            return False
        return self.queue.cancel(job.id)

    # ------------------------------------------------------------------ running

    async def _run(
        self, job: Job, gen_id: int, sub: Submission, target: Target, updater: ProgressUpdater
    ) -> None:
        await self.store.mark_running(gen_id)
        await self.store.update_job(job.data["job_row"], status="running")
        compiled = compile_request(sub.prepared, [item.image for item in sub.inputs])
        started = time.monotonic()
        updater.set(progress_text(position=None, model=sub.prepared.model, elapsed=0), None)
        ticker = asyncio.create_task(self._tick(updater, sub.prepared.model, started))
        try:
            outcome = await self.bot.gemini.generate(
                model=compiled.model,
                contents=[*sub.history, compiled.user_content()],
                config=compiled.config,
                size=compiled.size,
            )
        finally:
            ticker.cancel()
        await updater.close()
        if isinstance(outcome, Failure):
            await self._report_failure(gen_id, sub, outcome, target)
            return
        await self._complete(gen_id, sub, outcome, target)

    async def _tick(self, updater: ProgressUpdater, model: str, started: float) -> None:
        interval = self.settings.progress_interval_seconds
        while True:
            await asyncio.sleep(interval)
            elapsed = time.monotonic() - started
            updater.set(progress_text(position=None, model=model, elapsed=elapsed), None)

    async def _report_failure(
        self, gen_id: int, sub: Submission, failure: Failure, target: Target
    ) -> None:
        status = "blocked" if failure.kind in BLOCKED_KINDS else "failed"
        await self.store.fail_generation(
            gen_id, status=status, error_kind=str(failure.kind), error=failure.message
        )
        log.info(
            "generation %s %s for user %s: %s (%s)",
            gen_id,
            status,
            sub.user_id,
            failure.kind,
            failure.detail,
        )
        icon = "🚫" if status == "blocked" else "❌"
        await target.finish(
            content=f"{icon} {failure.message}", view=action_view(gen_id, ["retry"])
        )

    async def _complete(
        self, gen_id: int, sub: Submission, result: Generation, target: Target
    ) -> None:
        image = result.images[0]
        sha = await self.store.put_image(image.data, image.mime_type)
        async with self._heavy:
            await self.store.finish_generation(
                gen_id,
                output_image=sha,
                output_mime=image.mime_type,
                model_text=result.text,
                # base64 of a 4K image (~50 ms of CPU, ~35 MB with the store's decoding):
                # off the event loop, and only HEAVY_SLOTS at a time
                model_content=await asyncio.to_thread(_content_json, result.content),
                prompt_tokens=result.usage.prompt_tokens,
                output_tokens=result.usage.output_tokens,
                thoughts_tokens=result.usage.thoughts_tokens,
                cost=result.cost,
                model_version=result.model_version,
                seconds=result.latency,
                warnings=list(sub.prepared.warnings) + list(sub.prepared.overrides),
            )
        await self.store.record_usage(
            user_id=sub.user_id,
            guild_id=sub.guild_id,
            model=result.model,
            images=1,
            cost=result.cost,
        )
        if sub.chain_id is not None:
            await self.store.set_chain_head(sub.chain_id, gen_id)
        gen = await self.store.get_generation(gen_id)
        assert gen is not None
        await self.post_result(gen, image.data, image.mime_type, target)

    async def post_result(
        self, gen: GenerationRow, data: bytes, mime_type: str, target: Target
    ) -> discord.Message | None:
        """Post (or re-post) a finished generation with its buttons."""
        limit = target.upload_limit
        for _attempt in range(3):
            async with self._heavy:
                fitted = await asyncio.to_thread(
                    imaging.fit_to_limit, data, mime_type, limit_bytes=limit
                )
            filename = f"nano-banana-{gen.id}.{fitted.extension}"
            parent_step = None
            if gen.parent_id is not None:
                parent = await self.store.get_generation(gen.parent_id)
                parent_step = parent.step if parent else None
            embed = result_embed(
                gen, image_filename=filename, fit_note=fitted.note, parent_step=parent_step
            )
            spec_json = json.dumps(public_spec(gen.spec, owner_view=gen.private), indent=2)
            files = [
                discord.File(io.BytesIO(fitted.data), filename=filename),
                discord.File(io.BytesIO(spec_json.encode()), filename="prompt.json"),
            ]
            view = action_view(gen.id, result_actions(in_chain=gen.chain_id is not None))
            try:
                message = await target.finish(content=None, embed=embed, files=files, view=view)
            except discord.HTTPException as exc:
                if exc.status == 413 or exc.code == 40005:
                    limit = limit // 2  # the channel's real limit is lower than we were told
                    log.warning(
                        "upload refused at %d bytes for %s; retrying smaller", limit, gen.id
                    )
                    continue
                raise
            # A private copy of a public result (a /history re-post) must not replace the
            # public message that links and replies point at.
            if message is not None and (gen.private or not target.private):
                await self.store.set_generation_message(
                    gen.id,
                    message_id=message.id,
                    channel_id=message.channel.id,
                    public=not gen.private,
                )
            return message
        raise UserError("The image could not be uploaded to this channel.")

    # ------------------------------------------------------------------ re-running

    async def submission_from(
        self,
        gen: GenerationRow,
        *,
        kind: str,
        user_id: int,
        channel_id: int,
        guild_id: int | None,
        private: bool,
        spec_override: dict[str, Any] | None = None,
    ) -> Submission:
        """Rebuild a submission from a stored generation (reroll, retry, restart recovery)."""
        spec = dict(spec_override if spec_override is not None else gen.spec)
        metadata = dict(spec.get("metadata") or {})
        resolved = metadata.pop("resolved_inputs", [])
        if metadata:
            spec["metadata"] = metadata
        else:
            spec.pop("metadata", None)
        inputs: list[InputImage] = []
        for item in resolved:
            stored = await self.store.get_image(item["sha"])
            if stored is None:
                raise UserError(
                    "An image this request used is no longer stored (past retention or deleted)."
                )
            data, mime = stored
            inputs.append(
                InputImage(
                    ResolvedImage(
                        data=data,
                        mime_type=mime,
                        description=item["description"],
                        anchor_kind=item.get("anchor_kind"),
                    ),
                    item["sha"],
                )
            )
        try:
            prepared = prepare(
                spec, None, Defaults(model=gen.model, size=gen.size, aspect=gen.aspect)
            )
        except SpecError as exc:
            raise UserError(str(exc)) from None
        history: list[types.Content] = []
        if gen.chain_id is not None and gen.parent_id is not None:
            from bot.chains import build_history

            history = await build_history(self, gen.parent_id)
        return Submission(
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            kind=kind,
            prepared=prepared,
            inputs=inputs,
            history=history,
            chain_id=gen.chain_id,
            parent_id=gen.parent_id,
            private=private,
        )

    async def recover(self) -> None:
        """After a restart: every job the last process left open is resumed in the message
        that showed it, or its result or failure is delivered; never silently dropped.

        A row is closed only once its job was handled, so a shutdown during recovery leaves
        the rest for the next start (a generation seen twice is handled once)."""
        seen: set[int] = set()
        for row in await self.store.open_jobs():
            if self._first_own_job_row is not None and row.id >= self._first_own_job_row:
                continue  # queued by this process before on_ready: not a leftover
            gen = await self.store.get_generation(row.generation_id)
            if gen is not None and gen.id not in seen:
                seen.add(gen.id)
                info = {"channel_id": gen.channel_id, "private": gen.private, **row.payload}
                target = ResumedTarget(self.bot, info, user_id=gen.user_id)
                try:
                    await self._recover_one(gen, target)
                except Exception:  # one bad record must not stop the others, nor the bot
                    log.exception("could not recover generation %s", gen.id)
                    with contextlib.suppress(Exception):
                        await self.store.fail_generation(
                            gen.id,
                            status="failed",
                            error_kind="interrupted",
                            error="The bot restarted and could not resume this.",
                        )
                        await target.finish(
                            content="❌ The bot restarted before this finished and could not "
                            "resume it. Nothing was charged.",
                            view=action_view(gen.id, ["retry"]),
                        )
            await self.store.update_job(row.id, status="interrupted")

    async def _recover_one(self, gen: GenerationRow, target: ResumedTarget) -> None:
        if gen.status in ("queued", "running"):
            try:
                sub = await self.submission_from(
                    gen,
                    kind=gen.kind,
                    user_id=gen.user_id,
                    channel_id=target.channel_id,
                    guild_id=gen.guild_id,
                    private=gen.private,
                )
                # Same generation id: the request, its chain step and its buttons stay one.
                await self._enqueue(gen.id, sub, target)
                log.info("resumed generation %s after a restart", gen.id)
            except UserError as exc:
                await self.store.fail_generation(
                    gen.id, status="failed", error_kind="interrupted", error=str(exc)
                )
                await target.finish(
                    content="❌ The bot restarted before this finished and could not resume it: "
                    f"{exc}",
                    view=action_view(gen.id, ["retry"]),
                )
            return
        if gen.status == "done" and gen.message_id is None and gen.output_image:
            # Finished just before the restart, but never shown: post it now.
            stored = await self.store.get_image(gen.output_image)
            if stored is not None:
                await self.post_result(gen, stored[0], stored[1], target)
                return
        if gen.status in ("failed", "blocked"):
            await target.finish(
                content=f"❌ {gen.error or 'This request failed.'}",
                view=action_view(gen.id, ["retry"]),
            )


def _content_json(content: types.Content | None) -> dict[str, Any] | None:
    if content is None:
        return None
    from bot.adapters.gemini import content_to_json

    return content_to_json(content)
