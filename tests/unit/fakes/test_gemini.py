"""The fake Gemini itself: wire format, validation, images and marks (raw HTTP and the real SDK)."""

from __future__ import annotations

import base64
import io
import os
from typing import Any

import aiohttp
import pytest
from google.genai import types
from PIL import Image

from bot.adapters.gemini import GeminiClient, Generation
from bot.config import CAPABILITIES, OUTPUT_DIMENSIONS
from tests.fakes import gemini_fixtures
from tests.fakes.gemini import (
    THOUGHT_MARK,
    FakeGemini,
    fake_mark_of,
    output_dims,
    render_png,
)
from tests.fakes.gemini_fixtures import gemini_settings

fake_gemini = gemini_fixtures.fake_gemini

PRO = "gemini-3-pro-image"


async def post(
    fake: FakeGemini,
    body: dict[str, Any],
    *,
    model: str = PRO,
    key: str | None = "default",
    version: str = "v1beta",
) -> tuple[int, dict[str, Any]]:
    headers = {} if key is None else {"x-goog-api-key": fake.api_key if key == "default" else key}
    url = f"{fake.url}/{version}/models/{model}:generateContent"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


def body(**image_config: Any) -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": "a cat"}]}],
        "generationConfig": {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": image_config},
    }


# ---------------------------------------------------------------------------------------------
# Pixel sizes and marks
# ---------------------------------------------------------------------------------------------


def test_output_dims() -> None:
    """Exactly the bot's table of Google's published sizes (bot.config.OUTPUT_DIMENSIONS)."""
    assert output_dims("1K", "1:1") == (1024, 1024)
    assert output_dims("4K", "1:1") == (4096, 4096)
    assert output_dims("512", "1:1") == (512, 512)
    assert output_dims("1K", "2:3") == (848, 1264)
    assert output_dims("1K", "16:9", "gemini-2.5-flash-image") == (1344, 768)
    for model, cap in CAPABILITIES.items():
        for aspect in cap.aspect_ratios:
            for size in cap.sizes:
                width, height = output_dims(size, aspect, model)
                assert (width, height) == OUTPUT_DIMENSIONS[model][aspect][size]
                assert width % 8 == 0 and height % 8 == 0


def test_marks_survive_reencoding_and_downscaling() -> None:
    data = render_png(1360, 768, "fake-4242")
    assert fake_mark_of(data) == "fake-4242"
    with Image.open(io.BytesIO(data)) as img:
        small = img.convert("RGB").resize((680, 384))
        for fmt in ("JPEG", "WEBP"):
            buf = io.BytesIO()
            small.save(buf, fmt, quality=60)
            assert fake_mark_of(buf.getvalue()) == "fake-4242", fmt


def test_marks_are_distinct_and_absent_from_other_images() -> None:
    a = render_png(512, 512, "fake-1")
    b = render_png(512, 512, "fake-2")
    assert fake_mark_of(a) != fake_mark_of(b)
    with Image.open(io.BytesIO(a)) as img_a, Image.open(io.BytesIO(b)) as img_b:
        # visibly different too: the tint differs
        assert img_a.convert("RGB").getpixel((256, 300)) != img_b.convert("RGB").getpixel(
            (256, 300)
        )
    plain = io.BytesIO()
    Image.effect_noise((300, 200), 40).convert("RGB").save(plain, "PNG")
    assert fake_mark_of(plain.getvalue()) is None
    assert fake_mark_of(b"not an image") is None


async def test_4k_output_is_true_size_and_over_10_mib(fake_gemini: FakeGemini) -> None:
    client = GeminiClient(gemini_settings(fake_gemini))
    try:
        result = await client.generate(
            model=PRO,
            contents=[types.Content(role="user", parts=[types.Part(text="a forest")])],
            config=types.GenerateContentConfig(
                response_modalities=["TEXT", "IMAGE"],
                image_config=types.ImageConfig(aspect_ratio="1:1", image_size="4K"),
            ),
            size="4K",
        )
    finally:
        await client.aclose()
    assert isinstance(result, Generation)
    data = result.images[0].data
    assert len(data) > 10 * 1024 * 1024
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (4096, 4096)
    assert fake_mark_of(data) == fake_gemini.issued[-1].mark


# ---------------------------------------------------------------------------------------------
# Wire format
# ---------------------------------------------------------------------------------------------


