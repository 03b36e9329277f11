"""Generations (lifecycle, messages, lookups) and chains (tree of steps, head, lineage)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from bot.adapters.store import GenerationRow, Store
from tests.unit.adapters.store.conftest import Backend


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 1.0  # every reading is a second later: orders are unambiguous
        return self.now


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open(clock=Clock())


async def _gen(store: Store, *, user: int = 1, inputs: Sequence[str] = (), **extra: Any) -> int:
    values: dict[str, Any] = {
        "user_id": user, "guild_id": 10, "channel_id": 20, "kind": "imagine",
        "spec": {"task": "generate_image", "subject": "a fox", "z": 1, "a": [1, {"b": "ü"}]},
        "model": "gemini-3-pro-image", "size": "2K", "aspect": "16:9", "summary": "a fox",
        "input_images": inputs,
    }  # fmt: skip
    values.update(extra)
    return await store.create_generation(**values)


async def _finish(store: Store, gen: int, image: bytes | None = None) -> bool:
    out = None if image is None else await store.put_image(image, "image/png")
    return await store.finish_generation(
        gen, output_image=out, output_mime=None if out is None else "image/png",
        model_text="Here you go", model_content=None, prompt_tokens=100, output_tokens=1120,
        thoughts_tokens=50, cost=0.134, model_version="gemini-3-pro-image-001", seconds=17.5,
        warnings=["long prompt"],
    )  # fmt: skip


async def test_lifecycle_queued_running_done(store: Store) -> None:
    ref = await store.put_image(b"reference", "image/jpeg")
    gen = await _gen(store, inputs=[ref], batch_id="b1", private=True, estimated_cost=0.2)
    row = await store.get_generation(gen)
    assert row is not None
    assert (row.status, row.started_at, row.finished_at, row.output_image) == (
        "queued", None, None, None,
    )  # fmt: skip
    assert row.spec == {
        "task": "generate_image", "subject": "a fox", "z": 1, "a": [1, {"b": "ü"}],
    }  # fmt: skip
    assert list(row.spec) == ["task", "subject", "z", "a"]  # key order kept
    assert row.input_images == [ref] and row.private and not row.public
    assert row.batch_id == "b1" and row.estimated_cost == 0.2
    assert [g.id for g in await store.unfinished_generations()] == [gen]

    assert await store.mark_running(gen)
    assert not await store.mark_running(gen)  # only from queued
    assert await _finish(store, gen, b"result")
    row = await store.get_generation(gen)
    assert row is not None and row.status == "done" and not row.is_open
    assert row.output_image is not None and row.output_mime == "image/png"
    assert (row.prompt_tokens, row.output_tokens, row.thoughts_tokens) == (100, 1120, 50)
    assert (row.cost, row.seconds, row.warnings) == (0.134, 17.5, ["long prompt"])
    assert row.model_text == "Here you go" and row.model_version == "gemini-3-pro-image-001"
    assert row.started_at is not None and row.finished_at is not None
    assert row.created_at < row.started_at < row.finished_at
    assert await store.unfinished_generations() == []
    assert not await _finish(store, gen)  # finishing twice changes nothing
    assert not await store.fail_generation(gen, status="failed", error_kind="x", error="y")
    assert (await store.get_generation(gen)) == row


@pytest.mark.parametrize("status", ["failed", "blocked", "cancelled"])
async def test_failures_keep_the_reason(store: Store, status: str) -> None:
    gen = await _gen(store)
    assert await store.fail_generation(
        gen, status=status, error_kind="safety", error="IMAGE_SAFETY"
    )
    row = await store.get_generation(gen)
    assert row is not None
    assert (row.status, row.error_kind, row.error) == (status, "safety", "IMAGE_SAFETY")
    assert row.finished_at is not None
    assert not await _finish(store, gen, b"late")  # a cancelled job's late result is refused


async def test_bad_values_are_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        await _gen(store, kind="paint")
    gen = await _gen(store)
    with pytest.raises(ValueError):
        await store.fail_generation(gen, status="done", error_kind="x", error="y")
    with pytest.raises(Exception, match=r"(?i)foreign key"):
        await _gen(store, inputs=["0" * 64])  # an input that was never stored
    assert await store.get_generation(999) is None


async def test_messages_map_back_to_generations(store: Store) -> None:
    gen = await _gen(store)
    other = await _gen(store)
    await store.set_generation_message(gen, message_id=500, channel_id=20, public=False)
    await store.set_generation_message(gen, message_id=501, channel_id=21, public=True)
    await store.set_generation_message(gen, message_id=502, channel_id=21, public=False)
    await store.set_generation_message(other, message_id=600, channel_id=20, public=False)
    for message in (500, 501, 502):
        row = await store.generation_by_message(message)
        assert row is not None and row.id == gen
    row = await store.get_generation(gen)
    assert row is not None and row.message_id == 502 and row.public  # public stays true
    found = await store.generation_by_message(600)
    assert found is not None and found.id == other and not found.public
    assert await store.generation_by_message(999) is None
    with pytest.raises(LookupError):
        await store.set_generation_message(999, message_id=1, channel_id=1, public=True)


async def test_recent_and_batch(store: Store) -> None:
    mine = [await _gen(store, user=1, batch_id="B") for _ in range(4)]
    theirs = await _gen(store, user=2)
    recent = await store.recent_generations(1, limit=3)
    assert [g.id for g in recent] == mine[::-1][:3]
    assert all(isinstance(g, GenerationRow) and g.user_id == 1 for g in recent)
    assert [g.id for g in await store.recent_generations(2)] == [theirs]
    assert [g.id for g in await store.batch_generations("B")] == mine


# -- chains ---------------------------------------------------------------------------------


async def _step(store: Store, chain: int, generation: int, parent: int | None) -> int:
    return await store.add_chain_step(
        chain_id=chain, generation_id=generation, parent_generation_id=parent
    )


async def test_chain_tree_head_and_lineage(store: Store) -> None:
    root = await _gen(store)
    await _finish(store, root, b"v0")
    chain_id = await store.create_chain(
        root_generation_id=root, guild_id=10, channel_id=20, thread_id=None, owner_id=1
    )
    chain = await store.get_chain(chain_id)
    assert chain is not None
    assert (chain.root_generation_id, chain.head_generation_id, chain.thread_id) == (
        root, root, None,
    )  # fmt: skip
    assert await _step(store, chain_id, root, None) == 0

    await store.set_chain_thread(chain_id, 777)
    assert (await store.chain_by_thread(777)) == await store.get_chain(chain_id)

    # root -> s1 -> s2, and a branch root -> b1 (a reply to the older result)
    s1 = await _gen(store, kind="refine", chain_id=chain_id, parent_id=root)
    assert await _step(store, chain_id, s1, root) == 1
    s2 = await _gen(store, kind="refine")
    assert await _step(store, chain_id, s2, s1) == 2
    b1 = await _gen(store, kind="edit")
    assert await _step(store, chain_id, b1, root) == 1
    # Idempotent for a step already added.
    assert await _step(store, chain_id, s2, s1) == 2

    await store.set_chain_head(chain_id, s2)
    chain = await store.get_chain(chain_id)
    assert chain is not None and chain.head_generation_id == s2
    row = await store.get_generation(s2)
    assert row is not None and (row.chain_id, row.parent_id, row.step) == (chain_id, s1, 2)

    for g in (root, s1, s2, b1):
        found = await store.chain_for_generation(g)
        assert found is not None and found.id == chain_id

    assert [g.id for g in await store.chain_lineage(s2, 10)] == [root, s1, s2]
    assert [g.id for g in await store.chain_lineage(s2, 2)] == [s1, s2]
    assert [g.id for g in await store.chain_lineage(b1, 3)] == [root, b1]
    assert await store.chain_lineage(s2, 0) == []
    assert await store.chain_lineage(12345, 3) == []

    steps = await store.chain_steps(chain_id)
    assert [(s.generation_id, s.step, s.parent_generation_id) for s in steps] == [
        (root, 0, None), (s1, 1, root), (b1, 1, root), (s2, 2, s1),
    ]  # fmt: skip

    # Undo: the head moves back to the parent.
    await store.set_chain_head(chain_id, s1)
    chain = await store.get_chain(chain_id)
    assert chain is not None and chain.head_generation_id == s1


async def test_chain_rules(store: Store) -> None:
    root = await _gen(store)
    chain_id = await store.create_chain(
        root_generation_id=root, guild_id=None, channel_id=20, thread_id=5, owner_id=1
    )
    with pytest.raises(ValueError, match="already in chain"):
        await store.create_chain(
            root_generation_id=root, guild_id=None, channel_id=20, thread_id=6, owner_id=1
        )
    with pytest.raises(ValueError, match="no generation"):
        await store.create_chain(
            root_generation_id=999, guild_id=None, channel_id=20, thread_id=7, owner_id=1
        )
    stranger = await _gen(store)
    with pytest.raises(ValueError, match="not a step"):
        await _step(store, chain_id, stranger, 999)
    with pytest.raises(ValueError, match="root"):
        await _step(store, chain_id, stranger, None)
    with pytest.raises(ValueError, match="not a step"):
        await store.set_chain_head(chain_id, stranger)
    other_root = await _gen(store)
    other = await store.create_chain(
        root_generation_id=other_root, guild_id=None, channel_id=20, thread_id=None, owner_id=2
    )
    with pytest.raises(ValueError, match="already in chain"):
        await _step(store, other, root, other_root)
    with pytest.raises(LookupError):
        await store.set_chain_thread(999, 1)
    await store.set_chain_thread(chain_id, None)
    assert await store.chain_by_thread(5) is None
    assert await store.chain_for_generation(stranger) is None
    assert await store.get_chain(999) is None


async def test_a_cancelled_transaction_leaves_nothing_and_the_store_keeps_working(
    store: Store,
) -> None:
    started = asyncio.Event()

    async def interrupted() -> None:
        async with store.database.transaction() as tx:
            await tx.execute(
                "INSERT INTO user_settings (user_id, key, value, updated_at)"
                " VALUES (1, 'k', '1', 0)"
            )
            started.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(interrupted())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.get_user_settings(1) == {}
    gen = await _gen(store)
    assert await store.get_generation(gen) is not None
