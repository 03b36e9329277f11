"""Tests for bot.core.history.build_history against a real Store: the window, the user and
model turns, retention and the request budget (inline bytes, input images)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from hashlib import sha256 as _sha256
from pathlib import Path

import pytest
from google.genai import types

from bot.adapters.gemini import content_to_json
from bot.adapters.prompts import (
    Defaults,
    InputRef,
    PreparedSpec,
    RequestOptions,
    ResolvedImage,
    compile_request,
    prepare,
)
from bot.adapters.store import Store
from bot.core.history import CHAIN_REF, REQUEST_IMAGE_BYTES, build_history
from bot.core.replay import replay_submission
from bot.core.submission import InputImage, Requester, stored_spec

MODEL = "gemini-3-pro-image"
DEFAULTS = Defaults(model=MODEL, size="1K", aspect="1:1")
T0 = 1_800_000_000.0
DAY = 86_400.0
NOTE = " — the image from your previous turn"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "bot.db", clock=clock)
    yield s
    await s.close()


def png(tag: int, size: int = 64) -> bytes:
    """Distinct image bytes (the store only hashes them)."""
    head = b"\x89PNG" + tag.to_bytes(4, "big")
    return head + bytes([tag % 256]) * max(0, size - len(head))


def sha256(data: bytes) -> str:
    return _sha256(data).hexdigest()


def model_turn(n: int, image: bytes) -> types.Content:
    """A Gemini 3 answer: a signed thought, the signed image, a closing text."""
    return types.Content(
        role="model",
        parts=[
            types.Part(text=f"thinking {n}", thought=True, thought_signature=b"\x00\xff-t%d" % n),
            types.Part(
                inline_data=types.Blob(data=image, mime_type="image/png"),
                thought_signature=bytes([n, 0x80, 0xFE]) + b"-img",
            ),
            types.Part(text=f"Here is step {n}"),
        ],
    )


@dataclass
class Step:
    id: int
    output: bytes
    model: types.Content
    prepared: PreparedSpec
    images: list[ResolvedImage]  # what it was sent, in order

    def sent(self) -> types.Content:
        return compile_request(self.prepared, self.images).user_content()


class Lineage:
    """Builds a chain as the bot does: a root, then edit steps on `chain:latest` (plus
    reference attachments), each stored with `stored_spec` and finished with its model turn."""

    def __init__(self, store: Store, *, chained: bool = True) -> None:
        self.store = store
        self.chained = chained
        self.chain_id: int | None = None
        self.steps: list[Step] = []

    async def _finish(self, gen: int, n: int, output: bytes) -> types.Content:
        content = model_turn(n, output)
        sha = await self.store.put_image(output, "image/png")
        assert await self.store.finish_generation(
            gen, output_image=sha, output_mime="image/png", model_text=f"Here is step {n}",
            model_content=content_to_json(content), prompt_tokens=1, output_tokens=1,
            thoughts_tokens=0, cost=0.1, model_version=MODEL, seconds=1.0,
        )  # fmt: skip
        return content

    async def root(self, output: bytes) -> Step:
        prepared = prepare({"task": "generate_image", "subject": "a fox"}, None, DEFAULTS)
        gen = await self.store.create_generation(
            user_id=1, guild_id=10, channel_id=20, kind="imagine",
            spec=stored_spec(prepared, []), model=MODEL, size="1K", aspect="1:1",
            summary="a fox",
        )  # fmt: skip
        if self.chained:
            self.chain_id = await self.store.create_chain(
                root_generation_id=gen, guild_id=10, channel_id=20, thread_id=None, owner_id=1
            )
        content = await self._finish(gen, 0, output)
        self.steps.append(Step(gen, output, content, prepared, []))
        return self.steps[-1]

    async def step(
        self, output: bytes, *, refs: Sequence[bytes] = (), finished: bool = True
    ) -> Step:
        parent = self.steps[-1]
        n = len(self.steps)
        inputs = [InputRef(type="image", data=CHAIN_REF, role="edit_target")]
        inputs += [InputRef(type="image", data=f"attachment:{i}") for i in range(1, len(refs) + 1)]
        raw = {"task": "edit_image", "chain_id": str(self.chain_id), "changes": f"change {n}"}
        prepared = prepare(raw, RequestOptions(inputs=inputs), DEFAULTS)
        resolved = [
            InputImage(
                ResolvedImage(parent.output, "image/png", f"step {n - 1}"),
                await self.store.put_image(parent.output, "image/png"),
            )
        ]
        for i, ref in enumerate(refs, start=1):
            sha = await self.store.put_image(ref, "image/png")
            resolved.append(InputImage(ResolvedImage(ref, "image/png", f"attachment {i}"), sha))
        gen = await self.store.create_generation(
            user_id=1, guild_id=10, channel_id=20, kind="refine",
            spec=stored_spec(prepared, resolved), model=MODEL, size="1K", aspect="1:1",
            summary=f"Edit: change {n}", input_images=[item.sha for item in resolved],
            chain_id=self.chain_id, parent_id=parent.id,
        )  # fmt: skip
        if self.chained:
            assert self.chain_id is not None
            await self.store.add_chain_step(
                chain_id=self.chain_id, generation_id=gen, parent_generation_id=parent.id
            )
        content = await self._finish(gen, n, output) if finished else types.Content(role="model")
        self.steps.append(Step(gen, output, content, prepared, [r.image for r in resolved]))
        return self.steps[-1]


async def make_chain(store: Store, steps: int, *, size: int = 64, refs: int = 0) -> Lineage:
    """A root and `steps` edit steps, each with `refs` extra reference images."""
    chain = Lineage(store)
    await chain.root(png(0, size))
    for n in range(1, steps + 1):
        await chain.step(png(n, size), refs=[png(100 * n + i) for i in range(refs)])
    return chain


def models(history: list[types.Content]) -> list[types.Content]:
    return history[1::2]


def images_in(content: types.Content) -> list[bytes]:
    return [p.inline_data.data or b"" for p in content.parts or [] if p.inline_data is not None]


# -- window -----------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [0, -1])
async def test_window_zero_gives_no_history(store: Store, window: int) -> None:
    chain = await make_chain(store, 2)
    assert await build_history(store, chain.steps[-1].id, window=window) == []


async def test_unknown_parent_gives_no_history(store: Store) -> None:
    assert await build_history(store, 999, window=5) == []


async def test_long_chain_keeps_only_the_last_steps_oldest_first(store: Store) -> None:
    chain = await make_chain(store, 5)
    history = await build_history(store, chain.steps[-1].id, window=3)
    assert [c.role for c in history] == ["user", "model"] * 3
    assert models(history) == [s.model for s in chain.steps[3:]]  # steps 3, 4, 5
    assert '"change 3"' in (history[0].parts or [])[0].text  # type: ignore[operator]


async def test_short_chain_is_sent_whole_from_the_root(store: Store) -> None:
    chain = await make_chain(store, 2)
    history = await build_history(store, chain.steps[-1].id, window=10)
    assert [c.role for c in history] == ["user", "model"] * 3
    assert history[0] == chain.steps[0].sent()  # the root's prompt, no image
    assert models(history) == [s.model for s in chain.steps]


async def test_history_of_a_branch_follows_its_own_parents(store: Store) -> None:
    chain = await make_chain(store, 2)
    chain.steps.pop()  # branch from step 1: a sibling of step 2
    sibling = await chain.step(png(50))
    history = await build_history(store, sibling.id, window=10)
    assert models(history) == [chain.steps[0].model, chain.steps[1].model, sibling.model]


# -- user turns -------------------------------------------------------------------------------


async def test_first_user_turn_is_the_request_as_sent_with_its_image(store: Store) -> None:
    chain = await make_chain(store, 4)
    history = await build_history(store, chain.steps[-1].id, window=2)
    first = chain.steps[3]
    assert history[0] == first.sent()
    assert images_in(history[0]) == [chain.steps[2].output]  # the image it edited


async def test_later_user_turns_replace_chain_latest_by_a_note(store: Store) -> None:
    chain = await make_chain(store, 3)
    history = await build_history(store, chain.steps[-1].id, window=3)
    for turn, step in zip(history[2::2], chain.steps[2:], strict=True):
        sent = step.sent().parts or []
        parts = turn.parts or []
        assert images_in(turn) == []
        assert [p.text for p in parts] == [sent[0].text, f"{sent[1].text}{NOTE}"]


async def test_later_user_turns_keep_their_other_reference_images(store: Store) -> None:
    chain = await make_chain(store, 2, refs=2)
    history = await build_history(store, chain.steps[-1].id, window=2)
    step2 = chain.steps[2]
    assert images_in(history[0]) == [img.data for img in chain.steps[1].images]  # all three
    lean = history[2].parts or []
    assert images_in(history[2]) == [png(200), png(201)]  # the references, not chain:latest
    assert lean[1].text == f"Image 1: step 1{NOTE}"
    assert [p.text for p in lean[2::2]] == ["Image 2: attachment 1", "Image 3: attachment 2"]
    assert lean[0].text == (step2.sent().parts or [])[0].text


# -- model turns ------------------------------------------------------------------------------


async def test_model_turns_are_the_stored_content_with_signatures_byte_for_byte(
    store: Store,
) -> None:
    chain = await make_chain(store, 3)
    history = await build_history(store, chain.steps[-1].id, window=3)
    for turn, step in zip(models(history), chain.steps[1:], strict=True):
        assert turn == step.model
        got, want = turn.parts or [], step.model.parts or []
        assert [p.thought_signature for p in got] == [p.thought_signature for p in want]
        assert images_in(turn) == [step.output]


# -- retention --------------------------------------------------------------------------------


async def test_step_past_retention_cuts_the_history_there(store: Store, clock: Clock) -> None:
    chain = Lineage(store, chained=False)  # a chain row would keep every step's images
    await chain.root(png(0))
    await chain.step(png(1))
    await chain.step(png(2), refs=[png(20)])  # png(20): only this old step used it
    clock.now = T0 + 40 * DAY
    await chain.step(png(3), refs=[png(0), png(1)])  # keeps the older steps' images alive
    await chain.step(png(4))
    assert await store.purge_expired_images(retention_days=30) > 0
    gone = chain.steps[2].images[-1]
    assert gone.data == png(20)
    assert await store.get_image(sha256(gone.data)) is None
    assert await store.get_image(sha256(png(0))) is not None  # steps 0-1 are still whole
    history = await build_history(store, chain.steps[-1].id, window=10)
    assert models(history) == [chain.steps[3].model, chain.steps[4].model]
    assert history[0] == chain.steps[3].sent()  # the cut starts with a full user turn


async def test_parent_past_retention_gives_no_history(store: Store, clock: Clock) -> None:
    chain = await make_chain(store, 2)
    assert await store.purge_expired_images(retention_days=30, now=T0 + 400 * DAY) > 0
    assert await build_history(store, chain.steps[-1].id, window=10) == []


# -- budget -----------------------------------------------------------------------------------


BIG = REQUEST_IMAGE_BYTES // 5  # five of these fill the inline budget


async def test_inline_bytes_budget_drops_turns_from_the_old_end(store: Store) -> None:
    chain = await make_chain(store, 5, size=BIG)
    history = await build_history(store, chain.steps[-1].id, window=6)
    # 4 model images + the first user turn's input = 5 BIG; one more step would not fit.
    assert models(history) == [s.model for s in chain.steps[2:]]
    assert history[0] == chain.steps[2].sent()
    assert sum(map(len, (img for c in history for img in images_in(c)))) <= REQUEST_IMAGE_BYTES


async def test_inline_bytes_budget_counts_the_current_request(store: Store) -> None:
    chain = await make_chain(store, 5, size=BIG)
    current = types.Content(
        role="user", parts=[types.Part.from_bytes(data=png(99, BIG), mime_type="image/png")]
    )
    history = await build_history(store, chain.steps[-1].id, window=6, current=current)
    assert models(history) == [s.model for s in chain.steps[3:]]
    assert history[0] == chain.steps[3].sent()


async def test_input_image_limit_drops_turns_from_the_old_end(store: Store) -> None:
    chain = await make_chain(store, 4, refs=4)  # user turns: 5 images in full, 4 lean
    history = await build_history(store, chain.steps[-1].id, window=4)
    assert models(history) == [s.model for s in chain.steps[2:]]  # 5 + 4 + 4 = 13 <= 14
    assert sum(len(images_in(c)) for c in history[0::2]) == 13


async def test_input_image_limit_counts_the_current_request(store: Store) -> None:
    chain = await make_chain(store, 4, refs=4)
    current = types.Content(
        role="user",
        parts=[types.Part.from_bytes(data=png(90 + i), mime_type="image/png") for i in range(2)],
    )
    history = await build_history(store, chain.steps[-1].id, window=4, current=current)
    assert models(history) == [s.model for s in chain.steps[3:]]  # 5 + 4 + 2 = 11


async def test_current_request_at_the_image_limit_leaves_no_room_for_history(
    store: Store,
) -> None:
    chain = await make_chain(store, 2)
    current = types.Content(
        role="user",
        parts=[types.Part.from_bytes(data=png(90 + i), mime_type="image/png") for i in range(14)],
    )
    # Steps 1-2: the first user turn carries one image, and 14 + 1 > 14.
    assert await build_history(store, chain.steps[-1].id, window=2, current=current) == []


def inline_bytes(contents: Sequence[types.Content]) -> int:
    return sum(len(img) for c in contents for img in images_in(c))


async def test_submitted_step_history_and_request_fit_the_budget_together(store: Store) -> None:
    """What chains.step_submission does: the history is built with `current`."""
    chain = await make_chain(store, 5, size=BIG)
    queued = await chain.step(png(6, BIG), finished=False)
    history = await build_history(store, chain.steps[-2].id, window=6, current=queued.sent())
    assert inline_bytes([*history, queued.sent()]) <= REQUEST_IMAGE_BYTES


async def test_replayed_step_history_leaves_room_for_the_step_itself(store: Store) -> None:
    chain = await make_chain(store, 5, size=BIG)
    queued = await chain.step(png(6, BIG), finished=False)  # left queued by a restart
    gen = await store.get_generation(queued.id)
    assert gen is not None and gen.parent_id == chain.steps[-2].id
    sub = await replay_submission(
        store, gen, Requester(1, 10, 20), kind="refine", private=False, history_window=6
    )
    current = compile_request(sub.prepared, [item.image for item in sub.inputs]).user_content()
    assert current == queued.sent()
    assert inline_bytes([*sub.history, current]) <= REQUEST_IMAGE_BYTES
