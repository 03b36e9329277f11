"""bot.adapters.gemini.GeminiClient: every outcome, retries, limits — the real SDK against the fake Gemini."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from google.genai import types
from PIL import Image

from bot.adapters.gemini import (
    Failure,
    FailureKind,
    GeminiClient,
    Generation,
    finish_messages_of,
    interpret,
    restore_finish_messages,
)
from bot.config import ConfigError, Settings, estimate_cost, output_dimensions
from tests.fakes import gemini_fixtures
from tests.fakes.gemini import THOUGHT_MARK, FakeGemini, fake_mark_of
from tests.fakes.gemini_fixtures import gemini_settings

fake_gemini = gemini_fixtures.fake_gemini

MODEL = "gemini-3-pro-image"
ClientFactory = Callable[..., GeminiClient]


def image_config(aspect: str = "1:1", size: str = "1K") -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        response_modalities=["TEXT", "IMAGE"],
        image_config=types.ImageConfig(aspect_ratio=aspect, image_size=size),
    )


def user(text: str = '{"task": "generate_image", "subject": "a red bicycle"}') -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


@pytest_asyncio.fixture
async def make_client(fake_gemini: FakeGemini) -> AsyncIterator[ClientFactory]:
    """Build GeminiClients pointed at the fake, with fast backoff; all closed after the test."""
    clients: list[GeminiClient] = []

    def factory(**overrides: Any) -> GeminiClient:
        backoff = overrides.pop("backoff_initial", 0.02)
        settings = gemini_settings(fake_gemini, **overrides)
        client = GeminiClient(settings, backoff_initial=backoff, backoff_max=0.2)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


async def generate(
    client: GeminiClient,
    *,
    model: str = MODEL,
    size: str = "1K",
    aspect: str = "1:1",
    contents: list[types.Content] | None = None,
) -> Generation | Failure:
    return await client.generate(
        model=model, contents=contents or [user()], config=image_config(aspect, size), size=size
    )


# ---------------------------------------------------------------------------------------------
# Success
# ---------------------------------------------------------------------------------------------


async def test_success_returns_final_image_text_content_usage_and_cost(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    client = make_client()
    result = await generate(client, aspect="16:9")

    assert isinstance(result, Generation), result
    assert len(result.images) == 1
    image = result.images[0]
    assert image.mime_type == "image/png"
    issued = fake_gemini.issued[-1]
    assert fake_mark_of(image.data) == issued.mark != THOUGHT_MARK  # thought image skipped
    assert Image.open(io.BytesIO(image.data)).size == (issued.width, issued.height)
    assert result.text == fake_gemini.reply_text
    # The content is the model's, unchanged: thoughts included, signatures intact.
    parts = result.content.parts or []
    assert result.content.role == "model"
    assert [p.thought_signature for p in parts] == issued.signatures
    assert any(p.thought for p in parts)
    assert result.usage.prompt_tokens > 0
    assert result.usage.output_tokens == 1120 + len(fake_gemini.reply_text or "") // 4
    assert result.usage.thoughts_tokens == 180
    assert result.usage.total_tokens == (
        result.usage.prompt_tokens + result.usage.output_tokens + result.usage.thoughts_tokens
    )
    assert result.cost == estimate_cost(
        MODEL, "1K", images_out=1, input_tokens=result.usage.prompt_tokens
    )
    assert result.model == MODEL
    assert result.model_version == MODEL
    assert result.attempts == 1
    assert result.latency > 0

    [req] = fake_gemini.requests
    assert req.api_version == "v1beta"
    assert req.headers["x-goog-api-key"] == fake_gemini.api_key
    assert req.image_config == {"aspectRatio": "16:9", "imageSize": "1K"}
    assert req.spec == {"task": "generate_image", "subject": "a red bicycle"}


@pytest.mark.parametrize(
    ("model", "aspect", "size", "dims"),
    [
        ("gemini-3-pro-image", "2:3", "1K", (848, 1264)),
        ("gemini-3-pro-image", "21:9", "2K", (3168, 1344)),
        ("gemini-3.1-flash-image", "1:8", "512", (192, 1536)),
        ("gemini-3.1-flash-image", "4:1", "1K", (2048, 512)),
        ("gemini-2.5-flash-image", "16:9", "1K", (1344, 768)),
    ],
)
async def test_images_have_the_documented_size_for_model_aspect_and_size(
    fake_gemini: FakeGemini,
    make_client: ClientFactory,
    model: str,
    aspect: str,
    size: str,
    dims: tuple[int, int],
) -> None:
    result = await generate(make_client(), model=model, aspect=aspect, size=size)
    assert isinstance(result, Generation), result
    assert Image.open(io.BytesIO(result.images[0].data)).size == dims
    assert dims == output_dimensions(model, aspect, size)  # the table the bot plans with


async def test_alias_is_resolved_and_caller_config_untouched(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    client = make_client()
    config = image_config()
    result = await client.generate(model="pro", contents=[user()], config=config, size="1K")
    assert isinstance(result, Generation)
    assert result.model == MODEL
    assert fake_gemini.requests[0].model == MODEL
    assert config.http_options is None  # the per-call timeout went on a copy


@pytest.mark.parametrize(("size", "expected"), [("512", "7"), ("2K", "240"), ("4K", "480")])
async def test_timeout_per_size_reaches_the_sdk_in_milliseconds(
    fake_gemini: FakeGemini, make_client: ClientFactory, size: str, expected: str
) -> None:
    # The SDK turns HttpOptions.timeout (ms) into X-Server-Timeout (s): a seconds/ms mix-up
    # would show as 1000x too big or too small.
    fake_gemini.fail_next("invalid")  # answer fast; only the header matters
    client = make_client(timeout_512_seconds=7)
    await generate(client, model="gemini-3.1-flash-image", size=size)
    assert fake_gemini.requests[0].headers["X-Server-Timeout"] == expected


async def test_missing_key_is_a_config_error(fake_gemini: FakeGemini) -> None:
    settings = Settings(_env_file=None, gemini_api_key=None, gemini_base_url=fake_gemini.url)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        GeminiClient(settings)


# ---------------------------------------------------------------------------------------------
# Answers without an image
# ---------------------------------------------------------------------------------------------


async def test_prompt_blocked(fake_gemini: FakeGemini, make_client: ClientFactory) -> None:
    fake_gemini.fail_next("prompt_blocked", reason="PROHIBITED_CONTENT")
    result = await generate(make_client())
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.PROMPT_BLOCKED
    assert result.reason == "PROHIBITED_CONTENT"
    assert "PROHIBITED_CONTENT" in result.message
    assert not result.retryable
    assert result.attempts == 1
    assert len(fake_gemini.requests) == 1


async def test_output_blocked_carries_finish_reason_and_googles_message(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.fail_next("image_safety", message="The image was filtered out.")
    result = await generate(make_client())
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.OUTPUT_BLOCKED
    assert result.reason == "IMAGE_SAFETY"
    assert not result.retryable
    # google-genai 3.x drops `finishMessage` when it parses the answer; the client reads it
    # from the raw answer and shows it.
    assert result.detail == "The image was filtered out."
    assert result.message == (
        "Google blocked the generated image (IMAGE_SAFETY). "
        "Google says: “The image was filtered out.”"
    )
    assert fake_gemini.requests[0].status == 200


async def test_googles_default_block_message_reaches_the_user(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.fail_next("image_safety", finish_reason="IMAGE_PROHIBITED_CONTENT")
    result = await generate(make_client())
    assert isinstance(result, Failure)
    assert "(IMAGE_PROHIBITED_CONTENT)" in result.message
    assert "Prohibited Use policy" in result.message  # the fake's copy of Google's wording
    assert "You will not be charged" in result.message


async def test_concurrent_blocked_calls_keep_their_own_messages(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    client = make_client()
    fake_gemini.latency = 0.2  # both calls in flight at once
    fake_gemini.fail_next("image_safety", message="first message")
    fake_gemini.fail_next("image_safety", message="second message")
    first, second = await asyncio.gather(generate(client), generate(client))
    assert isinstance(first, Failure) and isinstance(second, Failure)
    assert {first.detail, second.detail} == {"first message", "second message"}
    assert fake_gemini.max_in_flight == 2
    # and a later success carries nothing over
    fake_gemini.latency = 0.0
    fake_gemini.fail_next("image_safety", message=None)
    third = await generate(client)
    assert isinstance(third, Failure) and third.detail is None
    assert third.message.endswith("(IMAGE_SAFETY). Try a different prompt.")


async def test_no_image_finish_message_is_shown_too(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.fail_next("image_safety", finish_reason="NO_IMAGE", message="No image made.")
    result = await generate(make_client())
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.NO_IMAGE
    assert result.message == "The model returned no image (NO_IMAGE): “No image made.”"


def test_finish_messages_of_raw_bodies() -> None:
    body = '{"candidates": [{"finishReason": "IMAGE_SAFETY", "finishMessage": "no"}, {}]}'
    assert finish_messages_of(body) == ["no", None]
    assert finish_messages_of(body.encode()) == ["no", None]
    assert finish_messages_of('{"candidates": [{"finish_message": "snake"}]}') == ["snake"]
    assert finish_messages_of('{"candidates": [{"finishReason": "STOP"}]}') == []
    assert finish_messages_of("not json finishMessage") == []
    assert finish_messages_of(None) == []
    assert finish_messages_of('{"finishMessage": "x", "candidates": 3}') == []
    huge = '{"candidates": [{"finishMessage": "x", "pad": "' + "a" * 2_000_000 + '"}]}'
    assert finish_messages_of(huge) == []  # an image answer: not worth parsing twice


def test_output_blocked_quotes_finish_message_when_the_sdk_keeps_it() -> None:
    response = types.GenerateContentResponse(
        candidates=[
            types.Candidate(
                finish_reason=types.FinishReason.IMAGE_SAFETY,
                finish_message="The image was filtered out.",
            )
        ]
    )
    result = interpret(response, model=MODEL, size="1K")
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.OUTPUT_BLOCKED
    assert result.detail == "The image was filtered out."
    assert "filtered out" in result.message


def test_the_sdks_own_finish_message_wins() -> None:
    response = types.GenerateContentResponse(
        candidates=[types.Candidate(finish_message="from the SDK"), types.Candidate()]
    )
    restore_finish_messages(response, ["raw", "raw two", "extra"])
    assert [c.finish_message for c in response.candidates or []] == ["from the SDK", "raw two"]


async def test_other_image_finish_reasons_are_output_blocked(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.fail_next("image_safety", finish_reason="IMAGE_PROHIBITED_CONTENT", message=None)
    result = await generate(make_client())
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.OUTPUT_BLOCKED
    assert result.reason == "IMAGE_PROHIBITED_CONTENT"


async def test_text_only_stop_is_no_image_with_the_models_text(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.fail_next("text_only", text="I would rather describe a bicycle than draw one.")
    result = await generate(make_client())
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.NO_IMAGE
    assert result.reason == "STOP"
    assert result.detail == "I would rather describe a bicycle than draw one."
    assert "describe a bicycle" in result.message


# ---------------------------------------------------------------------------------------------
# Errors and retries
# ---------------------------------------------------------------------------------------------


async def test_rate_limit_retry_honours_retry_delay(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.fail_next("rate_limit", retry_delay="1s")
    client = make_client(backoff_initial=0.01)  # backoff alone would retry after ~0.01 s
    result = await generate(client)
    assert isinstance(result, Generation), result
    assert result.attempts == 2
    first, second = fake_gemini.requests
    gap = second.arrived - first.arrived
    assert 1.0 <= gap < 1.0 + 0.1 + 0.5  # retryDelay + at most 10 % jitter + slack


async def test_rate_limit_persisting_gives_rate_limited_with_retry_after(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.fail_next("rate_limit", times=10, retry_delay="0.1s")
    result = await generate(make_client(gemini_max_attempts=3))
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.RATE_LIMITED
    assert result.retry_after == pytest.approx(0.1)
    assert result.attempts == 3
    assert result.retryable
    assert len(fake_gemini.requests) == 3
    assert "Try again in 1 s" in result.message


async def test_retry_delay_beyond_budget_is_not_waited_for(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.fail_next("rate_limit", retry_delay="30s")
    started = time.monotonic()
    result = await generate(make_client(gemini_retry_budget_seconds=5))
    assert time.monotonic() - started < 2
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.RATE_LIMITED
    assert result.retry_after == 30
    assert result.attempts == 1
    assert "30 s" in result.message


async def test_rate_limit_without_retry_info_uses_backoff(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.fail_next("rate_limit", retry_delay=None)
    result = await generate(make_client())
    assert isinstance(result, Generation)
    assert result.attempts == 2
    assert fake_gemini.requests[1].arrived - fake_gemini.requests[0].arrived < 0.5


async def test_overloaded_is_retried_then_succeeds(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.fail_next("overloaded", times=2)
    result = await generate(make_client(gemini_max_attempts=4))
    assert isinstance(result, Generation)
    assert result.attempts == 3


async def test_overloaded_persisting(fake_gemini: FakeGemini, make_client: ClientFactory) -> None:
    fake_gemini.fail_next("overloaded", times=10)
    result = await generate(make_client(gemini_max_attempts=3))
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.OVERLOADED
    assert result.attempts == 3
    assert result.retryable
    assert "overloaded" in result.message


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, FailureKind.SERVER_ERROR),
        (502, FailureKind.SERVER_ERROR),
        (504, FailureKind.TIMED_OUT),
        (408, FailureKind.TIMED_OUT),
    ],
)
async def test_server_errors_are_retried_up_to_max_attempts(
    fake_gemini: FakeGemini, make_client: ClientFactory, status: int, kind: FailureKind
) -> None:
    fake_gemini.fail_next("server_error", times=10, status=status)
    result = await generate(make_client(gemini_max_attempts=3))
    assert isinstance(result, Failure)
    assert result.kind is kind
    assert result.attempts == 3
    assert len(fake_gemini.requests) == 3
    assert result.retryable


async def test_retry_budget_bounds_total_time(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.fail_next("overloaded", times=20, retry_delay="0.3s")
    started = time.monotonic()
    result = await generate(make_client(gemini_max_attempts=10, gemini_retry_budget_seconds=1.0))
    elapsed = time.monotonic() - started
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.OVERLOADED
    assert result.retry_after == pytest.approx(0.3)
    assert 2 <= result.attempts <= 4  # 0.3 s apart, and no wait ending past the 1 s budget
    assert elapsed < 1.5


async def test_invalid_request_is_not_retried_and_quotes_the_api(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.fail_next("invalid", message="Request contains an invalid argument: foo.")
    result = await generate(make_client())
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.INVALID_REQUEST
    assert "invalid argument: foo" in result.message
    assert result.reason == "INVALID_ARGUMENT"
    assert result.attempts == 1
    assert len(fake_gemini.requests) == 1
    assert not result.retryable


async def test_unsupported_aspect_and_unknown_model_are_invalid_requests(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    client = make_client()
    result = await generate(client, aspect="1:8")  # Pro lacks 1:8
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.INVALID_REQUEST
    assert "aspect ratio" in result.message
    result = await generate(client, model="gemini-0-nonsense")
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.INVALID_REQUEST
    assert result.reason == "NOT_FOUND"
    assert len(fake_gemini.requests) == 2


async def test_wrong_key_is_auth_and_never_leaks_the_key(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    client = make_client(gemini_api_key="AIzaWRONG-key-value-that-must-not-leak")
    result = await generate(client)
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.AUTH
    assert result.attempts == 1
    assert "GEMINI_API_KEY" in result.message
    for text in (result.message, result.detail or "", result.reason or ""):
        assert "AIzaWRONG" not in text


@pytest.mark.parametrize("status", [401, 403, 400])
async def test_auth_statuses(
    fake_gemini: FakeGemini, make_client: ClientFactory, status: int
) -> None:
    fake_gemini.fail_next("auth", status=status)
    result = await generate(make_client())
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.AUTH
    assert not result.retryable
    assert len(fake_gemini.requests) == 1


async def test_hang_times_out_without_retrying(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.fail_next("hang", times=5)
    started = time.monotonic()
    result = await generate(make_client(timeout_1k_seconds=0.5, gemini_max_attempts=3))
    elapsed = time.monotonic() - started
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.TIMED_OUT
    assert result.attempts == 1
    assert result.retryable
    assert 0.5 <= elapsed < 2.0
    assert "0.5 s" in result.message
    await asyncio.sleep(0.05)
    assert fake_gemini.in_flight == 0  # the fake saw the client give up


async def test_slow_answer_within_timeout_succeeds(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.fail_next("slow", delay=0.3)
    result = await generate(make_client(timeout_1k_seconds=5))
    assert isinstance(result, Generation)
    assert result.latency >= 0.3


async def test_dropped_connection_is_retried(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.fail_next("disconnect")
    result = await generate(make_client())
    assert isinstance(result, Generation)
    assert result.attempts == 2


async def test_network_failure(fake_gemini: FakeGemini, make_client: ClientFactory) -> None:
    fake_gemini.fail_next("disconnect", times=10)
    result = await generate(make_client(gemini_max_attempts=2))
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.NETWORK
    assert result.attempts == 2
    assert result.retryable


async def test_server_gone_is_network_failure(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    client = make_client(gemini_max_attempts=2)
    await fake_gemini.stop()  # nothing listens on the port any more
    result = await generate(client)
    assert isinstance(result, Failure)
    assert result.kind is FailureKind.NETWORK
    assert result.attempts == 2


def test_retryable_kinds() -> None:
    retryable = {k for k in FailureKind if Failure(k, "x").retryable}
    assert retryable == {
        FailureKind.RATE_LIMITED,
        FailureKind.OVERLOADED,
        FailureKind.TIMED_OUT,
        FailureKind.SERVER_ERROR,
        FailureKind.NETWORK,
    }


# ---------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------


async def test_in_flight_cap_holds_under_50_concurrent_calls(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    fake_gemini.latency = 0.05
    fake_gemini.thought_image = False
    client = make_client(gemini_max_in_flight=4)
    results = await asyncio.gather(
        *(generate(client, size="512", model="gemini-3.1-flash-image") for _ in range(50))
    )
    assert all(isinstance(r, Generation) for r in results)
    assert len(fake_gemini.requests) == 50
    assert fake_gemini.max_in_flight == 4  # the cap was reached and never exceeded
    marks = {fake_mark_of(r.images[0].data) for r in results if isinstance(r, Generation)}
    assert len(marks) == 50


async def test_requests_per_minute_limit_is_per_model(
    fake_gemini: FakeGemini, make_client: ClientFactory
) -> None:
    client = make_client(gemini_requests_per_minute=2)
    first = await asyncio.gather(generate(client), generate(client))
    assert all(isinstance(r, Generation) for r in first)
    blocked = asyncio.create_task(generate(client))  # third Pro call this minute: must wait
    other = await generate(client, model="gemini-3.1-flash-image")  # another model: not limited
    assert isinstance(other, Generation)
    await asyncio.sleep(0.3)
    assert not blocked.done()
    assert len(fake_gemini.requests_for(MODEL)) == 2
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
