"""bot.adapters.gemini_batch: Gemini's Batch API through the real google-genai SDK against the
fake's REST Batch and Files APIs — create (inline and file), the states, per-request
failures, cancel, finding a batch by name, retries."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from bot.adapters.gemini import Failure, FailureKind, Generation
from bot.adapters.gemini_batch import (
    BatchCallError,
    BatchRequest,
    BatchStatus,
    GeminiBatchClient,
    batch_finish_messages,
)
from bot.adapters.prompts import Defaults, compile_request, prepare
from bot.config import estimate_cost
from tests.fakes.gemini import FakeGemini, fake_mark_of
from tests.fakes.gemini_fixtures import gemini_settings

MODEL = "gemini-3-pro-image"
Factory = Callable[..., GeminiBatchClient]


def request(key: str, subject: str, *, aspect: str = "1:1", size: str = "1K") -> BatchRequest:
    prepared = prepare(
        {"task": "generate_image", "subject": subject},
        None,
        Defaults(model=MODEL, size=size, aspect=aspect),
    )
    return BatchRequest(key=key, compiled=compile_request(prepared, []))


@pytest_asyncio.fixture
async def make_client(fake_gemini: FakeGemini) -> AsyncIterator[Factory]:
    clients: list[GeminiBatchClient] = []

    def factory(**overrides: Any) -> GeminiBatchClient:
        client = GeminiBatchClient(
            gemini_settings(fake_gemini, **overrides), backoff_initial=0.02, backoff_max=0.1
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


async def until_done(client: GeminiBatchClient, name: str, keys: list[str]) -> BatchStatus:
    async with asyncio.timeout(20):
        while True:
            status = await client.status(name, keys=keys)
            if status.done:
                return status
            await asyncio.sleep(0.05)


async def test_inline_batch_from_pending_to_succeeded_with_every_image(
    fake_gemini: FakeGemini, make_client: Factory
) -> None:
    fake_gemini.batches.script_next(pending=0.2, running=0.2)
    client = make_client()
    requests = [request("a", "a red kite", aspect="16:9"), request("b", "a blue kite")]
    created = await client.submit(model=MODEL, requests=requests, display_name="nb-economy-1")
    assert created.name.startswith("batches/")
    assert created.state == "JOB_STATE_PENDING" and created.waiting and not created.done
    assert created.display_name == "nb-economy-1" and created.created_at is not None
    batch = fake_gemini.batches.jobs[created.name]
    assert batch.source == "inline" and batch.keys == ["a", "b"]
    # Each request inside reached the fake exactly like a generateContent body.
    assert batch.requests[0].image_config == {"aspectRatio": "16:9", "imageSize": "1K"}
    assert batch.requests[1].spec == {"task": "generate_image", "subject": "a blue kite"}

    states = set()
    async with asyncio.timeout(20):
        while True:
            status = await client.status(created.name, keys=["a", "b"])
            states.add(status.state)
            if status.done:
                break
            await asyncio.sleep(0.05)
    assert {"JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"} <= states
    assert status.succeeded and status.entries is not None
    assert [e.key for e in status.entries] == ["a", "b"]
    outcome = status.entries[0].outcome(model=MODEL, size="1K")
    assert isinstance(outcome, Generation)
    assert fake_mark_of(outcome.images[0].data) == fake_gemini.issued[0].mark
    assert Image.open(io.BytesIO(outcome.images[0].data)).size == (1376, 768)
    assert outcome.text == fake_gemini.reply_text
    assert outcome.content.parts and outcome.content.parts[-1].thought_signature
    # Priced at the batch price: half the interactive one.
    full = estimate_cost(MODEL, "1K", input_tokens=outcome.usage.prompt_tokens)
    assert outcome.cost == pytest.approx(full / 2)


async def test_per_request_failures_are_their_own(
    fake_gemini: FakeGemini, make_client: Factory
) -> None:
    fake_gemini.batches.script_next(
        failures={
            0: ("image_safety", {"message": "Filtered: it may show a real person."}),
            1: "prompt_blocked",
            2: ("error", {"code": 13, "message": "Internal error encountered."}),
        },
        echo_metadata=False,  # answers come in request order, without their keys
    )
    client = make_client()
    keys = ["x", "y", "z", "w"]
    created = await client.submit(
        model=MODEL, requests=[request(k, f"kite {k}") for k in keys], display_name="nb-2"
    )
    status = await until_done(client, created.name, keys)
    assert status.entries is not None and [e.key for e in status.entries] == keys
    outcomes = [e.outcome(model=MODEL, size="1K") for e in status.entries]
    assert isinstance(outcomes[0], Failure) and outcomes[0].kind is FailureKind.OUTPUT_BLOCKED
    # Google's finishMessage, which the SDK drops, is read from the raw answer.
    assert "Filtered: it may show a real person." in outcomes[0].message
    assert isinstance(outcomes[1], Failure) and outcomes[1].kind is FailureKind.PROMPT_BLOCKED
    assert isinstance(outcomes[2], Failure) and outcomes[2].kind is FailureKind.SERVER_ERROR
    assert "Internal error encountered." in outcomes[2].message
    assert isinstance(outcomes[3], Generation)


async def test_a_big_batch_goes_as_a_file_and_comes_back_as_one(
    fake_gemini: FakeGemini, make_client: Factory
) -> None:
    client = make_client(economy_inline_max_bytes=1_000)
    keys = ["k1", "k2", "k3"]
    created = await client.submit(
        model=MODEL, requests=[request(k, f"lamp {k}") for k in keys], display_name="nb-3"
    )
    batch = fake_gemini.batches.jobs[created.name]
    assert batch.source == "file" and batch.input_file in fake_gemini.batches.files
    assert batch.keys == keys
    assert batch.requests[2].spec == {"task": "generate_image", "subject": "lamp k3"}
    status = await until_done(client, created.name, keys)
    assert batch.output_file is not None
    assert status.entries is not None and [e.key for e in status.entries] == keys
    outcome = status.entries[1].outcome(model=MODEL, size="1K")
    assert isinstance(outcome, Generation)
    assert fake_mark_of(outcome.images[0].data) is not None
    assert outcome.content.parts and outcome.content.parts[-1].thought_signature


@pytest.mark.parametrize("outcome", ["EXPIRED", "FAILED"])
async def test_a_batch_that_never_succeeds_has_no_entries(
    fake_gemini: FakeGemini, make_client: Factory, outcome: str
) -> None:
    fake_gemini.batches.script_next(outcome=outcome)
    client = make_client()
    created = await client.submit(model=MODEL, requests=[request("a", "x")], display_name="nb")
    status = await until_done(client, created.name, ["a"])
    assert status.state == f"JOB_STATE_{outcome}" and status.entries is None


async def test_cancel_while_pending(fake_gemini: FakeGemini, make_client: Factory) -> None:
    fake_gemini.batches.script_next(hold=True)
    client = make_client()
    created = await client.submit(model=MODEL, requests=[request("a", "x")], display_name="nb")
    await client.cancel(created.name)
    status = await client.status(created.name, keys=["a"])
    assert status.state == "JOB_STATE_CANCELLED" and status.done and status.entries is None
    assert fake_gemini.issued == []  # nothing was made


async def test_find_a_batch_by_its_display_name(
    fake_gemini: FakeGemini, make_client: Factory
) -> None:
    client = make_client()
    first = await client.submit(model=MODEL, requests=[request("a", "x")], display_name="nb-7")
    await client.submit(model=MODEL, requests=[request("a", "y")], display_name="nb-8")
    found = await client.find("nb-7")
    assert found is not None and found.name == first.name
    assert await client.find("nb-9") is None


async def test_calls_are_retried_and_a_missing_batch_says_so(
    fake_gemini: FakeGemini, make_client: Factory
) -> None:
    client = make_client(gemini_max_attempts=3)
    fake_gemini.batches.fail_next_call("rate_limit", retry_delay="0.05s")
    fake_gemini.batches.fail_next_call("server_error")
    created = await client.submit(model=MODEL, requests=[request("a", "x")], display_name="nb")
    assert [c.status for c in fake_gemini.batches.calls_of("create")] == [429, 500, 200]
    assert created.name in fake_gemini.batches.jobs
    with pytest.raises(BatchCallError) as caught:
        await client.status("batches/nope", keys=["a"])
    assert caught.value.not_found and not caught.value.retryable


def test_finish_messages_are_read_per_inlined_response() -> None:
    body = (
        '{"metadata": {"output": {"inlinedResponses": {"inlinedResponses": ['
        '{"response": {"candidates": [{"finishReason": "STOP"}]}},'
        '{"response": {"candidates": [{"finishMessage": "no"}]}}]}}}}'
    )
    assert batch_finish_messages(body) == [[None], ["no"]]
    assert batch_finish_messages("{}") == []
