"""The bounded multi-turn history sent with a chain step.

Each step is sent as a multi-turn request: a bounded window of earlier turns in which the
model's stored content goes back unchanged (Gemini 3 verifies its thought signatures).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from google.genai import types

from bot.adapters.gemini import content_from_json
from bot.adapters.prompts import Defaults, SpecError, compile_request, prepare
from bot.adapters.store import GenerationRow, Store
from bot.config import capability
from bot.core.submission import load_inputs, split_stored_spec

log = logging.getLogger(__name__)

# Google advises keeping a whole request under 20 MB inline; base64 adds a third.
REQUEST_IMAGE_BYTES = 14 * 1024 * 1024
CHAIN_REF = "chain:latest"


@dataclass
class _Turn:
    """One earlier step as a user turn (with and without the image it edited) and the
    model's stored answer."""

    user_full: types.Content
    user_lean: types.Content
    model: types.Content


def _inline_bytes(content: types.Content) -> int:
    return sum(
        len(p.inline_data.data or b"") for p in content.parts or [] if p.inline_data is not None
    )


def _inline_images(content: types.Content) -> int:
    return sum(1 for p in content.parts or [] if p.inline_data is not None)


async def build_history(
    store: Store, parent_id: int, *, window: int, current: types.Content | None = None
) -> list[types.Content]:
    """Earlier turns for a step whose parent is `parent_id`: the last N steps of its lineage
    (N = `window`, the setting chain_history_steps) as alternating user/model turns, oldest first.

    The model's turns are its stored content, byte for byte, so Gemini's thought signatures
    verify. A user turn leaves out the image it edited (the model turn before it shows that
    image) except the first: a window that starts mid-chain starts with a user turn carrying
    that step's image. Steps whose images are past retention, and turns that would push the
    request (with `current`) past the model's input-image limit or the inline size budget,
    are dropped from the old end."""
    if window <= 0:
        return []
    lineage = await store.chain_lineage(parent_id, limit=window)
    if not lineage:
        return []
    turns: list[_Turn] = []
    for step in reversed(lineage):  # newest first: stop at the first unusable step
        if step.status != "done" or not step.model_content:
            break
        turn = await _load_turn(store, step)
        if turn is None:
            break
        turns.append(turn)
    turns.reverse()
    max_images = capability(lineage[-1].model).max_input_images
    base_bytes = _inline_bytes(current) if current is not None else 0
    base_images = _inline_images(current) if current is not None else 0
    for start in range(len(turns)):
        kept = turns[start:]
        users = [kept[0].user_full, *(t.user_lean for t in kept[1:])]
        size = (
            base_bytes + sum(map(_inline_bytes, users)) + sum(_inline_bytes(t.model) for t in kept)
        )
        images = base_images + sum(map(_inline_images, users))
        if size <= REQUEST_IMAGE_BYTES and images <= max_images:
            history: list[types.Content] = []
            for user, turn in zip(users, kept, strict=True):
                history += [user, turn.model]
            return history
    return []


async def _load_turn(store: Store, step: GenerationRow) -> _Turn | None:
    """A stored step as turns; None if one of its images is gone or its spec no longer
    compiles."""
    model_json = await store.hydrate_model_content(step.model_content)
    if model_json is None:
        return None
    spec, resolved = split_stored_spec(step.spec)
    inputs = await load_inputs(store, resolved)
    if inputs is None:
        return None
    images = [item.image for item in inputs]
    try:
        prepared = prepare(
            spec, None, Defaults(model=step.model, size=step.size, aspect=step.aspect)
        )
        compiled = compile_request(prepared, images)
    except (SpecError, ValueError) as exc:
        log.info("step %s left out of the history: %s", step.id, exc)
        return None
    full = compiled.user_content()
    # parts: [json, label 1, image 1, label 2, image 2, ...]
    lean_parts: list[types.Part] = [compiled.parts[0]]
    for n, ref in enumerate(prepared.spec.inputs):
        label, image = compiled.parts[1 + 2 * n], compiled.parts[2 + 2 * n]
        if ref.data.strip() == CHAIN_REF:
            lean_parts.append(types.Part(text=f"{label.text} — the image from your previous turn"))
        else:
            lean_parts += [label, image]
    return _Turn(
        user_full=full,
        user_lean=types.Content(role="user", parts=lean_parts),
        model=content_from_json(model_json),
    )
