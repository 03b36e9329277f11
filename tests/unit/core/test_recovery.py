"""Tests for bot.core.recovery.decide: what a restart does with each leftover generation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot.adapters.store import GenerationRow, Store
from bot.adapters.store.rows import GENERATION_STATUSES
from bot.core.recovery import Recovery, decide

SHA = "a" * 64

ROW = GenerationRow(
    id=1, user_id=7, guild_id=10, channel_id=20, message_id=None, kind="imagine",
    spec={"task": "generate_image", "subject": "a fox"}, model="gemini-3-pro-image",
    size="1K", aspect="1:1", summary="a fox", status="queued", error_kind=None, error=None,
    input_images=[], output_image=None, output_mime=None, model_text=None, model_content=None,
    prompt_tokens=0, output_tokens=0, thoughts_tokens=0, cost=0.0, model_version=None,
    seconds=None, warnings=[], chain_id=None, parent_id=None, step=None, batch_id=None,
    private=False, public=False, created_at=1_800_000_000.0, started_at=None, finished_at=None,
)  # fmt: skip


def row(status: str, **changes: object) -> GenerationRow:
    return replace(ROW, status=status, **changes)  # type: ignore[arg-type]


def test_missing_generation_needs_nothing() -> None:
    assert decide(None) is Recovery.NOTHING


@pytest.mark.parametrize("status", ["queued", "running"])
def test_open_generation_is_resumed(status: str) -> None:
    assert decide(row(status)) is Recovery.RESUME
    # even one that already had a progress message: it carries on there
    assert decide(row(status, message_id=500)) is Recovery.RESUME


def test_done_but_never_shown_is_posted() -> None:
    done = row("done", output_image=SHA, output_mime="image/png")
    assert decide(done) is Recovery.POST


def test_done_and_shown_needs_nothing() -> None:
    done = row("done", output_image=SHA, output_mime="image/png", message_id=500)
    assert decide(done) is Recovery.NOTHING


def test_done_without_an_output_image_needs_nothing() -> None:
    assert decide(row("done")) is Recovery.NOTHING
    assert decide(row("done", message_id=500)) is Recovery.NOTHING


@pytest.mark.parametrize("status", ["failed", "blocked"])
def test_failure_is_reported(status: str) -> None:
    failed = row(status, error_kind="safety", error="IMAGE_SAFETY")
    assert decide(failed) is Recovery.REPORT
    assert decide(replace(failed, message_id=500)) is Recovery.REPORT  # shown again with Retry


def test_cancelled_needs_nothing() -> None:
    assert decide(row("cancelled", error_kind="cancelled", error="by user")) is Recovery.NOTHING


def test_every_status_has_a_decision() -> None:
    decided = {status: decide(row(status)) for status in GENERATION_STATUSES}
    assert decided == {
        "queued": Recovery.RESUME, "running": Recovery.RESUME, "done": Recovery.NOTHING,
        "failed": Recovery.REPORT, "blocked": Recovery.REPORT, "cancelled": Recovery.NOTHING,
    }  # fmt: skip


# -- the same decisions on rows the store hands back -------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "bot.db")
    yield s
    await s.close()


async def _gen(store: Store) -> int:
    return await store.create_generation(
        user_id=7, guild_id=10, channel_id=20, kind="imagine",
        spec={"task": "generate_image", "subject": "a fox"}, model="gemini-3-pro-image",
        size="1K", aspect="1:1", summary="a fox",
    )  # fmt: skip


async def _decide(store: Store, gen: int) -> Recovery:
    return decide(await store.get_generation(gen))


async def _finish(store: Store, gen: int) -> None:
    sha = await store.put_image(b"result", "image/png")
    assert await store.finish_generation(
        gen, output_image=sha, output_mime="image/png", model_text="", model_content=None,
        prompt_tokens=1, output_tokens=1, thoughts_tokens=0, cost=0.1, model_version=None,
        seconds=1.0,
    )  # fmt: skip


async def test_stored_lifecycle_decisions(store: Store) -> None:
    gen = await _gen(store)
    assert await _decide(store, gen) is Recovery.RESUME
    assert await store.mark_running(gen)
    assert await _decide(store, gen) is Recovery.RESUME
    await _finish(store, gen)
    assert await _decide(store, gen) is Recovery.POST
    await store.set_generation_message(gen, message_id=500, channel_id=20, public=True)
    assert await _decide(store, gen) is Recovery.NOTHING
    assert await _decide(store, 999) is Recovery.NOTHING


@pytest.mark.parametrize(
    ("status", "expected"),
    [("failed", Recovery.REPORT), ("blocked", Recovery.REPORT), ("cancelled", Recovery.NOTHING)],
)
async def test_stored_failure_decisions(store: Store, status: str, expected: Recovery) -> None:
    gen = await _gen(store)
    assert await store.fail_generation(gen, status=status, error_kind="x", error="why")
    assert await _decide(store, gen) is expected
