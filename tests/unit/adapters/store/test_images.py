"""Images: content-addressed bytes (files beside SQLite, image_blobs on PostgreSQL),
model-content bytes kept out of the generation rows, retention."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from google.genai import types
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.adapters.store import Store
from bot.adapters.store.content import dehydrate, hydrate, references
from bot.adapters.store.tables import generations, image_blobs, images
from tests.unit.adapters.store.conftest import Backend, bytes_stored

DAY = 86_400.0
T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def store(backend: Backend, clock: Clock) -> Store:
    return await backend.open(clock=clock)


@pytest.fixture
async def file_store(tmp_path: Path, clock: Clock) -> AsyncIterator[Store]:
    """SQLite with its image files: for what only files can do (be truncated, be swept)."""
    s = await Store.open(tmp_path / "data" / "bot.db", clock=clock)
    yield s
    await s.close()


async def _count(store: Store, table: sa.Table) -> int:
    async with store.database.reading() as tx:
        return int(await tx.scalar(sa.select(sa.func.count()).select_from(table)))


def png(tag: str, size: int = 64) -> bytes:
    """Distinct bytes per tag (the store does not decode images)."""
    return b"\x89PNG\r\n\x1a\n" + tag.encode() * size


async def test_put_get_is_content_addressed_and_idempotent(
    store: Store, backend: Backend, tmp_path: Path
) -> None:
    data = png("cat", 10_000)
    sha = await store.put_image(data, "image/png")
    assert sha == hashlib.sha256(data).hexdigest()
    assert await store.put_image(data, "image/png") == sha
    assert await store.get_image(sha) == (data, "image/png")
    assert await store.has_image(sha)
    assert await _count(store, images) == 1
    if backend.is_sqlite:  # files beside the database, none in it
        path = tmp_path / "data" / "images" / sha[:2] / sha
        assert path.read_bytes() == data
        assert [p.name for p in path.parent.iterdir()] == [sha]  # no temporary files left
        assert await _count(store, image_blobs) == 0
    else:  # PostgreSQL: the bytes live in the database, no disk needed
        assert store.images_dir is None and store.images_in_database
        assert await _count(store, image_blobs) == 1


@pytest.mark.parametrize("mode", ["files", "database"])
async def test_either_engine_keeps_bytes_either_way(
    backend: Backend, tmp_path: Path, mode: str
) -> None:
    """The byte store is one switch: SQLite can keep them in the table, PostgreSQL in files
    (a shared disk); the same code serves all four."""
    images_dir = tmp_path / "shared-disk" if mode == "files" else None
    store = await backend.open(image_bytes=mode, images_dir=images_dir, clock=Clock(T0))
    data = png("either", 1000)
    sha = await store.put_image(data, "image/webp")
    assert await store.get_image(sha) == (data, "image/webp")
    assert await bytes_stored(store, sha)
    assert (await _count(store, image_blobs) == 1) == (mode == "database")
    gen = await _generation(store, inputs=[sha])
    await _done(store, gen)
    assert await store.purge_expired_images(retention_days=1, now=T0 + 3 * DAY) == 1
    assert await store.get_image(sha) is None and not await store.has_image(sha)
    assert not await bytes_stored(store, sha)
    await store.put_image(data, "image/webp")  # putting it again revives it
    assert await store.get_image(sha) == (data, "image/webp")


async def test_get_image_of_unknown_or_malformed_sha(store: Store) -> None:
    assert await store.get_image("0" * 64) is None
    assert await store.get_image("../../etc/passwd") is None
    assert await store.get_image("AB" * 32) is None  # only lowercase hex names a file
    with pytest.raises(ValueError):
        await store.put_image(b"", "image/png")


async def test_a_missing_or_truncated_file_reads_as_none(file_store: Store, tmp_path: Path) -> None:
    store = file_store
    sha = await store.put_image(png("x"), "image/png")
    path = tmp_path / "data" / "images" / sha[:2] / sha
    path.write_bytes(b"half")
    assert await store.get_image(sha) is None
    path.unlink()
    assert await store.get_image(sha) is None
    assert not await store.has_image(sha)
    await store.put_image(png("x"), "image/png")  # putting it again repairs it
    assert await store.get_image(sha) == (png("x"), "image/png")


async def test_custom_images_dir(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db" / "bot.db", images_dir=tmp_path / "elsewhere")
    try:
        sha = await store.put_image(png("y"), "image/jpeg")
        assert (tmp_path / "elsewhere" / sha[:2] / sha).is_file()
        assert not (tmp_path / "db" / "images").exists()
    finally:
        await store.close()


async def test_leftover_temporary_files_are_swept_on_open(tmp_path: Path) -> None:
    folder = tmp_path / "images" / "ab"
    folder.mkdir(parents=True)
    stale = folder / (".ab" + "0" * 62 + ".123.tmp")
    stale.write_bytes(b"partial")
    os.utime(stale, (T0, T0))  # long ago
    store = await Store.open(tmp_path / "bot.db")
    await store.close()
    assert not stale.exists()


# -- model content --------------------------------------------------------------------------


def _model_turn(image: bytes) -> dict[str, Any]:
    content = types.Content(
        role="model",
        parts=[
            types.Part(text="thinking", thought=True),
            types.Part(text="Here it is.", thought_signature=b"\x01sig-text\xff"),
            types.Part(
                inline_data=types.Blob(data=image, mime_type="image/png"),
                thought_signature=b"\xfe\xffsig-image",
            ),
        ],
    )
    dumped: dict[str, Any] = content.model_dump(mode="json", exclude_none=True)
    return dumped


async def _done(store: Store, gen: int, **overrides: Any) -> None:
    values: dict[str, Any] = {
        "output_image": None, "output_mime": None, "model_text": "", "model_content": None,
        "prompt_tokens": 1, "output_tokens": 2, "thoughts_tokens": 3, "cost": 0.1,
        "model_version": "v", "seconds": 1.0,
    }  # fmt: skip
    values.update(overrides)
    assert await store.finish_generation(gen, **values)


async def _generation(store: Store, *, inputs: Sequence[str] = (), user: int = 1) -> int:
    return await store.create_generation(
        user_id=user, guild_id=10, channel_id=20, kind="imagine", spec={"subject": "s"},
        model="gemini-3-pro-image", size="1K", aspect="1:1", summary="s", input_images=inputs,
    )  # fmt: skip


async def test_model_content_is_stored_without_image_bytes(store: Store) -> None:
    image = png("result", 50_000)
    turn = _model_turn(image)
    gen = await _generation(store)
    out = await store.put_image(image, "image/png")
    await _done(store, gen, output_image=out, output_mime="image/png", model_content=turn)

    row = await store.get_generation(gen)
    assert row is not None and row.model_content is not None
    blob = row.model_content["parts"][2]["inline_data"]
    assert "data" not in blob and blob["data_sha256"] == out
    signature = row.model_content["parts"][2]["thought_signature"]
    assert signature == turn["parts"][2]["thought_signature"]
    async with store.database.reading() as tx:
        stored = await tx.scalar(sa.select(generations.c.model_content))
    assert len(stored) < 1000  # not 66 KB of base64

    # A forgotten hydrate fails loudly, a hydrated one is the model's turn unchanged.
    with pytest.raises(ValueError):
        types.Content.model_validate(row.model_content)
    hydrated = await store.hydrate_model_content(row.model_content)
    assert hydrated == turn
    restored = types.Content.model_validate(hydrated)
    assert restored.parts is not None and restored.parts[2].inline_data is not None
    assert restored.parts[2].inline_data.data == image
    assert restored.parts[2].thought_signature == b"\xfe\xffsig-image"


def test_dehydrate_handles_camel_case_standard_base64_and_non_base64() -> None:
    raw = bytes(range(256)) * 4
    content = {
        "parts": [
            {"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(raw).decode()}},
            {"inline_data": {"mime_type": "image/png", "data": "not base64 !!"}},
            {"text": "hi"},
        ]
    }
    stored, blobs = dehydrate(content)
    assert [b.data for b in blobs] == [raw] and blobs[0].mime_type == "image/jpeg"
    assert references(stored) == [blobs[0].sha]
    assert stored["parts"][1] == content["parts"][1]
    assert hydrate(stored, {blobs[0].sha: raw}) == content


@settings(max_examples=60, deadline=None)
@given(
    images=st.lists(st.tuples(st.binary(min_size=1, max_size=300), st.booleans()), max_size=4),
    text=st.text(max_size=20),
)
def test_dehydrate_then_hydrate_gives_back_the_same_json(
    images: list[tuple[bytes, bool]], text: str
) -> None:
    parts: list[dict[str, Any]] = [{"text": text, "thought_signature": "c2ln"}]
    for raw, url_safe in images:
        encoded = (base64.urlsafe_b64encode if url_safe else base64.b64encode)(raw).decode()
        parts.append({"inline_data": {"data": encoded, "mime_type": "image/png"}})
    content = {"role": "model", "parts": parts}
    stored, blobs = dehydrate(content)
    assert "'data'" not in str(stored)
    assert hydrate(stored, {b.sha: b.data for b in blobs}) == content
    assert set(references(stored)) == {b.sha for b in blobs}


# -- retention ------------------------------------------------------------------------------


async def test_retention_deletes_only_what_it_should(store: Store, clock: Clock) -> None:
    async def image(tag: str) -> str:
        return await store.put_image(png(tag), "image/png")

    # Made long ago (T0).
    old_out = await image("old-output")  # finished, inactive generation -> purged
    old_in = await image("old-input")  # its input -> purged
    anchor_img = await image("anchor")  # an anchor, also used as an input -> kept
    chain_img = await image("chain")  # output of an old step of a chain touched lately -> kept
    shared = await image("shared")  # old output, reused as input by a recent generation -> kept
    running_in = await image("running")  # input of a generation still running -> kept
    failed_in = await image("failed")  # input of an old failed generation -> purged
    orphan = await image("orphan")  # stored, never used -> purged

    old = await _generation(store, inputs=[old_in, anchor_img])
    await _done(store, old, output_image=old_out, output_mime="image/png")
    await store.save_anchor(
        owner_id=1, name="me", kind="face", note=None, image_sha=anchor_img, width=8, height=8
    )
    root = await _generation(store)
    await _done(store, root, output_image=chain_img, output_mime="image/png")
    chain = await store.create_chain(
        root_generation_id=root, guild_id=10, channel_id=20, thread_id=99, owner_id=1
    )
    shared_gen = await _generation(store)
    await _done(store, shared_gen, output_image=shared, output_mime="image/png")
    running = await _generation(store, inputs=[running_in])
    await store.mark_running(running)
    failed = await _generation(store, inputs=[failed_in])
    await store.fail_generation(failed, status="failed", error_kind="timeout", error="slow")

    # 35 days later: recent activity.
    clock.now = T0 + 35 * DAY
    recent_out = await image("recent")
    recent = await _generation(store, inputs=[shared])
    await _done(store, recent, output_image=recent_out, output_mime="image/png")
    step = await _generation(store)
    await store.add_chain_step(chain_id=chain, generation_id=step, parent_generation_id=root)
    fresh_orphan = await image("fresh-orphan")  # just uploaded, not yet used -> kept

    clock.now = T0 + 40 * DAY
    deleted = await store.purge_expired_images(retention_days=30)
    assert deleted == 4

    for sha in (old_out, old_in, failed_in, orphan):
        assert await store.get_image(sha) is None, sha
    for sha in (anchor_img, chain_img, shared, running_in, recent_out, fresh_orphan):
        assert await store.get_image(sha) is not None, sha

    # Records stay: the caller can say "past retention".
    row = await store.get_generation(old)
    assert row is not None and row.output_image == old_out and row.status == "done"
    assert row.input_images == [old_in, anchor_img]

    assert await store.purge_expired_images(retention_days=30) == 0  # nothing left to do
    # Putting the same bytes again revives them.
    await store.put_image(png("old-output"), "image/png")
    assert await store.get_image(old_out) is not None

    # Much later everything old goes, except the anchor (never purged by retention).
    assert await store.purge_expired_images(retention_days=1, now=T0 + 400 * DAY) == 5
    assert await store.get_image(anchor_img) is not None
    # The running generation's input is kept for as long as it runs.
    assert await store.get_image(running_in) is not None


async def test_purge_keeps_model_content_images_of_active_generations(store: Store) -> None:
    image = png("content-only", 100)
    gen = await _generation(store)
    await _done(store, gen, model_content=_model_turn(image))  # no output_image recorded
    assert await store.purge_expired_images(retention_days=30, now=T0 + 10 * DAY) == 0
    row = await store.get_generation(gen)
    assert row is not None
    assert await store.hydrate_model_content(row.model_content) is not None
    assert await store.purge_expired_images(retention_days=30, now=T0 + 31 * DAY) == 1
    assert await store.hydrate_model_content(row.model_content) is None  # past retention
