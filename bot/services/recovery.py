"""After a restart: every job the last process left open is resumed in the message that
showed it, or its result or failure is delivered; never silently dropped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from enum import StrEnum
from typing import Any

from bot.adapters.store import GenerationRow, Store
from bot.config import Settings
from bot.core.replay import replay_submission
from bot.core.submission import Requester
from bot.errors import UserError
from bot.presentation.buttons import Action, action_view
from bot.presentation.targets import DiscordClient, ResumedTarget
from bot.services.batches import resumed_batch
from bot.services.generation import Generator
from bot.services.posting import ResultPoster

log = logging.getLogger(__name__)


class Recovery(StrEnum):
    """What to do with a generation whose job the last process left open."""

    RESUME = "resume"  # queued or running: queue it again, same id, same message
    POST = "post"  # finished but never shown: post the stored result
    REPORT = "report"  # failed or blocked: show the failure with Retry
    NOTHING = "nothing"  # shown, cancelled or gone: just close the job


def decide(gen: GenerationRow | None) -> Recovery:
    if gen is None:
        return Recovery.NOTHING
    if gen.status in ("queued", "running"):
        return Recovery.RESUME
    if gen.status == "done" and gen.message_id is None and gen.output_image:
        return Recovery.POST
    if gen.status in ("failed", "blocked"):
        return Recovery.REPORT
    return Recovery.NOTHING


class RecoveryService:
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        generator: Generator,
        poster: ResultPoster,
        client: DiscordClient,
    ) -> None:
        self.store = store
        self.settings = settings
        self.generator = generator
        self.poster = poster
        self.client = client
        self._batches: set[asyncio.Task[None]] = set()

    async def recover(self) -> None:
        """A row is closed only once its job was handled, so a shutdown during recovery
        leaves the rest for the next start (a generation seen twice is handled once)."""
        seen: set[int] = set()
        batches: dict[str, tuple[dict[str, Any], int]] = {}
        first_own = self.generator.first_own_job_row
        for row in await self.store.open_jobs():
            if first_own is not None and row.id >= first_own:
                continue  # queued by this process before on_ready: not a leftover
            gen = await self.store.get_generation(row.generation_id)
            batch = row.payload.get("batch")
            if gen is not None and isinstance(batch, dict) and batch.get("id"):
                batches.setdefault(str(batch["id"]), (batch, gen.user_id))
            if gen is not None and gen.id not in seen:
                seen.add(gen.id)
                info = {"channel_id": gen.channel_id, "private": gen.private, **row.payload}
                target = ResumedTarget(self.client, info, user_id=gen.user_id)
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
                            view=action_view(gen.id, [Action.RETRY]),
                        )
            await self.store.update_job(row.id, status="interrupted")
        # After every variant is back in the queue: a batch waits for all of them.
        for batch_id, (info, user_id) in batches.items():
            self._watch_batch(batch_id, info, user_id)

    def _watch_batch(self, batch_id: str, info: dict[str, Any], user_id: int) -> None:
        async def watch() -> None:
            gens = await self.store.batch_generations(batch_id)
            progress = resumed_batch(
                store=self.store,
                settings=self.settings,
                generator=self.generator,
                client=self.client,
                info=info,
                user_id=user_id,
                gens=gens,
            )
            log.info("resumed batch %s (%d variants) after a restart", batch_id, len(gens))
            await progress.watch()

        task = asyncio.create_task(watch(), name=f"batch-{batch_id}")
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def stop(self) -> None:
        """At shutdown: resumed batches stop watching (they resume again next start)."""
        for task in list(self._batches):
            task.cancel()
        if self._batches:
            await asyncio.wait(set(self._batches), timeout=2)

    async def _recover_one(self, gen: GenerationRow, target: ResumedTarget) -> None:
        what = decide(gen)
        if what is Recovery.RESUME:
            try:
                sub = await replay_submission(
                    self.store,
                    gen,
                    Requester(gen.user_id, gen.guild_id, target.channel_id),
                    kind=gen.kind,
                    private=gen.private,
                    history_window=self.settings.chain_history_steps,
                )
                # Same generation id: the request, its chain step and its buttons stay one.
                await self.generator.resume(gen.id, sub, target)
                log.info("resumed generation %s after a restart", gen.id)
            except UserError as exc:
                await self.store.fail_generation(
                    gen.id, status="failed", error_kind="interrupted", error=str(exc)
                )
                await target.finish(
                    content="❌ The bot restarted before this finished and could not resume it: "
                    f"{exc}",
                    view=action_view(gen.id, [Action.RETRY]),
                )
        elif what is Recovery.POST:
            assert gen.output_image is not None
            stored = await self.store.get_image(gen.output_image)
            if stored is not None:
                await self.poster.post(gen, stored[0], stored[1], target)
        elif what is Recovery.REPORT:
            await target.finish(
                content=f"❌ {gen.error or 'This request failed.'}",
                view=action_view(gen.id, [Action.RETRY]),
            )
