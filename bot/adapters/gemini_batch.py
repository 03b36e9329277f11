"""Gemini's Batch API (economy requests): the same image requests at a lower price, answered
within 24 hours. The only code that talks to Google's batches and files.

- `submit`: one batch of requests for one model. Inline requests
  (`client.aio.batches.create(model=…, src=[InlinedRequest…])`) while they fit Google's inline
  limit, else a JSONL file uploaded through the Files API (`src="files/…"`), one
  `{"key": …, "request": GenerateContentRequest}` a line. The display name is the caller's
  key, so a batch whose submission was interrupted can be found again (`find`) rather than
  submitted twice.
- `status`: the batch's state (`JOB_STATE_PENDING`, `RUNNING`, `SUCCEEDED`, `FAILED`,
  `EXPIRED`, `CANCELLED`, …) and, once it succeeded, one `BatchEntry` per request, matched
  by its key (the per-request metadata, or the request order where Google leaves it out).
  `BatchEntry.outcome` reads an entry like an interactive answer (`interpret`): a
  `Generation` priced at the batch price, or the `Failure` it amounts to.
- `cancel`.

Each call is retried (tenacity) on 429, 5xx and transport errors like interactive calls,
honouring the server's retryDelay; what still fails raises `BatchCallError` with the
`Failure` it amounts to. The SDK works in its own event loop (bot.adapters.gemini._SdkLoop):
a finished batch's answer carries every image, megabytes of JSON to decode.
"""

from __future__ import annotations

import contextvars
import io
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from bot.adapters.gemini import (
    Failure,
    FailureKind,
    Generation,
    _failure_from_exception,
    _SdkLoop,
    _should_retry,
    interpret,
    restore_finish_messages,
    retry_delay_of,
)
from bot.adapters.prompts import CompiledRequest, rest_body
from bot.config import Settings, estimate_cost, require

log = logging.getLogger(__name__)

# Google's states once a batch has ended (the SDK's JOB_STATES_ENDED, by name).
ENDED_STATES = frozenset(
    {
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_FAILED",
        "JOB_STATE_CANCELLED",
        "JOB_STATE_EXPIRED",
        "JOB_STATE_PARTIALLY_SUCCEEDED",
    }
)
# Not started yet: Cancel still saves the whole cost.
WAITING_STATES = frozenset({"JOB_STATE_PENDING", "JOB_STATE_QUEUED", "JOB_STATE_UNSPECIFIED"})
SUCCEEDED_STATES = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"})
# Per-request errors carry google.rpc codes (not HTTP statuses).
_RPC_KINDS = {
    3: FailureKind.INVALID_REQUEST,  # INVALID_ARGUMENT
    4: FailureKind.TIMED_OUT,  # DEADLINE_EXCEEDED
    7: FailureKind.AUTH,  # PERMISSION_DENIED
    8: FailureKind.RATE_LIMITED,  # RESOURCE_EXHAUSTED
    14: FailureKind.OVERLOADED,  # UNAVAILABLE
    400: FailureKind.INVALID_REQUEST,
    429: FailureKind.RATE_LIMITED,
    503: FailureKind.OVERLOADED,
}
# JSON per request beyond its images and text (keys, config, base64 padding).
_REQUEST_OVERHEAD = 2_000
_CALL_TIMEOUT_SECONDS = 300.0
_FIND_PAGE_SIZE = 100
_FIND_LIMIT = 300  # the newest batches a lost submission is looked for among

