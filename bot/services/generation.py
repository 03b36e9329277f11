"""The generation pipeline: admit -> claim -> gemini -> store -> post.

Callers build a `Submission` (a prepared spec with its resolved images) and a `Target`; this
service records it in the database (admission decides the user's queue room and quotas in the
same transaction), and the dispatcher of whichever process the database picks runs it: it
calls the model, stores the result and hands it to the poster. The process that admitted a
job keeps its live target and shows its place in line; any other process that runs it
carries on in the same message from what the job row remembers. Every step that can fail
ends in a message with a Retry button: a request is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import discord
from google.genai import types

from bot.adapters.gemini import Failure, FailureKind, GeminiClient, Generation, content_to_json
from bot.adapters.imaging import FittedImage
from bot.adapters.prompts import compile_request
from bot.adapters.store import GenerationRow, JobRow, NewJob, Refused, Store
from bot.adapters.store import content as stored_content
from bot.config import Settings, estimate_cost
from bot.core.dispatch import Dispatcher, DispatchLimits
from bot.core.metrics import Metrics
from bot.core.quotas import admit_limits, refusal_error
from bot.core.recovery import Recovery, decide
from bot.core.replay import replay_submission
from bot.core.submission import Requester, Submission, stored_spec
from bot.errors import UserError
from bot.presentation.buttons import Action, action_view
from bot.presentation.embeds import progress_text
from bot.presentation.progress import ProgressUpdater
from bot.presentation.targets import DiscordClient, ResumedTarget, Target
from bot.services.posting import ResultPoster

log = logging.getLogger(__name__)

BLOCKED_KINDS = {FailureKind.PROMPT_BLOCKED, FailureKind.OUTPUT_BLOCKED}
OPEN_JOB_STATUSES = ("queued", "running")
RESTARTING = "⏸️ The bot is restarting; this request continues when it is back."
CANCELLED = "🚫 Cancelled. Nothing was charged."
TIMED_OUT = (
    "This took too long and was stopped. Nothing was charged; try again, perhaps at a smaller size."
)
CRASHED = "Something went wrong on our side. Nothing was charged."


@dataclass
class LocalJob:
    """A job this process admitted: its live target (the interaction) and the submission as
    built, so that running it here needs no round trip through the store."""

    job_id: int
    gen_id: int
    sub: Submission
    target: Target
    updater: ProgressUpdater
    started: bool = False  # claimed by this process


class Generator:
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        gemini: GeminiClient,
        poster: ResultPoster,
        client: DiscordClient,
        metrics: Metrics | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.gemini = gemini
        self.poster = poster
        self.client = client
        self.metrics = metrics or Metrics()
        self.dispatcher = Dispatcher(
            store=store,
            limits=DispatchLimits(
                concurrency=settings.max_concurrent_jobs,
                max_running_per_user=settings.max_running_per_user,
                lease_seconds=settings.job_lease_seconds,
                poll_seconds=settings.job_poll_seconds,
            ),
            run=self._run_claimed,
            worker_id=worker_id,
        )
        self._local: dict[int, LocalJob] = {}  # job id -> what this process knows of it
        self._ended: dict[int, asyncio.Event] = {}  # generation id -> set when it ends here
        self._positions_changed = asyncio.Event()
        self._positions: asyncio.Task[None] | None = None
        self.shutting_down = False
        # Told when every job of a group (a batch) has ended, here or elsewhere.
        self.group_ended: Callable[[str], Awaitable[None]] | None = None

    @property
    def worker_id(self) -> str:
        return self.dispatcher.worker_id

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.dispatcher.start()
        self._positions = asyncio.create_task(self._show_positions(), name="queue-positions")

    async def stop(self, *, grace: float = 2.0) -> None:
        """Stop running and claiming: jobs held here go back in line (any process resumes
        them, in the same message); their messages say the bot is restarting."""
        self.shutting_down = True
        if self._positions is not None:
            self._positions.cancel()
        handed_back = await self.dispatcher.stop(grace=grace)
        if handed_back:
            log.info("%d jobs handed back to the queue by shutdown", len(handed_back))
        waiting = [local for local in self._local.values() if not local.started]
        with contextlib.suppress(Exception):
            async with asyncio.timeout(grace):
                for local in waiting:
                    await local.updater.close()
                    await local.target.show(RESTARTING)

    # ------------------------------------------------------------------ submission

    async def submit(self, sub: Submission, target: Target, *, intake_id: int | None = None) -> int:
        """Record and queue one generation. UserError (queue full, over quota) before any
        charge."""
        return (await self.submit_many([(sub, target)], intake_id=intake_id))[0]

    async def submit_many(
        self, items: Sequence[tuple[Submission, Target]], *, intake_id: int | None = None
    ) -> list[int]:
        """Record and queue one user's group (a batch) in one transaction: all of it, or
        UserError and none. Queue room and quotas are decided for the whole group at once."""
        if not items:
            return []
        first = items[0][0]
        created = time.time()
        result = await self.store.admit(
            user_id=first.user_id,
            guild_id=first.guild_id,
            jobs=[self._new_job(sub, target, created) for sub, target in items],
            limits=await admit_limits(self.store, self.settings, first.guild_id),
            group_id=first.batch_id,
            intake_id=intake_id,
        )
        if isinstance(result, Refused):
            raise refusal_error(result)
        for (sub, target), gen_id, job_id in zip(
            items, result.generation_ids, result.job_ids, strict=True
        ):
            if sub.chain_id is not None and sub.parent_id is not None:
                await self.store.add_chain_step(
                    chain_id=sub.chain_id, generation_id=gen_id, parent_generation_id=sub.parent_id
                )
            updater = ProgressUpdater(
                target,
                self.settings.progress_interval_seconds,
                on_message=self._remember_message(
                    job_id, target, {**target.resume_info(), "created_at": created}
                ),
            )
            self._local[job_id] = LocalJob(job_id, gen_id, sub, target, updater)
            self._ended[gen_id] = asyncio.Event()
        await self.dispatcher.claim_now()
        self._positions_changed.set()
        return list(result.generation_ids)

    def _new_job(self, sub: Submission, target: Target, created: float) -> NewJob:
        prepared = sub.prepared
        return NewJob(
            channel_id=sub.channel_id,
            kind=sub.kind,
            spec=stored_spec(prepared, sub.inputs),
            model=prepared.model,
            size=prepared.size,
            aspect=prepared.aspect,
            summary=prepared.summary(),
            payload={**target.resume_info(), "created_at": created},
            input_images=[item.sha for item in sub.inputs],
            chain_id=sub.chain_id,
            parent_id=sub.parent_id,
            batch_id=sub.batch_id,
            private=sub.private,
            estimated_cost=estimate_cost(prepared.model, prepared.size),
            lane=f"chain:{sub.chain_id}" if sub.chain_id is not None else None,
        )

    def _remember_message(
        self, job_id: int, target: Target, payload: dict[str, Any]
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        async def remember() -> None:
            # Once the progress message exists, any process can carry on in it.
            await self.store.update_job(job_id, payload={**payload, **target.resume_info()})

        return remember

    # ------------------------------------------------------------------ waiting, state

    def active(self) -> list[int]:
        """Generations this process admitted that have not ended here yet."""
        return [local.gen_id for local in self._local.values()]

    async def wait_for(self, gen_id: int) -> None:
        """Until generation gen_id's job has ended, wherever it ran, however it ended."""
        event = self._ended.get(gen_id)
        while True:
            job = await self.store.job_for_generation(gen_id)
            if job is None or job.status not in OPEN_JOB_STATUSES:
                return
            if self.shutting_down:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.job_poll_seconds):
                    if event is not None:
                        await event.wait()
                    else:
                        await asyncio.sleep(self.settings.job_poll_seconds)

    async def progress_of(self, gen_ids: Sequence[int]) -> dict[int, tuple[str, int | None]]:
        """generation id -> (job status, place in line while queued), for a batch's message.
        A job past its Gemini call reads "posting"."""
        positions = await self.store.queue_positions()
        out: dict[int, tuple[str, int | None]] = {}
        for gen_id in gen_ids:
            job = await self.store.job_for_generation(gen_id)
            if job is None:
                continue
            status = "posting" if job.status == "running" and job.posting else job.status
            out[gen_id] = (status, positions.get(job.id))
        return out

    async def cancel(self, gen_id: int) -> bool:
        """Cancel a generation still waiting (from any process); False if it already started
        or ended. Its message says so, and nothing is charged."""
        job = await self.store.job_for_generation(gen_id)
        if job is None or job.status != "queued":
            return False
        if not await self.store.cancel_queued_job(job.id, reason="Cancelled. Nothing was charged."):
            return False
        local = self._local.pop(job.id, None)
        if local is not None:
            await local.updater.close()
            target: Target = local.target
        else:
            target = self._resumed_target(job, await self.store.get_generation(gen_id))
        self._ended_here(gen_id)
        self._positions_changed.set()
        try:
            await target.finish(content=CANCELLED)
        except discord.HTTPException:
            log.warning("could not show that generation %s was cancelled", gen_id)
        await self._group_check(job.group_id)
        return True

    def _ended_here(self, gen_id: int) -> None:
        event = self._ended.pop(gen_id, None)
        if event is not None:
            event.set()

    # ------------------------------------------------------------------ places in line

    async def _show_positions(self) -> None:
        """Keeps "Queued — 3rd in line" current on the messages of jobs this process admitted
        and nobody has started; notices the ones another process took or cancelled."""
        interval = self.settings.progress_interval_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._positions_changed.wait()
            self._positions_changed.clear()
            waiting = [local for local in self._local.values() if not local.started]
            if not waiting:
                continue
            try:
                positions = await self.store.queue_positions()
                for local in waiting:
                    place = positions.get(local.job_id)
                    if place is not None:
                        local.updater.set(
                            progress_text(
                                position=place, model=local.sub.prepared.model, elapsed=None
                            ),
                            action_view(local.gen_id, [Action.CANCEL]),
                        )
                    elif not local.started:
                        await self._left_the_queue(local)
            except Exception:
                log.exception("showing places in line failed")

    async def _left_the_queue(self, local: LocalJob) -> None:
        row = await self.store.get_job(local.job_id)
        if row is None or row.status == "queued" or local.started:
            return
        if row.status == "running" and row.lease_owner == self.worker_id:
            return  # claimed here a moment ago
        # Taken by another process (it shows the progress now), or ended elsewhere.
        self._local.pop(local.job_id, None)
        await local.updater.close()
        if row.status == "cancelled":
            self._ended_here(local.gen_id)
            with contextlib.suppress(discord.HTTPException):
                await local.target.finish(content=CANCELLED)

    # ------------------------------------------------------------------ running

    def _resumed_target(self, job: JobRow, gen: GenerationRow | None) -> ResumedTarget:
        """Where a job this process did not admit shows itself: what its row remembers."""
        info = {
            "channel_id": gen.channel_id if gen is not None else 0,
            "private": gen.private if gen is not None else False,
            **job.payload,
        }
        return ResumedTarget(self.client, info, user_id=job.user_id)

    async def _run_claimed(self, job: JobRow) -> None:
        """Run a job the database gave this process: the generation, or, if a process that
        died got further, whatever is left (post the stored result, show the failure)."""
        local = self._local.get(job.id)
        if local is not None:
            local.started = True
        gen = job.generation or await self.store.get_generation(job.generation_id)
        if gen is None:
            await self.store.finish_job(job.id, self.worker_id, status="failed", error="lost")
            return
        if local is not None:
            target, updater = local.target, local.updater
        else:
            target = self._resumed_target(job, gen)
            updater = ProgressUpdater(
                target,
                self.settings.progress_interval_seconds,
                on_message=self._remember_message(job.id, target, job.payload),
            )
            if job.attempts > 1:
                log.info("resuming generation %s (attempt %d)", gen.id, job.attempts)
        self.metrics.queue_wait.observe(max(0.0, time.time() - job.created_at))
        status = "failed"
        try:
            async with asyncio.timeout(self.settings.timeout_for(gen.size) * 2 + 30):
                status = await self._work(job, gen, local, target, updater)
        except asyncio.CancelledError:
            await updater.close()
            if self.shutting_down:
                await self._say_restarting(gen.id, target)
            self._forget(job.id, gen.id)
            raise  # handed back to the queue (shutdown) or taken over (lease lost)
        except TimeoutError:
            await self._end_badly(gen.id, target, "timed_out", TIMED_OUT)
        except UserError as exc:
            await self._end_badly(gen.id, target, "interrupted", str(exc))
        except Exception:
            log.exception("generation %s crashed (user %s)", gen.id, gen.user_id)
            await self._end_badly(gen.id, target, "internal", CRASHED)
        await updater.close()
        await self.store.finish_job(job.id, self.worker_id, status=status)
        self._forget(job.id, gen.id)
        await self._group_check(job.group_id)

    async def _group_check(self, group_id: str | None) -> None:
        if group_id is not None and self.group_ended is not None:
            try:
                await self.group_ended(group_id)
            except Exception:
                log.exception("finishing group %s failed", group_id)

    def _forget(self, job_id: int, gen_id: int) -> None:
        self._local.pop(job_id, None)
        self._ended_here(gen_id)
        self._positions_changed.set()

    async def _say_restarting(self, gen_id: int, target: Target) -> None:
        """Rather than leave "Generating… 12 s" standing still (unless the result is out)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                gen = await self.store.get_generation(gen_id)
                if gen is not None and gen.status in ("queued", "running"):
                    await target.show(RESTARTING)

    async def _end_badly(self, gen_id: int, target: Target, kind: str, text: str) -> None:
        """Ends a job that stopped without a result: recorded as failed, not charged, and
        said in its message with a Retry button (or where its made image can be found)."""
        gen = await self.store.get_generation(gen_id)
        with_retry = True
        if gen is not None and gen.status in ("queued", "running"):
            await self.store.fail_generation(gen_id, status="failed", error_kind=kind, error=text)
        elif gen is not None and gen.status == "done":
            # The image was made (and counted) but posting it failed: it is not lost.
            text = (
                f"Your image #{gen_id} was made but could not be posted here; "
                f"/history id:{gen_id} shows it."
            )
            with_retry = False
        try:
            await target.finish(
                content=f"❌ {text}" if with_retry else f"🚫 {text}",
                view=action_view(gen_id, [Action.RETRY]) if with_retry else None,
            )
        except discord.HTTPException:
            log.warning("could not report the end of generation %s", gen_id)

    async def _work(
        self,
        job: JobRow,
        gen: GenerationRow,
        local: LocalJob | None,
        target: Target,
        updater: ProgressUpdater,
    ) -> str:
        """The job's status once it has done what its generation still needs."""
        what = decide(gen)
        if what is Recovery.RESUME:
            if local is not None:
                sub = local.sub
            else:
                sub = await replay_submission(
                    self.store,
                    gen,
                    Requester(gen.user_id, gen.guild_id, target.channel_id),
                    kind=gen.kind,
                    private=gen.private,
                    history_window=self.settings.chain_history_steps,
                )
            return await self._generate(job, gen.id, sub, target, updater)
        if what is Recovery.POST:
            # Made before its worker died, never shown: post it now.
            assert gen.output_image is not None
            stored = await self.store.get_image(gen.output_image)
            if stored is not None:
                await self.poster.post(gen, stored[0], stored[1], target)
            return "done"
        if what is Recovery.REPORT:
            await target.finish(
                content=f"❌ {gen.error or 'This request failed.'}",
                view=action_view(gen.id, [Action.RETRY]),
            )
            return "failed"
        return "cancelled" if gen.status == "cancelled" else "done"

    async def _generate(
        self, job: JobRow, gen_id: int, sub: Submission, target: Target, updater: ProgressUpdater
    ) -> str:
        # claim_jobs has marked the generation running.
        compiled = compile_request(sub.prepared, [item.image for item in sub.inputs])
        model = sub.prepared.model
        started = time.monotonic()
        updater.set(progress_text(position=None, model=model, elapsed=0), None)
        ticker = asyncio.create_task(self._tick(updater, model, started))
        try:
            # Gemini's in-flight cap and rate, shared by every process on this database.
            async with self.store.gemini_slot(
                compiled.model,
                self.worker_id,
                max_in_flight=self.settings.gemini_max_in_flight,
                per_minute=self.settings.gemini_requests_per_minute,
                lease_seconds=self.settings.timeout_for(sub.prepared.size) * 2 + 30,
            ):
                outcome = await self.gemini.generate(
                    model=compiled.model,
                    contents=[*sub.history, compiled.user_content()],
                    config=compiled.config,
                    size=compiled.size,
                )
        finally:
            ticker.cancel()
        self.metrics.model_latency.labels(model=model).observe(time.monotonic() - started)
        # Fitting the image to the upload limit is the longest step at 4K: it starts at once,
        # alongside everything else the result needs before it is posted.
        fitting: asyncio.Task[FittedImage] | None = None
        if not isinstance(outcome, Failure):
            image = outcome.images[0]
            fitting = asyncio.create_task(
                self.poster.fit(image.data, image.mime_type, target.upload_limit)
            )
        try:
            # The concurrency limit is for Gemini: storing and uploading happen outside it.
            await self.store.job_posting(job.id, self.worker_id)
            self.dispatcher.wake()
            await updater.close()
            if isinstance(outcome, Failure):
                self.metrics.failures.labels(kind=str(outcome.kind)).inc()
                self.metrics.generations.labels(model=model, outcome="failed").inc()
                await self._report_failure(gen_id, sub, outcome, target)
                return "failed"
            assert fitting is not None
            self.metrics.generations.labels(model=model, outcome="done").inc()
            self.metrics.cost.labels(model=model).inc(outcome.cost)
            await self._complete(gen_id, sub, outcome, target, fitting)
            return "done"
        finally:
            if fitting is not None:
                _drop(fitting)

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
        self,
        gen_id: int,
        sub: Submission,
        result: Generation,
        target: Target,
        fitting: asyncio.Task[FittedImage],
    ) -> None:
        """Store the result while `fitting` fits it to the upload limit, then post it."""
        image = result.images[0]
        await self._store_result(gen_id, sub, result)
        fitted = await fitting
        gen = await self.store.get_generation(gen_id)
        assert gen is not None
        await self.poster.post(gen, image.data, image.mime_type, target, fitted=fitted)

    async def _store_result(self, gen_id: int, sub: Submission, result: Generation) -> None:
        image = result.images[0]
        sha = await self.store.put_image(image.data, image.mime_type)
        await self.store.finish_generation(
            gen_id,
            output_image=sha,
            output_mime=image.mime_type,
            model_text=result.text,
            # Comparing megabytes of image bytes: off the event loop.
            model_content=await asyncio.to_thread(_content_json, result.content, image.data, sha),
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


def _drop(task: asyncio.Task[Any]) -> None:
    """Cancel a task no longer wanted; a failure it already had was reported another way."""
    if task.done():
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning
    else:
        task.cancel()


def _content_json(content: types.Content | None, image: bytes, sha: str) -> dict[str, Any] | None:
    """The model's turn as stored: the posted image, already in the image store under `sha`,
    referenced rather than written out as base64 (at 4K, ~55 MB of text to encode and decode
    again, most of it holding the GIL)."""
    if content is None:
        return None
    posted = [
        i
        for i, part in enumerate(content.parts or [])
        if part.inline_data is not None
        and part.inline_data.data is not None
        and (part.inline_data.data is image or part.inline_data.data == image)
    ]
    dumped = content_to_json(content, without_data_of=posted)
    for i in posted:
        part = dumped["parts"][i]
        part["inline_data"] = stored_content.referenced(part["inline_data"], sha)
    return dumped
