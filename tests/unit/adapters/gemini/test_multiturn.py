"""Multi-turn editing: history sent unchanged, Content <-> JSON byte for byte, signatures checked."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from google.genai import types
from hypothesis import given
from hypothesis import strategies as st

from bot.adapters.gemini import (
    Failure,
    FailureKind,
    GeminiClient,
    Generation,
    content_from_json,
    content_to_json,
)
from tests.fakes import gemini_fixtures
from tests.fakes.gemini import FakeGemini, b64decode_any, fake_mark_of
from tests.fakes.gemini_fixtures import gemini_settings

fake_gemini = gemini_fixtures.fake_gemini

MODEL = "gemini-3-pro-image"
CONFIG = types.GenerateContentConfig(
    response_modalities=["TEXT", "IMAGE"],
    image_config=types.ImageConfig(aspect_ratio="4:3", image_size="1K"),
)


@pytest_asyncio.fixture
async def client(fake_gemini: FakeGemini) -> AsyncIterator[GeminiClient]:
    gemini = GeminiClient(gemini_settings(fake_gemini), backoff_initial=0.02)
    yield gemini
    await gemini.aclose()


def user(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


def store(content: types.Content) -> str:
    """What the database would hold: JSON text."""
    return json.dumps(content_to_json(content))


def restore(text: str) -> types.Content:
    return content_from_json(json.loads(text))


# ---------------------------------------------------------------------------------------------
# JSON round trip
# ---------------------------------------------------------------------------------------------


def test_round_trip_keeps_signatures_and_image_bytes() -> None:
    signature, image = os.urandom(97), os.urandom(4096)
    content = types.Content(
        role="model",
        parts=[
            types.Part(text="thinking", thought=True),
            types.Part(text="Here it is.", thought_signature=signature[::-1]),
            types.Part(
                inline_data=types.Blob(data=image, mime_type="image/png"),
                thought_signature=signature,
            ),
        ],
    )
    data = content_to_json(content)
    json.dumps(data)  # JSON-safe
    back = restore(json.dumps(data))
    assert back == content
    parts = back.parts or []
    assert parts[2].thought_signature == signature
    assert parts[1].thought_signature == signature[::-1]
    assert parts[2].inline_data is not None and parts[2].inline_data.data == image
    assert parts[0].thought is True


@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=5))
def test_round_trip_any_signature_bytes(signatures: list[bytes]) -> None:
    content = types.Content(
        role="model",
        parts=[types.Part(text=f"p{i}", thought_signature=s) for i, s in enumerate(signatures)],
    )
    back = restore(store(content))
    assert [p.thought_signature for p in back.parts or []] == signatures


# ---------------------------------------------------------------------------------------------
# Conversations against the fake (which enforces the signatures it issued)
# ---------------------------------------------------------------------------------------------


async def test_three_turns_restored_from_json_between_turns(
    fake_gemini: FakeGemini, client: GeminiClient
) -> None:
    history: list[str] = []  # alternating user / model contents, as stored JSON
    prompts = ["a lighthouse at dusk", "make the sky stormy", "add a small red boat"]
    marks: list[str | None] = []
    for turn, prompt in enumerate(prompts, start=1):
        contents = [restore(item) for item in history] + [user(prompt)]
        result = await client.generate(model=MODEL, contents=contents, config=CONFIG, size="1K")
        assert isinstance(result, Generation), f"turn {turn}: {result}"
        marks.append(fake_mark_of(result.images[0].data))
        history += [store(user(prompt)), store(result.content)]

    assert len(set(marks)) == 3
    assert len(fake_gemini.requests) == 3
    last = fake_gemini.requests[-1]
    assert [c["role"] for c in last.contents] == ["user", "model", "user", "model", "user"]
    # Every model turn went back with exactly the signatures the fake issued for it.
    for model_content, issued in zip(last.contents[1::2], fake_gemini.issued[:2], strict=True):
        sent = [
            b64decode_any(p["thoughtSignature"]) if "thoughtSignature" in p else None
            for p in model_content["parts"]
        ]
        assert sent == issued.signatures


async def test_missing_image_signature_is_rejected_like_the_real_api(
    fake_gemini: FakeGemini, client: GeminiClient
) -> None:
    first = await client.generate(model=MODEL, contents=[user("a cat")], config=CONFIG, size="1K")
    assert isinstance(first, Generation)
    data = content_to_json(first.content)
    image_index = next(
        i for i, p in enumerate(data["parts"]) if "inline_data" in p and not p.get("thought")
    )
    del data["parts"][image_index]["thought_signature"]
    contents = [user("a cat"), content_from_json(data), user("now a dog")]
    result = await client.generate(model=MODEL, contents=contents, config=CONFIG, size="1K")
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.INVALID_REQUEST
    assert (
        f"Image part is missing a thought_signature in content position 2, "
        f"part position {image_index + 1}" in result.message
    )
    assert len(fake_gemini.requests) == 2  # a 400 is never retried


@pytest.mark.parametrize("mutation", ["corrupt", "drop_text_signature"])
async def test_altered_signatures_are_rejected(
    fake_gemini: FakeGemini, client: GeminiClient, mutation: str
) -> None:
    first = await client.generate(model=MODEL, contents=[user("a cat")], config=CONFIG, size="1K")
    assert isinstance(first, Generation)
    parts = list(first.content.parts or [])
    text_index = next(i for i, p in enumerate(parts) if p.text and not p.thought)
    image_index = next(i for i, p in enumerate(parts) if p.inline_data and not p.thought)
    if mutation == "corrupt":
        sig = parts[image_index].thought_signature or b""
        parts[image_index] = parts[image_index].model_copy(
            update={"thought_signature": sig[:-1] + b"!"}
        )
        expected = (
            f"Corrupted thought signature in content position 2, part position {image_index + 1}"
        )
    else:
        parts[text_index] = parts[text_index].model_copy(update={"thought_signature": None})
        expected = f"Text part is missing a thought_signature in content position 2, part position {text_index + 1}"
    altered = types.Content(role="model", parts=parts)
    result = await client.generate(
        model=MODEL, contents=[user("a cat"), altered, user("a dog")], config=CONFIG, size="1K"
    )
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.INVALID_REQUEST
    assert expected in result.message


async def test_foreign_model_image_without_signature_is_rejected(
    fake_gemini: FakeGemini, client: GeminiClient
) -> None:
    forged = types.Content(
        role="model",
        parts=[types.Part(inline_data=types.Blob(data=b"\x89PNG fake", mime_type="image/png"))],
    )
    result = await client.generate(
        model=MODEL, contents=[user("a"), forged, user("b")], config=CONFIG, size="1K"
    )
    assert isinstance(result, Failure)
    assert "content position 2, part position 1" in result.message