_T = TypeVar("_T")


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch: its key (unique in the batch) and what to send."""

    key: str
    compiled: CompiledRequest

    def inline_bytes(self) -> int:
        """About what it adds to an inline batch: base64 of its images plus its text."""
        total = _REQUEST_OVERHEAD
        for part in self.compiled.parts:
            if part.inline_data is not None and part.inline_data.data:
                total += len(part.inline_data.data) * 4 // 3 + 4
            if part.text:
                total += len(part.text.encode())
        return total


@dataclass
class BatchEntry:
    """What the batch answered for one request."""

    key: str | None
    index: int
    response: types.GenerateContentResponse | None
    error: str | None = None
    error_code: int | None = None

    def outcome(self, *, model: str, size: str) -> Generation | Failure:
        """The answer read like an interactive one; a Generation is priced at the batch price."""
        if self.response is None:
            code = self.error_code or 0
            kind = _RPC_KINDS.get(code, FailureKind.SERVER_ERROR)
            text = self.error or "no answer for this request"
            return Failure(
                kind,
                f"Gemini could not make this image in the batch: {text}"[:300],
                reason=str(code) if code else None,
                detail=text,
            )
        result = interpret(self.response, model=model, size=size)
        if isinstance(result, Generation):
            result.cost = estimate_cost(
                model,
                size,
                images_out=len(result.images),
                input_tokens=result.usage.prompt_tokens,
                economy=True,
            )
        return result


@dataclass
class BatchStatus:
    name: str
    state: str  # JOB_STATE_…
    display_name: str | None = None
    created_at: float | None = None
    updated_at: float | None = None
    ended_at: float | None = None
    entries: list[BatchEntry] | None = None  # once it succeeded

    @property
    def done(self) -> bool:
        return self.state in ENDED_STATES

    @property
    def waiting(self) -> bool:
        """Not started by Google yet (cancelling it costs nothing)."""
        return self.state in WAITING_STATES

    @property
    def succeeded(self) -> bool:
        return self.state in SUCCEEDED_STATES


class BatchCallError(Exception):
    """A Batch API call that failed (after retries)."""

    def __init__(self, failure: Failure, *, not_found: bool = False) -> None:
        super().__init__(failure.detail or failure.message)
        self.failure = failure
        self.not_found = not_found

    @property
    def retryable(self) -> bool:
        return self.failure.retryable


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _state_name(job: types.BatchJob) -> str:
    state = job.state
    if state is None:
        return "JOB_STATE_UNSPECIFIED"
    return str(getattr(state, "name", state))


# ---------------------------------------------------------------------------------------------
# finishMessage from the raw answer (google-genai drops it when parsing, as for generateContent:
# see bot.adapters.gemini). Each call collects its own raw bodies through a context variable.
# ---------------------------------------------------------------------------------------------

_RAW_BODIES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "gemini_batch_raw_bodies", default=None
)


def _tap_raw_bodies(client: genai.Client) -> None:
    api = getattr(client, "_api_client", None)
    original = getattr(api, "async_request", None)
    if api is None or not callable(original):  # pragma: no cover - a future SDK
        return

    async def async_request(*args: Any, **kwargs: Any) -> Any:
        response = await original(*args, **kwargs)
        sink = _RAW_BODIES.get()
        body = getattr(response, "body", None)
        if sink is not None and isinstance(body, str):
            sink.append(body)
        return response

    api.async_request = async_request


def batch_finish_messages(body: str) -> list[list[str | None]]:
    """Per inlined response, its candidates' finishMessage (None where absent)."""
    if '"finishMessage"' not in body and '"finish_message"' not in body:
        return []
    try:
        data = json.loads(body)
        items = data["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
    except (ValueError, KeyError, TypeError):
        return []
    out: list[list[str | None]] = []
    for item in items if isinstance(items, list) else []:
        candidates = ((item or {}).get("response") or {}).get("candidates") or []
        out.append(
            [
                c.get("finishMessage", c.get("finish_message")) if isinstance(c, dict) else None
                for c in candidates
            ]
        )
    return out


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------


class GeminiBatchClient:
    """Gemini's Batch API with our retry policy. One per process; close with aclose()."""

    def __init__(
        self, settings: Settings, *, backoff_initial: float = 1.0, backoff_max: float = 30.0
    ) -> None:
        require(settings, "GEMINI_API_KEY")
        assert settings.gemini_api_key is not None
        self._settings = settings
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        http_options = types.HttpOptions(
            base_url=settings.gemini_base_url or None,
            api_version=settings.gemini_api_version,
            retry_options=types.HttpRetryOptions(attempts=1),  # ours, below
            timeout=int(_CALL_TIMEOUT_SECONDS * 1000),  # milliseconds
        )
        self._client = genai.Client(
            api_key=settings.gemini_api_key.get_secret_value().strip(), http_options=http_options
        )
        _tap_raw_bodies(self._client)
        self._sdk_loop = _SdkLoop()

    async def aclose(self) -> None:
        if not self._sdk_loop.started:
            await self._client.aio.aclose()
            return
        try:
            await self._sdk_loop.run(self._client.aio.aclose())
        finally:
            self._sdk_loop.stop()

    @property
    def inline_limit(self) -> int:
        return self._settings.economy_inline_max_bytes

    # -- calls --------------------------------------------------------------------------------

    async def submit(
        self, *, model: str, requests: Sequence[BatchRequest], display_name: str
    ) -> BatchStatus:
        """Create one batch of `requests` (keys unique) for `model`."""
        if not requests:
            raise ValueError("a batch needs at least one request")
        if len({r.key for r in requests}) != len(requests):
            raise ValueError("batch request keys must be unique")
        size = sum(r.inline_bytes() for r in requests)
        config = types.CreateBatchJobConfig(display_name=display_name)
        if size <= self.inline_limit:
            inlined = [
                types.InlinedRequest(
                    model=r.compiled.model,
                    contents=[r.compiled.user_content()],
                    config=r.compiled.config,
                    metadata={"key": r.key},
                )
                for r in requests
            ]
            job = await self._call(
                "create", lambda: self._client.aio.batches.create(
                    model=model, src=inlined, config=config
                )
            )  # fmt: skip
            log.info("batch %s: %d inline requests for %s", job.name, len(requests), model)
        else:
            lines = "\n".join(
                json.dumps(
                    {"key": r.key, "request": rest_body(r.compiled, with_images=True)},
                    separators=(",", ":"),
                )
                for r in requests
            ).encode()
            uploaded = await self._call(
                "upload", lambda: self._client.aio.files.upload(
                    file=io.BytesIO(lines),
                    config=types.UploadFileConfig(
                        display_name=f"{display_name}-requests", mime_type="application/jsonl"
                    ),
                )
            )  # fmt: skip
            assert uploaded.name is not None
            file_name = uploaded.name
            job = await self._call(
                "create", lambda: self._client.aio.batches.create(
                    model=model, src=file_name, config=config
                )
            )  # fmt: skip
            log.info(
                "batch %s: %d requests (%d bytes) in %s for %s",
                job.name, len(requests), len(lines), file_name, model,
            )  # fmt: skip
        return self._status(job, entries=None)

    async def status(self, name: str, *, keys: Sequence[str]) -> BatchStatus:
        """The batch now; with its entries once it succeeded. `keys`: the requests' keys in
        the order they were submitted (answers carry their key, or come in that order)."""
        bodies: list[str] = []

        async def get() -> tuple[types.BatchJob, list[str]]:
            token = _RAW_BODIES.set(bodies)
            try:
                return await self._client.aio.batches.get(name=name), bodies
            finally:
                _RAW_BODIES.reset(token)

        job, raw = await self._call("get", get)
        entries: list[BatchEntry] | None = None
        state = _state_name(job)
        if state in SUCCEEDED_STATES:
            entries = await self._entries(job, keys, raw[-1] if raw else None)
        return self._status(job, entries=entries)

    async def cancel(self, name: str) -> None:
        await self._call("cancel", lambda: self._client.aio.batches.cancel(name=name))

    async def find(self, display_name: str) -> BatchStatus | None:
        """A batch submitted earlier under `display_name` (newest first, a few pages)."""

        async def scan() -> types.BatchJob | None:
            pager = await self._client.aio.batches.list(config={"page_size": _FIND_PAGE_SIZE})
            seen = 0
            async for job in pager:
                if job.display_name == display_name:
                    return job
                seen += 1
                if seen >= _FIND_LIMIT:
                    break
            return None

        job = await self._call("list", scan)
        return None if job is None else self._status(job, entries=None)

    # -- internals ----------------------------------------------------------------------------

    def _status(self, job: types.BatchJob, *, entries: list[BatchEntry] | None) -> BatchStatus:
        assert job.name is not None
        return BatchStatus(
            name=job.name,
            state=_state_name(job),
            display_name=job.display_name,
            created_at=_epoch(job.create_time),
            updated_at=_epoch(job.update_time),
            ended_at=_epoch(job.end_time),
            entries=entries,
        )

    async def _entries(
        self, job: types.BatchJob, keys: Sequence[str], raw: str | None
    ) -> list[BatchEntry]:
        dest = job.dest
        out: list[BatchEntry] = []
        if dest is not None and dest.inlined_responses is not None:
            messages = batch_finish_messages(raw) if raw else []
            for index, item in enumerate(dest.inlined_responses):
                key = (item.metadata or {}).get("key") or (
                    keys[index] if index < len(keys) else None
                )
                response = item.response
                if response is not None and index < len(messages):
                    restore_finish_messages(response, messages[index])
                error = item.error
                out.append(
                    BatchEntry(
                        key=key,
                        index=index,
                        response=response if error is None else None,
                        error=(error.message or "request failed") if error is not None else None,
                        error_code=error.code if error is not None else None,
                    )
                )
            return out
        if dest is not None and dest.file_name:
            file_name = dest.file_name
            data = await self._call(
                "download", lambda: self._client.aio.files.download(file=file_name)
            )
            return await self._sdk_loop.run(_parse_lines(data or b"", keys))
        return out

    async def _call(self, what: str, make: Callable[[], Awaitable[_T]]) -> _T:
        """One SDK call in the SDK's loop, with our retries; BatchCallError when it fails."""
        started = time.monotonic()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._settings.gemini_max_attempts)
            | stop_before_delay(self._settings.gemini_retry_budget_seconds),
            wait=self._wait,
            retry=retry_if_exception(_should_retry),
            reraise=True,
            before_sleep=lambda state: log.info(
                "batch %s attempt %d failed; retrying in %.1f s",
                what, state.attempt_number, state.upcoming_sleep,
            ),
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._sdk_loop.run(_awaited(make))
        except Exception as exc:  # CancelledError is not an Exception
            failure = _failure_from_exception(exc, timeout=_CALL_TIMEOUT_SECONDS)
            failure.latency = time.monotonic() - started
            not_found = isinstance(exc, genai_errors.APIError) and exc.code == 404
            log.warning("batch %s failed: %s (%s)", what, failure.kind.value, failure.detail)
            raise BatchCallError(failure, not_found=not_found) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = retry_delay_of(exc) if exc is not None else None
        if delay is not None:
            return delay + random.uniform(0.0, min(1.0, delay * 0.1))
        backoff = wait_exponential_jitter(
            initial=self._backoff_initial, max=self._backoff_max, jitter=self._backoff_initial
        )
        return float(backoff(state))


async def _awaited(make: Callable[[], Awaitable[_T]]) -> _T:
    return await make()


async def _parse_lines(data: bytes, keys: Sequence[str]) -> list[BatchEntry]:
    """A responses file: one `{"key", "response" | "error"}` a line, in request order."""
    out: list[BatchEntry] = []
    for index, line in enumerate(data.decode("utf-8").splitlines()):
        if not line.strip():
            continue
        item = json.loads(line)
        key = item.get("key") or (keys[len(out)] if len(out) < len(keys) else None)
        error = item.get("error")
        response = None
        if error is None and item.get("response") is not None:
            # JSON mode: base64 image bytes decode as the SDK's own parsing does.
            response = types.GenerateContentResponse.model_validate_json(
                json.dumps(item["response"])
            )
        out.append(
            BatchEntry(
                key=None if key is None else str(key),
                index=index,
                response=response,
                error=(str(error.get("message") or "request failed") if error else None),
                error_code=(int(error["code"]) if error and "code" in error else None),
            )
        )
    return out
