"""The fake Gemini's text model (structured output) and its grid sheets."""

from __future__ import annotations

import io
import json
from typing import Any

import aiohttp
import jsonschema
from PIL import Image

from bot.adapters.imaging import split_grid
from bot.adapters.prompts.schema import describe_schema
from bot.config import BASE_ASPECTS, DEFAULT_DESCRIBE_MODEL
from tests.fakes import gemini_fixtures
from tests.fakes.gemini import FakeGemini, fake_mark_of, grid_layout, render_grid_png

fake_gemini = gemini_fixtures.fake_gemini


async def post(fake: FakeGemini, body: dict[str, Any], model: str) -> tuple[int, dict[str, Any]]:
    url = f"{fake.url}/v1beta/models/{model}:generateContent"
    headers = {"x-goog-api-key": fake.api_key}
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as r:
        return r.status, await r.json()


def _body(schema: object = None, mime: str | None = "application/json") -> dict[str, Any]:
    config: dict[str, Any] = {}
    if mime:
        config["responseMimeType"] = mime
    if schema is not None:
        config["responseJsonSchema"] = schema
    return {"contents": [{"role": "user", "parts": [{"text": "describe"}]}], "generationConfig": config}


def _answer_text(payload: dict[str, Any]) -> str:
    parts = payload["candidates"][0]["content"]["parts"]
    return "".join(p["text"] for p in parts if not p.get("thought"))


async def test_answers_json_that_fits_the_schema(fake_gemini: FakeGemini) -> None:
    schema = describe_schema(BASE_ASPECTS)
    status, payload = await post(fake_gemini, _body(schema), DEFAULT_DESCRIBE_MODEL)
    assert status == 200
    answer = json.loads(_answer_text(payload))
    jsonschema.validate(answer, schema)
    assert "negative_prompt" in answer  # property names are not camelised
    assert payload["usageMetadata"]["candidatesTokenCount"] > 0
    assert fake_gemini.text_issued[-1].schema == schema


async def test_refuses_schemas_gemini_cannot_read(fake_gemini: FakeGemini) -> None:
    bad = {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}}
    status, payload = await post(fake_gemini, _body(bad), DEFAULT_DESCRIBE_MODEL)
    assert status == 400 and "unsupported keyword at /properties/a/default" in payload["error"]["message"]
    status, payload = await post(fake_gemini, _body({"type": "object"}, mime=None), DEFAULT_DESCRIBE_MODEL)
    assert status == 400 and "application/json" in payload["error"]["message"]
    body = _body({"type": "object"})
    body["generationConfig"]["responseModalities"] = ["TEXT", "IMAGE"]
    status, _ = await post(fake_gemini, body, DEFAULT_DESCRIBE_MODEL)
    assert status == 400


async def test_scripted_answers_and_faults(fake_gemini: FakeGemini) -> None:
    fake_gemini.answer_next_text("{broken")
    _status, payload = await post(fake_gemini, _body({"type": "object"}), DEFAULT_DESCRIBE_MODEL)
    assert _answer_text(payload) == "{broken" and fake_gemini.text_issued[-1].scripted
    fake_gemini.fail_next("overloaded")
    status, _ = await post(fake_gemini, _body({"type": "object"}), DEFAULT_DESCRIBE_MODEL)
    assert status == 503


def test_grid_sheets_have_uniform_gutters_split_finds() -> None:
    png = render_grid_png(1024, 1024, "fake-77", 3, 3)
    gutter, boxes = grid_layout(1024, 1024, 3, 3)
    assert gutter >= 4 and len(boxes) == 9
    tiles = [Image.open(io.BytesIO(t)) for t in split_grid(png, 3, 3)]
    x0, y0, x1, y1 = boxes[0]
    assert {t.size for t in tiles} == {(x1 - x0, y1 - y0)}
    assert fake_mark_of(split_grid(png, 3, 3)[4]) == "fake-77"
