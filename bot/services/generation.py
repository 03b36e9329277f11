"""The generation pipeline: spec -> queue -> gemini -> store -> post.

Callers build a `Submission` (a prepared spec with its resolved images) and a `Target`; this
service records it, queues it fairly, shows progress, calls the model, stores the result and
hands it to the poster. Every step that can fail ends in a message with a Retry button: a
request is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import discord
from google.genai import types

from bot.adapters.gemini import Failure, FailureKind, GeminiClient, Generation, content_to_json
from bot.adapters.prompts import compile_request
from bot.adapters.store import Store
from bot.config import Settings, estimate_cost
from bot.core.jobs import Job, JobQueue, JobState, QueueFull
from bot.core.metrics import Metrics
from bot.core.quotas import request_cost, reserve
from bot.core.submission import Submission, stored_spec
from bot.presentation.buttons import Action, action_view
from bot.presentation.embeds import progress_text
from bot.presentation.progress import ProgressUpdater
from bot.presentation.targets import Target
from bot.services.posting import ResultPoster

log = logging.getLogger(__name__)

BLOCKED_KINDS = {FailureKind.PROMPT_BLOCKED, FailureKind.OUTPUT_BLOCKED}


class Generator:
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        queue: JobQueue,
        gemini: GeminiClient,
        poster: ResultPoster,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.store = store
        self.settings = settings
        self.queue = queue
        self.gemini = gemini
        self.poster = poster
        self._jobs_by_generation: dict[int, Job] = {}
        # Set on shutdown: interrupted jobs stay open in the store and resume on next start.
        self.shutting_down = False
        self._watchers: set[asyncio.Task[None]] = set()
        # Job rows from this id on were created by this process: recover() (run at on_ready,
        # which can come after the first interactions) must not take them for leftovers.
        self.first_own_job_row: int | None = None

    # ------------------------------------------------------------------ submission

    async def submit(self, sub: Submission, target: Target) -> int:
        """Record and queue one generation. Raises UserError (queue full) before any charge."""
        self.queue.check_room(sub.user_id)
        # The quota is checked again here, atomically with the insert that reserves it.
        async with reserve(
            self.store,
            self.settings,
            user_id=sub.user_id,
            guild_id=sub.guild_id,
            images=1,
            cost=request_cost([sub.prepared]),
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
        job = self._jobs_by_generation.get(gen_id)
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
        self.queue.check_room(first.user_id, len(items))
        async with reserve(
            self.store,
            self.settings,
            user_id=first.user_id,
            guild_id=first.guild_id,
            images=len(items),
            cost=request_cost([s.prepared for s, _ in items]),
        ):
            gen_ids = [await self._record(sub) for sub, _ in items]
        built = [
            await self._build_job(gen_id, sub, target)
            for gen_id, (sub, target) in zip(gen_ids, items, strict=True)
        ]
        try:
            self.queue.submit_many([job for job, _ in built])
        except QueueFull as exc:
            await self._refused(zip(gen_ids, (job for job, _ in built), strict=True), exc)
            raise
        for gen_id, (job, updater), (_, target) in zip(gen_ids, built, items, strict=True):
            self._activate(gen_id, job, target, updater)
        return gen_ids

    def active(self) -> list[int]:
        """Generations queued or running in this process."""
        return list(self._jobs_by_generation)

    def job_state(self, gen_id: int) -> tuple[JobState, int | None] | None:
        """(state, place in line) of a generation queued in this process, if it still is."""
        job = self._jobs_by_generation.get(gen_id)
        return (job.state, job.position) if job is not None else None

    async def resume(self, gen_id: int, sub: Submission, target: Target) -> None:
        """Queue an already recorded generation again (after a restart), same id."""
        await self._enqueue(gen_id, sub, target)

    async def _enqueue(self, gen_id: int, sub: Submission, target: Target) -> Job:
        job, updater = await self._build_job(gen_id, sub, target)
        try:
            self.queue.submit(job)
        except QueueFull as exc:
            await self._refused([(gen_id, job)], exc)
            raise
        self._activate(gen_id, job, target, updater)
        return job

    async def _refused(self, jobs: Iterable[tuple[int, Job]], exc: QueueFull) -> None:
        """Recorded but refused by the queue (it closed meanwhile): cancelled, not charged."""
        for gen_id, job in jobs:
            await self.store.fail_generation(
                gen_id, status="cancelled", error_kind="queue_full", error=str(exc)
            )
            await self.store.update_job(job.data["job_row"], status="cancelled")

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
        if self.first_own_job_row is None:
            self.first_own_job_row = job_row

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
                    action_view(gen_id, [Action.CANCEL]),
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
        self._jobs_by_generation[gen_id] = job
        watcher = asyncio.create_task(self._watch(job, gen_id, target, updater))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        if job.on_update is not None:
            job.on_update(job)

    async def _watch(self, job: Job, gen_id: int, target: Target, updater: ProgressUpdater) -> None:
        """Ends every job with a message: cancelled, timed out or crashed ones included."""
        final = await self.queue.wait(job.id)
        self._jobs_by_generation.pop(gen_id, None)
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
                view=action_view(gen_id, [Action.RETRY]) if with_retry else None,
            )
        except discord.HTTPException:
            log.warning("could not report the end of generation %s", gen_id)

    async def settle(self, grace: float = 2.0) -> None:
        """At shutdown, after the queue stopped: let watchers finish their last edits."""
        if self._watchers:
            await asyncio.wait(set(self._watchers), timeout=grace)

    def cancel(self, gen_id: int) -> bool:
        job = self._jobs_by_generation.get(gen_id)
        if job is None:
            return False
        return self.queue.cancel(job.id)

    # ------------------------------------------------------------------ running

    async def _run(
        self, job: Job, gen_id: int, sub: Submission, target: Target, updater: ProgressUpdater
    ) -> None:
        await self.store.mark_running(gen_id)
        await self.store.update_job(job.data["job_row"], status="running")
        if job.started_at is not None:
            self.metrics.queue_wait.observe(max(0.0, job.started_at - job.submitted_at))
        compiled = compile_request(sub.prepared, [item.image for item in sub.inputs])
        started = time.monotonic()
        updater.set(progress_text(position=None, model=sub.prepared.model, elapsed=0), None)
        ticker = asyncio.create_task(self._tick(updater, sub.prepared.model, started))
        try:
            outcome = await self.gemini.generate(
                model=compiled.model,
                contents=[*sub.history, compiled.user_content()],
                config=compiled.config,
                size=compiled.size,
            )
        finally:
            ticker.cancel()
        await updater.close()
        model = sub.prepared.model
        self.metrics.model_latency.labels(model=model).observe(time.monotonic() - started)
        if isinstance(outcome, Failure):
            self.metrics.failures.labels(kind=str(outcome.kind)).inc()
            self.metrics.generations.labels(model=model, outcome="failed").inc()
            await self._report_failure(gen_id, sub, outcome, target)
            return
        self.metrics.generations.labels(model=model, outcome="done").inc()
        self.metrics.cost.labels(model=model).inc(outcome.cost)
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
            content=f"{icon} {failure.message}", view=action_view(gen_id, [Action.RETRY])
        )

    async def _complete(
        self, gen_id: int, sub: Submission, result: Generation, target: Target
    ) -> None:
        image = result.images[0]
        sha = await self.store.put_image(image.data, image.mime_type)
        async with self.poster.heavy:
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
        await self.poster.post(gen, image.data, image.mime_type, target)

def _content_json(content: types.Content | None) -> dict[str, Any] | None:
    return content_to_json(content) if content is not None else None
