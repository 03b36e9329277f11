"""Finished records (describes, Split tiles): one insert, never open, counted only if charged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "bot.db")
    yield s
    await s.close()


async def test_a_finished_record_is_never_open(store: Store) -> None:
    sha = await store.put_image(b"\x89PNG fake", "image/png")
    gid = await store.record_generation(
        user_id=1,
        guild_id=10,
        channel_id=20,
        kind="describe",
        spec={"task": "generate_image", "subject": "a fox"},
        model="gemini-3.8-flash",
        size="1K",
        aspect="16:9",
        summary="Describe: a fox",
        input_images=[sha],
        model_text='{"subject": "a fox"}',
        prompt_tokens=900,
        output_tokens=300,
        thoughts_tokens=200,
        cost=0.0026,
        seconds=2.5,
    )
    row = await store.get_generation(gid)
    assert row is not None and row.status == "done" and not row.is_open
    assert row.input_images == [sha] and row.cost == 0.0026 and row.thoughts_tokens == 200
    assert row.started_at == row.finished_at == row.created_at
    assert await store.unfinished_generations() == []
    pending = await store.reserved_today(user_id=1, guild_id=10)
    assert pending.pending_images == 0 and pending.cost == 0  # charging is record_usage's


async def test_tiles_are_found_by_their_split(store: Store) -> None:
    sha = await store.put_image(b"tile bytes", "image/png")
    ids = [
        await store.record_generation(
            user_id=1,
            guild_id=None,
            channel_id=20,
            kind="tile",
            spec={"metadata": {"tile": {"number": n}}},
            model="gemini-3-pro-image",
            size="1K",
            aspect="1:1",
            summary=f"Tile {n}",
            output_image=sha,
            output_mime="image/png",
            batch_id="split:7",
        )
        for n in (1, 2)
    ]
    assert [g.id for g in await store.batch_generations("split:7")] == ids


async def test_bad_records_are_refused(store: Store) -> None:
    base = {
        "user_id": 1, "guild_id": 1, "channel_id": 1, "spec": {}, "model": "m", "size": "1K",
        "aspect": "1:1", "summary": "s",
    }  # fmt: skip
    with pytest.raises(ValueError, match="kind"):
        await store.record_generation(kind="nope", **base)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="status"):
        await store.record_generation(kind="describe", status="queued", **base)  # type: ignore[arg-type]