async def test_answer_shape_with_thoughts_and_signatures(fake_gemini: FakeGemini) -> None:
    status, data = await post(fake_gemini, body(aspectRatio="3:4", imageSize="1K"))
    assert status == 200
    [candidate] = data["candidates"]
    assert candidate["finishReason"] == "STOP"
    parts = candidate["content"]["parts"]
    assert candidate["content"]["role"] == "model"
    thoughts = [p for p in parts if p.get("thought")]
    finals = [p for p in parts if not p.get("thought")]
    assert {"text"} <= thoughts[0].keys() and "inlineData" in thoughts[1]
    assert fake_mark_of(base64.b64decode(thoughts[1]["inlineData"]["data"])) == THOUGHT_MARK
    assert all("thoughtSignature" not in p for p in thoughts)
    assert all(base64.b64decode(p["thoughtSignature"]) for p in finals)  # text and image signed
    image = next(p for p in finals if "inlineData" in p)
    with Image.open(io.BytesIO(base64.b64decode(image["inlineData"]["data"]))) as img:
        assert img.size == output_dims("1K", "3:4")
    usage = data["usageMetadata"]
    assert usage["totalTokenCount"] == (
        usage["promptTokenCount"] + usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
    )
    assert data["modelVersion"] == PRO and data["responseId"]


async def test_snake_case_body_is_accepted(fake_gemini: FakeGemini) -> None:
    snake = {
        "contents": [{"role": "user", "parts": [{"text": "a cat"}]}],
        "generation_config": {
            "response_modalities": ["IMAGE"],
            "image_config": {"aspect_ratio": "9:16"},
        },
    }
    status, _ = await post(fake_gemini, snake)
    assert status == 200
    assert fake_gemini.issued[-1].aspect == "9:16"
    assert fake_gemini.requests[-1].image_config == {"aspectRatio": "9:16"}


async def test_key_checks_like_google(fake_gemini: FakeGemini) -> None:
    status, data = await post(fake_gemini, body(), key=None)
    assert status == 403 and data["error"]["status"] == "PERMISSION_DENIED"
    status, data = await post(fake_gemini, body(), key="wrong")
    assert status == 400 and data["error"]["status"] == "INVALID_ARGUMENT"
    assert data["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert len(fake_gemini.requests) == 2  # recorded even when refused


@pytest.mark.parametrize(
    ("model", "config", "needle"),
    [
        (PRO, {"aspectRatio": "8:1"}, "aspect ratio"),
        (PRO, {"imageSize": "512"}, "image size"),
        (PRO, {"imageSize": "1k"}, "image size"),  # lowercase is rejected
        ("gemini-3.1-flash-lite-image", {"imageSize": "2K"}, "image size"),
    ],
)
async def test_rejects_what_the_model_lacks(
    fake_gemini: FakeGemini, model: str, config: dict[str, str], needle: str
) -> None:
    status, data = await post(fake_gemini, body(**config), model=model)
    assert status == 400
    assert data["error"]["status"] == "INVALID_ARGUMENT"
    assert needle in data["error"]["message"]


async def test_rejects_too_many_images_and_candidates(fake_gemini: FakeGemini) -> None:
    tiny = base64.b64encode(os.urandom(16)).decode()
    parts = [{"text": "blend"}] + [{"inlineData": {"mimeType": "image/png", "data": tiny}}] * 15
    status, data = await post(fake_gemini, {"contents": [{"role": "user", "parts": parts}]})
    assert status == 400 and "Too many input images" in data["error"]["message"]
    status, _ = await post(fake_gemini, {"contents": [{"role": "user", "parts": parts[:15]}]})
    assert status == 200  # 14 is fine for Pro
    payload = body()
    payload["generationConfig"]["candidateCount"] = 2
    status, _ = await post(fake_gemini, payload)
    assert status == 400


async def test_unknown_model_and_version(fake_gemini: FakeGemini) -> None:
    status, data = await post(fake_gemini, body(), model="gemini-9-ultra")
    assert status == 404 and data["error"]["status"] == "NOT_FOUND"
    status, _ = await post(fake_gemini, body(), version="v2")
    assert status == 404
    status, _ = await post(fake_gemini, body(), version="v1")
    assert status == 200


async def test_records_and_in_flight(fake_gemini: FakeGemini) -> None:
    fake_gemini.latency = 0.05
    await post(fake_gemini, body())
    [req] = fake_gemini.requests
    assert req.model == PRO and req.api_version == "v1beta" and req.method == "generateContent"
    assert req.texts == ["a cat"] and req.status == 200
    assert req.headers["x-goog-api-key"] == fake_gemini.api_key
    assert fake_gemini.in_flight == 0 and fake_gemini.max_in_flight == 1


def test_fail_next_rejects_unknown_kinds() -> None:
    fake = FakeGemini()
    with pytest.raises(ValueError, match="unknown fault"):
        fake.fail_next("meteor")
    fake.fail_next("overloaded", times=3)
    assert fake.pending_faults == 3
