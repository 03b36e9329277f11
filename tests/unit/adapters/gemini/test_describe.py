"""describe_image through the real SDK against the fake's text model (structured output)."""

from __future__ import annotations

import io
import json

import jsonschema
from PIL import Image

from bot.adapters.describe import check_answer, describe_image, summary_lines
from bot.adapters.gemini import Failure, FailureKind, GeminiClient
from bot.adapters.prompts import Defaults
from bot.config import DEFAULT_DESCRIBE_MODEL, text_cost
from tests.fakes import gemini_fixtures
from tests.fakes.gemini import FakeGemini, render_png
from tests.fakes.gemini_fixtures import gemini_settings

fake_gemini = gemini_fixtures.fake_gemini
DEFAULTS = Defaults(model="pro", size="1K", aspect="1:1")


def _image(width: int = 640, height: int = 360) -> bytes:
    return render_png(width, height, "fake-4242")


async def _describe(fake: FakeGemini, image: bytes | None = None, **kw: object) -> object:
    data = image or _image()
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
    async with GeminiClient(gemini_settings(fake, gemini_max_attempts=2), backoff_initial=0.01) as g:
        return await describe_image(
            g,
            model=DEFAULT_DESCRIBE_MODEL,
            image=data,
            mime_type="image/png",
            width=width,
            height=height,
            detail="standard",
            defaults=DEFAULTS,
            seconds=10,
        )


async def test_structured_output_request_and_a_valid_spec(fake_gemini: FakeGemini) -> None:
    result = await _describe(fake_gemini)
    assert not isinstance(result, Failure), result
    request = fake_gemini.requests[-1]
    assert request.model == DEFAULT_DESCRIBE_MODEL
    config = request.generation_config
    assert config["responseMimeType"] == "application/json"
    assert "responseSchema" not in config
    schema = request.body["generationConfig"]["responseJsonSchema"]  # as sent, not camelised
    assert schema["properties"]["task"]["enum"] == ["generate_image"]
    assert [m for _mime, m in request.input_images] and fake_gemini.text_issued[-1].input_marks == [
        "fake-4242"
    ]
    # what came back fits the schema, and the bot fixed the aspect to the picture's shape
    jsonschema.validate(json.loads(fake_gemini.text_issued[-1].text), schema)
    assert result.spec["subject"] == "the picture marked fake-4242"
    assert result.spec["output_format"] == {"aspect_ratio": "16:9"}
    assert result.prepared.aspect == "16:9"
    assert result.calls == 1
    assert result.cost == text_cost(
        DEFAULT_DESCRIBE_MODEL,
        input_tokens=result.usage.prompt_tokens,
        output_tokens=result.usage.output_tokens + result.usage.thoughts_tokens,
    )
    assert result.cost > 0
    assert len(result.summary.splitlines()) == 2


async def test_invalid_json_is_retried_once_with_the_problem(fake_gemini: FakeGemini) -> None:
    fake_gemini.answer_next_text('{"task": "generate_image", "subject": ')
    result = await _describe(fake_gemini)
    assert not isinstance(result, Failure), result
    assert result.calls == 2 and result.first_problems[0].startswith("not valid JSON")
    retry = fake_gemini.requests[-1]
    assert [c["role"] for c in retry.contents] == ["user", "model", "user"]
    assert "not valid JSON" in retry.texts[0]
    first_only = fake_gemini.requests[0]
    assert result.usage.prompt_tokens > len(first_only.texts[0]) // 4  # both calls counted


async def test_two_bad_answers_are_a_clear_failure(fake_gemini: FakeGemini) -> None:
    fake_gemini.answer_next_text("not json at all")
    fake_gemini.answer_next_text({"task": "generate_image", "subject": "a cat", "camera": 42})
    result = await _describe(fake_gemini)
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.BAD_ANSWER
    assert "camera" in result.message and "second try" in result.message
    assert len(fake_gemini.requests) == 2


async def test_rate_limit_and_block_are_failures_like_any_call(fake_gemini: FakeGemini) -> None:
    fake_gemini.fail_next("rate_limit", times=2, retry_delay="0.01s")
    limited = await _describe(fake_gemini)
    assert isinstance(limited, Failure) and limited.kind is FailureKind.RATE_LIMITED
    fake_gemini.fail_next("prompt_blocked", reason="PROHIBITED_CONTENT")
    blocked = await _describe(fake_gemini)
    assert isinstance(blocked, Failure) and blocked.kind is FailureKind.PROMPT_BLOCKED
    assert "PROHIBITED_CONTENT" in blocked.message
    fake_gemini.fail_next("image_safety", finish_reason="SAFETY", message="Not allowed.")
    filtered = await _describe(fake_gemini)
    assert isinstance(filtered, Failure) and filtered.kind is FailureKind.OUTPUT_BLOCKED
    assert "Not allowed." in filtered.message


def test_check_answer_drops_request_keys_and_fixes_the_aspect() -> None:
    text = json.dumps(
        {
            "task": "generate_image",
            "subject": "a kite",
            "inputs": [{"type": "image", "data": "attachment:1"}],
            "chain_id": "7",
            "output_format": {"aspect_ratio": "9:16", "resolution": "4K"},
        }
    )
    checked = check_answer(text, aspect="1:1", defaults=DEFAULTS)
    assert not isinstance(checked, list)
    spec, prepared = checked
    assert "inputs" not in spec and "chain_id" not in spec
    assert spec["output_format"] == {"aspect_ratio": "1:1"} and prepared.size == "1K"


def test_check_answer_problems() -> None:
    assert check_answer("[1]", aspect="1:1", defaults=DEFAULTS) == [
        "the answer must be a JSON object with the spec's keys"
    ]
    assert check_answer('{"task": "edit_image", "subject": "x"}', aspect="1:1", defaults=DEFAULTS)
    problems = check_answer('{"subject": "x", "style": 3}', aspect="1:1", defaults=DEFAULTS)
    assert isinstance(problems, list) and problems[0].startswith("style:")


def test_summary_has_two_lines() -> None:
    text = summary_lines(
        {
            "subject": {"description": "a red fox", "pose": "sitting"},
            "style": "watercolour",
            "lighting": "overcast",
            "layout": {"grid": "3x3"},
        }
    )
    first, second = text.split("\n")
    assert first == "a red fox, sitting"
    assert second == "3x3 grid · watercolour · overcast"
