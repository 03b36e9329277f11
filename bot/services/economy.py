"""Economy requests: the same images through Gemini's Batch API, at its lower price (about
half), answered within 24 hours (product.md §11).

An economy request is admitted like any other (`Store.admit`: quotas at the batch price and
queue room, in one transaction) as a job in the lane "economy", which the interactive
dispatcher never claims. Its message says where it is. Then, in whichever process gets there
first (every process runs `EconomyService`'s loop on the shared database):

1. forming: once a user's economy jobs for a model have gathered (`ECONOMY_GATHER_SECONDS`
   with no newer one, or a full batch), they become one batch held under a lease by the
   process that formed it, and their jobs leave the queue room (they wait at Gemini now);
2. submitted: that process builds each request from the stored spec and inputs (exactly as
   a restart would), submits the batch (inline, or a JSONL file when it is big), records the
   batch's name and shows "Waiting in Gemini's batch queue", submitted and expected-by times
   as Discord timestamps, with Cancel;
3. polling: the batch is polled with a capped exponential backoff by whichever process claims
   it when it is due (one at a time: the lease). A restart, or another process, carries on
   from the stored name. RUNNING at Gemini: Cancel goes away (too late);
4. ended: SUCCEEDED: each request's image is stored, recorded and charged at the batch price,
   and posted like any result (ResultPoster: the same embed, buttons and prompt.json); each
   request that failed inside the batch is reported on its own, with Retry (interactive,
   now) and Retry in economy. EXPIRED / FAILED: every request says so, nothing is charged.
   CANCELLED: cancelled. A /batch's contact sheet follows when its last variant has ended
   (BatchSheets, like any batch).

Chains and multi-turn edits never come here: they need the previous turn's answer at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord
from google.genai import types

from bot.adapters.gemini import Failure, FailureKind, Generation, content_to_json
from bot.adapters.gemini_batch import BatchCallError, BatchEntry, BatchRequest, GeminiBatchClient
from bot.adapters.prompts import compile_request
from bot.adapters.store import (
    ECONOMY_LANE,
    EconomyBatchRow,
    EconomyItemRow,
    GenerationRow,
    NewJob,
    Refused,
    Store,
)
from bot.config import Settings, estimate_cost
from bot.core.preferences import preferences_for
from bot.core.quotas import admit_limits, refusal_error
from bot.core.replay import replay_submission
from bot.core.resolver import RequestResolver
from bot.core.submission import Requester, Submission, stored_spec
from bot.errors import UserError
from bot.presentation.buttons import Action, action_view
from bot.presentation.economy import (
    CANCELLED,
    EXPIRED,
    EconomyTarget,
    batch_failed_text,
    gathering_text,
    state_text,
)
from bot.presentation.targets import (
    DiscordClient,
    FollowupTarget,
    InteractionTarget,
    ResumedTarget,
    Target,
)
from bot.presentation.text import format_cost
from bot.services.batches import Variant
from bot.services.posting import ResultPoster

log = logging.getLogger(__name__)

# The commands that offer economy (and follow the /settings default).
ECONOMY_KINDS = frozenset({"imagine", "prompt", "template", "batch"})
BLOCKED_KINDS = {FailureKind.PROMPT_BLOCKED, FailureKind.OUTPUT_BLOCKED}
OPEN = ("queued", "running")
MAX_SUBMIT_ATTEMPTS = 5
POLL_FACTOR = 1.5
# Batches one process submits or polls at once.
HELD_AT_ONCE = 4
NOTE = "Economy: made through Gemini's Batch API at the batch price"


def economy_wanted(kind: str, economy: bool | None, *, default: bool) -> bool:
    """The command's `economy` option, else the user's default (`default`), for the commands
    that offer it; UserError when asked of another."""
    if kind not in ECONOMY_KINDS:
        if economy:
            raise UserError(
                "Economy is for /imagine, /prompt, /template use and /batch; this runs "
                "interactively."
            )
        return False
    return default if economy is None else economy


class EconomyService:
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        batches: GeminiBatchClient,
        poster: ResultPoster,
        client: DiscordClient,
        worker_id: str,
    ) -> None:
        self.store = store
        self.settings = settings
        self.batches = batches
        self.poster = poster
        self.client = client
        self.worker_id = worker_id
        # Told when every job of a group (a /batch) has ended, here or elsewhere.
        self.group_ended: Callable[[str], Awaitable[None]] | None = None
        self._held: dict[int, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False

    @property
    def lease_seconds(self) -> float:
        return self.settings.job_lease_seconds

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="economy-batches")
        self._renewer = asyncio.create_task(self._renew(), name="economy-leases")

    async def stop(self, *, grace: float = 2.0) -> None:
        """Stop forming and polling; batches held here are handed back at once (any process,
        this one restarted, polls them on), and their requests simply keep waiting."""
        self._closing = True
        for task in (self._loop_task, self._renewer):
            if task is not None:
                task.cancel()
        held = dict(self._held)
        for task in held.values():
            task.cancel()
        if held:
            await asyncio.wait(held.values(), timeout=grace)
        for batch_id in held:
            with contextlib.suppress(Exception):
                await self.store.update_economy_batch(batch_id, self.worker_id, release=True)

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ asking

    async def wanted(
        self, user_id: int, guild_id: int | None, kind: str, economy: bool | None
    ) -> bool:
        """Whether a request of `kind` goes through the Batch API: the command's `economy`
        option, else the user's /settings default."""
        if economy is None and kind in ECONOMY_KINDS:
            prefs = await preferences_for(self.store, self.settings, user_id, guild_id)
            return economy_wanted(kind, economy, default=prefs.economy)
        return economy_wanted(kind, economy, default=False)

    # ------------------------------------------------------------------ submission

    async def submit(
        self, sub: Submission, target: Target, *, intake_id: int | None = None
    ) -> int:
        """Admit one economy request and show it waiting (UserError: over a limit)."""
        return (await self.submit_many([(sub, target, None)], intake_id=intake_id))[0]

    async def submit_many(
        self,
        items: Sequence[tuple[Submission, Target, str | None]],
        *,
        intake_id: int | None = None,
        show: bool = True,
    ) -> list[int]:
        """Admit one user's economy requests together (a /batch: `label` per variant), all
        or none. `show`: put the waiting line on a single request's message."""
        if not items:
            return []
        first = items[0][0]
        if any(sub.chain_id is not None for sub, _, _ in items):
            raise UserError("Chain steps run interactively; economy is not offered there.")
        created = time.time()
        result = await self.store.admit(
            user_id=first.user_id,
            guild_id=first.guild_id,
            jobs=[self._new_job(sub, target, label, created) for sub, target, label in items],
            limits=await admit_limits(self.store, self.settings, first.guild_id),
            group_id=first.batch_id,
            intake_id=intake_id,
        )
        if isinstance(result, Refused):
            raise refusal_error(result)
        log.info(
            "economy: %d requests admitted for user %s (%s)",
            len(items), first.user_id, first.prepared.model,
        )  # fmt: skip
        if show and len(items) == 1:
            sub, target, _ = items[0]
            gen_id, job_id = result.generation_ids[0], result.job_ids[0]
            with contextlib.suppress(discord.HTTPException):
                await target.show(
                    gathering_text(sub.prepared.model),
                    view=action_view(gen_id, [Action.ECONOMY_CANCEL]),
                )
            # Once its message exists, any process can carry on in it.
            job = await self.store.get_job(job_id)
            if job is not None:
                await self.store.update_job(
                    job_id, payload={**job.payload, **target.resume_info()}
                )
        self.wake()
        return list(result.generation_ids)

    def _new_job(
        self, sub: Submission, target: Target, label: str | None, created: float
    ) -> NewJob:
        prepared = sub.prepared
        return NewJob(
            channel_id=sub.channel_id,
            kind=sub.kind,
            spec=stored_spec(prepared, sub.inputs),
            model=prepared.model,
            size=prepared.size,
            aspect=prepared.aspect,
            summary=prepared.summary(),
            payload={
                **target.resume_info(),
                "created_at": created,
                "economy": {
                    "label": label,
                    "warnings": list(prepared.warnings) + list(prepared.overrides),
                },
            },
            input_images=[item.sha for item in sub.inputs],
            batch_id=sub.batch_id,
            private=sub.private,
            estimated_cost=estimate_cost(prepared.model, prepared.size, economy=True),
            lane=ECONOMY_LANE,
        )

    # ------------------------------------------------------------------ Cancel

    async def cancel(self, gen_id: int) -> tuple[int, int]:
        """Cancel an economy request, or every request of its /batch, that Gemini has not
        started: (cancelled, too late). Nothing is charged for what is cancelled; a batch
        whose every request is withdrawn is cancelled at Gemini too."""
        job = await self.store.job_for_generation(gen_id)
        if job is None or job.lane != ECONOMY_LANE:
            return 0, 0
        jobs = [job]
        if job.group_id is not None:
            jobs = [j for j in await self.store.group_jobs(job.group_id) if j.lane == ECONOMY_LANE]
        open_jobs = [j for j in jobs if j.status in OPEN]
        withdrawn = await self.store.withdraw_economy_jobs(
            [j.id for j in open_jobs], reason="Cancelled. Nothing was charged."
        )
        for batch_id in withdrawn.batches:
            await self._cancel_at_gemini(batch_id)
        for j in open_jobs:
            if j.id in withdrawn.cancelled and (j.payload.get("economy") or {}).get("label") is None:
                with contextlib.suppress(discord.HTTPException):
                    await self._target(j.payload, j.user_id).finish(content=CANCELLED)
        if withdrawn.cancelled and job.group_id is not None:
            await self._group_check(job.group_id)
        log.info(
            "economy: generation %s cancelled (%d requests, %d too late)",
            gen_id, len(withdrawn.cancelled), len(withdrawn.too_late),
        )  # fmt: skip
        return len(withdrawn.cancelled), len(withdrawn.too_late)

    async def _cancel_at_gemini(self, batch_id: int) -> None:
        """Once nothing in a submitted batch is still wanted, Gemini need not make it."""
        batch = await self.store.economy_batch(batch_id)
        if batch is None or batch.name is None or batch.state != "submitted":
            return  # forming: its submitter finds nothing left to send
        if any(item.state == "pending" for item in await self.store.economy_items(batch_id)):
            return
        try:
            await self.batches.cancel(batch.name)
        except BatchCallError as exc:
            log.warning("economy: could not cancel %s at Gemini: %s", batch.name, exc)
        await self.store.poll_economy_batch_soon(batch_id)
        self.wake()

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        while not self._closing:
            self._wake.clear()
            try:
                await self._round()
            except Exception:  # the database or Gemini hiccuped: again at the next tick
                log.exception("economy round failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.economy_tick_seconds):
                    await self._wake.wait()

    async def _round(self) -> None:
        formed = await self.store.form_economy_batches(
            self.worker_id,
            gather_seconds=self.settings.economy_gather_seconds,
            max_requests=self.settings.economy_batch_max_requests,
            lease_seconds=self.lease_seconds,
        )
        for batch in formed:
            self._hold(batch)
        while not self._closing and len(self._held) < HELD_AT_ONCE:
            due = await self.store.claim_economy_batch(
                self.worker_id, lease_seconds=self.lease_seconds
            )
            if due is None:
                break
            self._hold(due)

    def _hold(self, batch: EconomyBatchRow) -> None:
        task = asyncio.create_task(self._work(batch), name=f"economy-batch-{batch.id}")
        self._held[batch.id] = task

    async def _work(self, batch: EconomyBatchRow) -> None:
        try:
            if batch.state == "forming":
                await self._submit(batch)
            elif batch.state == "submitted":
                await self._poll(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("economy batch %s failed here; it is polled again later", batch.id)
            with contextlib.suppress(Exception):
                await self.store.update_economy_batch(
                    batch.id, self.worker_id, release=True,
                    next_poll_at=time.time() + self.settings.economy_poll_initial_seconds,
                )  # fmt: skip
        finally:
            self._held.pop(batch.id, None)
            self.wake()

    async def _renew(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.lease_seconds / 3)
            for batch_id, task in list(self._held.items()):
                try:
                    kept = await self.store.renew_economy_batch(
                        batch_id, self.worker_id, lease_seconds=self.lease_seconds
                    )
                except Exception:
                    log.warning("could not renew economy batch %s", batch_id, exc_info=True)
                    continue
                if not kept and not task.done():
                    log.warning("economy batch %s was taken over; stopping here", batch_id)
                    task.cancel()

    def _next_poll(self, polls: int) -> float:
        delay = min(
            self.settings.economy_poll_max_seconds,
            self.settings.economy_poll_initial_seconds * POLL_FACTOR**polls,
        )
        return time.time() + delay

    # ------------------------------------------------------------------ submitting

    async def _submit(self, batch: EconomyBatchRow) -> None:
        items = [it for it in await self.store.economy_items(batch.id) if it.state == "pending"]
        if batch.submit_attempts > 0:
            # A process that was submitting it died: Gemini may have it already.
            try:
                found = await self.batches.find(batch.display_name)
            except BatchCallError:
                found = None
            if found is not None:
                log.info("economy batch %s was submitted before as %s", batch.id, found.name)
                await self._submitted(batch, items, found.name, found.state, keys=None)
                return
        if not items:
            await self._end_batch(batch)
            return
        await self.store.update_economy_batch(
            batch.id, self.worker_id, submit_attempts=batch.submit_attempts + 1
        )
        requests: list[BatchRequest] = []
        sent: list[EconomyItemRow] = []
        for item in items:
            gen = await self.store.get_generation(item.generation_id)
            if gen is None or gen.status not in OPEN:
                await self._settle_ended(item, gen)
                continue
            requester = Requester(gen.user_id, gen.guild_id, gen.channel_id)
            try:
                sub = await replay_submission(
                    self.store, gen, requester, kind=gen.kind, private=gen.private,
                    history_window=0,
                )  # fmt: skip
            except UserError as exc:
                await self._fail(item, gen, Failure(FailureKind.INVALID_REQUEST, str(exc)))
                continue
            compiled = compile_request(sub.prepared, [x.image for x in sub.inputs])
            requests.append(BatchRequest(key=str(item.job_id), compiled=compiled))
            sent.append(item)
        if not requests:
            await self._end_batch(batch)
            return
        try:
            status = await self.batches.submit(
                model=batch.model, requests=requests, display_name=batch.display_name
            )
        except BatchCallError as exc:
            if exc.retryable and batch.submit_attempts + 1 < MAX_SUBMIT_ATTEMPTS:
                log.warning("economy batch %s not submitted yet: %s", batch.id, exc)
                await self.store.update_economy_batch(
                    batch.id, self.worker_id, release=True,
                    next_poll_at=self._next_poll(batch.submit_attempts + 1),
                )  # fmt: skip
                return
            for item in sent:
                gen = await self.store.get_generation(item.generation_id)
                await self._fail(item, gen, exc.failure, not_charged=True)
            await self._end_batch(batch, error=exc.failure.message)
            return
        await self._submitted(batch, sent, status.name, status.state, keys=[r.key for r in requests])

    async def _submitted(
        self,
        batch: EconomyBatchRow,
        items: Sequence[EconomyItemRow],
        name: str,
        state: str,
        *,
        keys: list[str] | None,
    ) -> None:
        now = time.time()
        values: dict[str, Any] = {
            "state": "submitted", "name": name, "gemini_state": state, "submitted_at": now,
            "polls": 0,
        }  # fmt: skip
        if keys is not None:
            values["request_keys"] = keys
        for item in items:
            await self.store.mark_running(item.generation_id)
        await self.store.update_economy_batch(
            batch.id, self.worker_id, release=True, next_poll_at=self._next_poll(0), **values
        )
        await self._show_state(batch, items, state, submitted_at=now)

    # ------------------------------------------------------------------ polling

    async def _poll(self, batch: EconomyBatchRow) -> None:
        assert batch.name is not None
        items = await self.store.economy_items(batch.id)
        keys = batch.request_keys or [str(it.job_id) for it in items]
        try:
            status = await self.batches.status(batch.name, keys=keys)
        except BatchCallError as exc:
            if exc.not_found:
                await self._batch_lost(batch, items, "Gemini no longer knows this batch")
                return
            log.warning("economy batch %s: poll failed (%s); later", batch.id, exc)
            await self.store.update_economy_batch(
                batch.id, self.worker_id, release=True, polls=batch.polls + 1,
                next_poll_at=self._next_poll(batch.polls + 1),
            )  # fmt: skip
            return
        values: dict[str, Any] = {"gemini_state": status.state, "polls": batch.polls + 1}
        running = status.state == "JOB_STATE_RUNNING" or status.done
        if running and batch.started_at is None and not status.waiting:
            values["started_at"] = time.time()
        if not status.done:
            await self.store.update_economy_batch(
                batch.id, self.worker_id, release=True,
                next_poll_at=self._next_poll(batch.polls + 1), **values,
            )  # fmt: skip
            if status.state != batch.gemini_state:
                await self._show_state(batch, items, status.state)
            return
        log.info("economy batch %s (%s) ended: %s", batch.id, batch.name, status.state)
        await self.store.update_economy_batch(batch.id, self.worker_id, **values)
        pending = [it for it in items if it.state == "pending"]
        if status.succeeded:
            by_key = {e.key: e for e in status.entries or [] if e.key is not None}
            for item in pending:
                await self._deliver(batch, item, by_key.get(str(item.job_id)))
        elif status.state == "JOB_STATE_EXPIRED":
            for item in pending:
                gen = await self.store.get_generation(item.generation_id)
                await self._fail(
                    item, gen, Failure(FailureKind.TIMED_OUT, EXPIRED), kind="expired", raw=True
                )
        elif status.state == "JOB_STATE_CANCELLED":
            for item in pending:
                await self._cancelled(item)
        else:
            await self._batch_lost(batch, pending, "the batch failed")
            return
        await self._end_batch(batch)

    async def _batch_lost(
        self, batch: EconomyBatchRow, items: Sequence[EconomyItemRow], why: str
    ) -> None:
        for item in items:
            if item.state != "pending":
                continue
            gen = await self.store.get_generation(item.generation_id)
            await self._fail(
                item, gen, Failure(FailureKind.SERVER_ERROR, batch_failed_text(why)), raw=True,
                kind="batch_failed",
            )  # fmt: skip
        await self._end_batch(batch, error=why)

    async def _end_batch(self, batch: EconomyBatchRow, *, error: str | None = None) -> None:
        await self.store.update_economy_batch(
            batch.id, self.worker_id, release=True, state="ended", ended_at=time.time(),
            error=error,
        )  # fmt: skip

    # ------------------------------------------------------------------ showing the state

    async def _show_state(
        self,
        batch: EconomyBatchRow,
        items: Sequence[EconomyItemRow],
        state: str,
        *,
        submitted_at: float | None = None,
    ) -> None:
        """Each waiting request's message (a /batch: its one message) says where it is."""
        at = submitted_at or batch.submitted_at or time.time()
        expected = at + self.settings.economy_turnaround_hours * 3600
        cancellable = state != "JOB_STATE_RUNNING"
        groups: dict[str, list[EconomyItemRow]] = {}
        for item in items:
            if item.state != "pending":
                continue
            info = item.payload.get("batch")
            if isinstance(info, dict) and item.group_id is not None:
                groups.setdefault(item.group_id, []).append(item)
                continue
            text = state_text(
                gemini_state=state, submitted_at=at, expected_by=expected, model=batch.model
            )
            view = action_view(item.generation_id, [Action.ECONOMY_CANCEL]) if cancellable else None
            with contextlib.suppress(discord.HTTPException):
                await self._target(item.payload, item.user_id).show(text, view=view)
        for group_id, members in groups.items():
            info = members[0].payload["batch"]
            everyone = await self.store.group_jobs(group_id)
            text = state_text(
                gemini_state=state, submitted_at=at, expected_by=expected, model=batch.model,
                images=len(everyone), field=str(info.get("field") or "?"),
            )  # fmt: skip
            notes = [str(n) for n in info.get("notes") or []]
            if notes:
                text = "\n".join([text, *notes])
            first = everyone[0].generation_id
            view = action_view(first, [Action.ECONOMY_CANCEL]) if cancellable else None
            progress = ResumedTarget(
                self.client, dict(info.get("progress") or {}), user_id=members[0].user_id
            )
            with contextlib.suppress(discord.HTTPException):
                await progress.show(text[:2000], view=view)

    def _target(self, payload: dict[str, Any], user_id: int) -> EconomyTarget:
        label = (payload.get("economy") or {}).get("label")
        return EconomyTarget(self.client, dict(payload), user_id=user_id, label=label)

    # ------------------------------------------------------------------ results

    async def _deliver(
        self, batch: EconomyBatchRow, item: EconomyItemRow, entry: BatchEntry | None
    ) -> None:
        gen = await self.store.get_generation(item.generation_id)
        if gen is None or gen.status not in OPEN:
            await self._settle_ended(item, gen)
            return
        if entry is None:
            outcome: Generation | Failure = Failure(
                FailureKind.NO_IMAGE, "Gemini's batch came back without an answer for this."
            )
        else:
            outcome = entry.outcome(model=gen.model, size=gen.size)
        if isinstance(outcome, Failure):
            await self._fail(item, gen, outcome)
            return
        try:
            await self._complete(batch, item, gen, outcome)
        except discord.HTTPException:
            log.exception("economy: generation %s was made but not posted", gen.id)
            await self._end_job(item, "done")

    async def _complete(
        self, batch: EconomyBatchRow, item: EconomyItemRow, gen: GenerationRow, result: Generation
    ) -> None:
        image = result.images[0]
        sha = await self.store.put_image(image.data, image.mime_type)
        meta = item.payload.get("economy") or {}
        warnings = [str(w) for w in meta.get("warnings") or []]
        full = estimate_cost(
            gen.model, gen.size, images_out=len(result.images),
            input_tokens=result.usage.prompt_tokens,
        )  # fmt: skip
        warnings.append(f"{NOTE} ({format_cost(result.cost)} instead of {format_cost(full)}).")
        started = batch.submitted_at or gen.created_at
        async with self.poster.heavy:
            finished = await self.store.finish_generation(
                gen.id,
                output_image=sha,
                output_mime=image.mime_type,
                model_text=result.text,
                model_content=await asyncio.to_thread(_content_json, result.content),
                prompt_tokens=result.usage.prompt_tokens,
                output_tokens=result.usage.output_tokens,
                thoughts_tokens=result.usage.thoughts_tokens,
                cost=result.cost,
                model_version=result.model_version,
                seconds=max(0.0, time.time() - started),
                warnings=warnings,
            )
        if finished:
            await self.store.record_usage(
                user_id=gen.user_id, guild_id=gen.guild_id, model=gen.model,
                images=1, cost=result.cost,
            )  # fmt: skip
            await self.store.record_economy_usage(
                user_id=gen.user_id, guild_id=gen.guild_id, model=gen.model,
                images=1, cost=result.cost, full_cost=full,
            )  # fmt: skip
        done = await self.store.get_generation(gen.id)
        if done is None or done.status != "done":
            await self._settle_ended(item, done)  # cancelled meanwhile: not charged, not shown
            return
        await self.poster.post(done, image.data, image.mime_type, self._target(item.payload, item.user_id))
        await self._end_job(item, "done")

    async def _settle_ended(self, item: EconomyItemRow, gen: GenerationRow | None) -> None:
        """An item whose generation already ended (cancelled, or finished by a process that
        died before it posted): finish what is left."""
        if gen is None:
            await self._end_job(item, "failed", error="lost")
            return
        if gen.status == "done":
            if gen.message_id is None and gen.output_image:
                stored = await self.store.get_image(gen.output_image)
                if stored is not None:
                    with contextlib.suppress(discord.HTTPException):
                        await self.poster.post(
                            gen, stored[0], stored[1], self._target(item.payload, item.user_id)
                        )
            await self._end_job(item, "done")
        elif gen.status == "cancelled":
            await self._end_job(item, "cancelled")
        else:
            await self._end_job(item, "failed", error=gen.error)

    async def _fail(
        self,
        item: EconomyItemRow,
        gen: GenerationRow | None,
        failure: Failure,
        *,
        kind: str | None = None,
        raw: bool = False,
        not_charged: bool = False,
    ) -> None:
        """One request that produced no image: recorded (not charged) and said in its own
        message, with Retry (now, interactively) and Retry in economy."""
        if gen is None:
            await self._end_job(item, "failed", error="lost")
            return
        status = "blocked" if failure.kind in BLOCKED_KINDS else "failed"
        text = failure.message
        if not_charged and "charged" not in text:
            text = f"{text} Nothing was charged."
        failed = await self.store.fail_generation(
            gen.id, status=status, error_kind=kind or str(failure.kind), error=text
        )
        if not failed:
            await self._settle_ended(item, await self.store.get_generation(gen.id))
            return
        log.info("economy: generation %s %s: %s (%s)", gen.id, status, failure.kind, failure.detail)
        icon = "🚫" if status == "blocked" else "❌"
        content = text if raw else f"{icon} {text}"
        with contextlib.suppress(discord.HTTPException):
            await self._target(item.payload, item.user_id).finish(
                content=content,
                view=action_view(gen.id, [Action.RETRY, Action.ECONOMY_RETRY]),
            )
        await self._end_job(item, "failed", error=text)

    async def _cancelled(self, item: EconomyItemRow) -> None:
        gen = await self.store.get_generation(item.generation_id)
        if gen is not None and gen.status in OPEN:
            await self.store.fail_generation(
                gen.id, status="cancelled", error_kind="cancelled", error="Cancelled at Gemini."
            )
            with contextlib.suppress(discord.HTTPException):
                await self._target(item.payload, item.user_id).finish(content=CANCELLED)
        await self._end_job(item, "cancelled")

    async def _end_job(self, item: EconomyItemRow, status: str, *, error: str | None = None) -> None:
        await self.store.end_economy_job(item.job_id, status=status, error=error)
        await self._group_check(item.group_id)

    async def _group_check(self, group_id: str | None) -> None:
        if group_id is not None and self.group_ended is not None:
            try:
                await self.group_ended(group_id)
            except Exception:
                log.exception("finishing group %s failed", group_id)


class EconomyBatchRun:
    """/batch in economy: every variant admitted together (all or none) as economy requests
    of one batch; the batch's message shows its state until the contact sheet replaces it
    (BatchSheets, when the last variant has ended), each image arriving as its own message."""

    def __init__(
        self,
        *,
        store: Store,
        economy: EconomyService,
        interaction: discord.Interaction,
        field: str,
        variants: list[Variant],
        private: bool,
    ) -> None:
        self.store = store
        self.economy = economy
        self.interaction = interaction
        self.field = field
        self.variants = variants
        self.private = private
        self.batch_id = uuid.uuid4().hex[:12]
        self.notes: list[str] = []

    async def start(self) -> list[int]:
        interaction = self.interaction
        resolver = RequestResolver(self.store, user_id=interaction.user.id)
        requester = Requester(interaction.user.id, interaction.guild_id, interaction.channel_id or 0)
        target = InteractionTarget(interaction, private=self.private)
        model = self.variants[0].model
        text = "\n".join([gathering_text(model, images=len(self.variants)), *self.notes])
        shown = await interaction.edit_original_response(content=text[:2000])
        target.message_id = shown.id
        # Each variant's job carries the batch: whichever process ends the last one posts
        # the contact sheet in this message.
        batch = {
            "id": self.batch_id,
            "field": self.field,
            "notes": list(self.notes),
            "progress": target.resume_info(),
        }
        items: list[tuple[Submission, Target, str | None]] = []
        for variant in self.variants:
            assert variant.prepared is not None
            inputs = await resolver.resolve_all(variant.prepared.spec, model=variant.prepared.model)
            sub = Submission.build(
                requester,
                kind="batch",
                prepared=variant.prepared,
                inputs=inputs,
                batch_id=self.batch_id,
                private=self.private,
            )
            label = f"{self.field} = {variant.label}"
            followup = FollowupTarget(interaction, label=label, private=self.private, batch=batch)
            items.append((sub, followup, label))
        gen_ids = await self.economy.submit_many(items, show=False)
        for variant, gen_id in zip(self.variants, gen_ids, strict=True):
            variant.gen_id = gen_id
        with contextlib.suppress(discord.HTTPException):
            await target.show(text[:2000], view=action_view(gen_ids[0], [Action.ECONOMY_CANCEL]))
        log.info(
            "economy batch %s: %d variants of %s for user %s",
            self.batch_id, len(gen_ids), self.field, interaction.user.id,
        )  # fmt: skip
        return gen_ids


def _content_json(content: types.Content | None) -> dict[str, Any] | None:
    return content_to_json(content) if content is not None else None


async def economy_usage_line(
    store: Store, *, user_id: int | None, guild_id: int | None, first_day: str, last_day: str
) -> str | None:
    """/usage: what economy requests cost over the days, and what they saved."""
    use = await store.economy_usage_between(
        user_id=user_id, guild_id=guild_id, first_day=first_day, last_day=last_day
    )
    if not use.images:
        return None
    images = f"{use.images} image" + ("" if use.images == 1 else "s")
    return (
        f"• 🐢 Economy (Gemini's Batch API): {images}, {format_cost(use.cost)} — saved "
        f"{format_cost(use.saved)} against the interactive price"
    )
