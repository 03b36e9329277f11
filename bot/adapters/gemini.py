"""The one place that talks to google-genai: a request in, a `Generation` or a typed `Failure` out.

- One async client (`client.aio`, aiohttp transport) configured from Settings: key, base URL,
  API version, and a per-call timeout by output size (`settings.timeout_for(size)`), enforced by
  the SDK (`HttpOptions.timeout`, in milliseconds) and by our own `asyncio.timeout` backstop.
- Retries (tenacity) on 429, 408, 500, 502, 503, 504 and transport errors, never on other 4xx:
  exponential backoff with jitter, or the server's `RetryInfo.retryDelay` (plus a little
  jitter) when it gives one; at most `gemini_max_attempts` attempts, and no retry whose wait
  would end later than `gemini_retry_budget_seconds` after the first attempt started. A call
  that hit our own timeout is not retried: it has already used its whole time.
  The SDK's own retries (including its hidden 1-10 s aiohttp reconnect) are switched off so
  there is exactly one retry policy.
- Limits: at most `gemini_max_in_flight` calls in flight (one semaphore per client), and an
  optional `gemini_requests_per_minute` per model (aiolimiter), taken before each attempt.
- Blocked output: Google's `finishMessage` (which the SDK drops when parsing) is read from the
  raw answer and shown to the user (see "finishMessage from the raw response").
- Multi-turn: `contents` may carry earlier turns; they are sent unchanged. The model's
  returned `types.Content` comes back untouched (thought signatures intact) for the next turn;
  `content_to_json` / `content_from_json` store it and restore it byte for byte.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import random
import re
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import aiohttp
from aiolimiter import AsyncLimiter
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

from bot.config import (
    MODEL_ALIASES,
    Settings,
    UnknownModelError,
    estimate_cost,
    require,
    text_cost,
)

# The SDK's httpx2 transport (used when aiohttp is absent) raises its own exception types.
_HTTPX2_TIMEOUTS: tuple[type[BaseException], ...] = ()
_HTTPX2_TRANSPORT: tuple[type[BaseException], ...] = ()
try:
    import httpx2

    _HTTPX2_TIMEOUTS = (httpx2.TimeoutException,)
    _HTTPX2_TRANSPORT = (httpx2.TransportError,)
except ImportError:  # pragma: no cover - depends on the environment
    pass

log = logging.getLogger(__name__)

RETRY_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})
# Extra seconds our asyncio backstop allows beyond the SDK's own timeout.
_BACKSTOP_GRACE = 2.0
_MESSAGE_LIMIT = 300

# Finish reasons that mean "the output was filtered", as opposed to "no image was made".
_BLOCKED_FINISH = frozenset(
    {
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "IMAGE_OTHER",
        "SAFETY",
        "PROHIBITED_CONTENT",
        "RECITATION",
        "BLOCKLIST",
        "SPII",
        "MODEL_ARMOR",
    }
)


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class Usage:
    prompt_tokens: int = 0
    output_tokens: int = 0
    thoughts_tokens: int = 0
    total_tokens: int = 0


@dataclass
class OutputImage:
    data: bytes
    mime_type: str


@dataclass
class Generation:
    """A successful call: the final image(s) (thought images skipped) and everything about it."""

    images: list[OutputImage]
    text: str
    content: types.Content  # the model's returned content, unchanged (send it back next turn)
    usage: Usage
    cost: float
    model: str
    model_version: str | None
    latency: float  # seconds from generate() being called to the answer, retries included
    attempts: int


@dataclass
class TextAnswer:
    """A successful call to a text model: the answer's text (thoughts skipped) and its cost."""

    text: str
    content: types.Content  # the model's returned content, unchanged (send it back next turn)
    usage: Usage
    cost: float
    model: str
    model_version: str | None
    finish_reason: str | None
    latency: float
    attempts: int


class FailureKind(StrEnum):
    PROMPT_BLOCKED = "prompt_blocked"
    OUTPUT_BLOCKED = "output_blocked"
    NO_IMAGE = "no_image"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    TIMED_OUT = "timed_out"
    INVALID_REQUEST = "invalid_request"
    AUTH = "auth"
    SERVER_ERROR = "server_error"
    NETWORK = "network"
    BAD_ANSWER = "bad_answer"  # a text model's answer was unusable (empty, cut off, invalid)


_RETRYABLE_KINDS = frozenset(
    {
        FailureKind.RATE_LIMITED,
        FailureKind.OVERLOADED,
        FailureKind.TIMED_OUT,
        FailureKind.SERVER_ERROR,
        FailureKind.NETWORK,
    }
)


@dataclass
class Failure:
    """A call that produced no image. `message` is for the user; `detail` only for logs."""

    kind: FailureKind
    message: str
    reason: str | None = None  # block or finish reason, API status
    retry_after: float | None = None  # seconds, when the server said
    detail: str | None = None
    latency: float = 0.0
    attempts: int = 1

    @property
    def retryable(self) -> bool:
        """True when trying the same request again later may well succeed."""
        return self.kind in _RETRYABLE_KINDS


# ---------------------------------------------------------------------------------------------
# Content <-> JSON
# ---------------------------------------------------------------------------------------------


def content_to_json(
    content: types.Content, *, without_data_of: Sequence[int] = ()
) -> dict[str, Any]:
    """JSON-safe dict of a Content (bytes as URL-safe base64), for the database.
    `without_data_of`: parts whose inline bytes to leave out (the caller stores them)."""
    exclude = {"parts": {i: {"inline_data": {"data"}} for i in without_data_of}}
    return content.model_dump(mode="json", exclude_none=True, exclude=exclude or None)


def content_from_json(data: dict[str, Any]) -> types.Content:
    """The Content `content_to_json` stored; signatures and image bytes come back byte for byte."""
    return types.Content.model_validate(data)


# ---------------------------------------------------------------------------------------------
# Error classification
# ---------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _parse_duration(value: object) -> float | None:
    """A protobuf Duration in JSON ("17s", "0.5s") -> seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1))
    return None


def _error_details(exc: genai_errors.APIError) -> list[dict[str, Any]]:
    body = exc.details
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("details"), list):
            return [d for d in inner["details"] if isinstance(d, dict)]
    return []


def retry_delay_of(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait: RetryInfo.retryDelay, else a Retry-After header."""
    if not isinstance(exc, genai_errors.APIError):
        return None
    for detail in _error_details(exc):
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = _parse_duration(detail.get("retryDelay"))
            if delay is not None:
                return delay
    headers = getattr(exc.response, "headers", None)
    if headers is not None:
        try:
            value = headers.get("Retry-After")
        except (AttributeError, TypeError):  # pragma: no cover - exotic response objects
            value = None
        if value is not None:
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


def _error_reason(exc: genai_errors.APIError) -> str | None:
    for detail in _error_details(exc):
        if str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo"):
            reason = detail.get("reason")
            return str(reason) if reason else None
    return None


def _is_timeout(exc: BaseException) -> bool:
    # aiohttp's and asyncio's timeouts are TimeoutError on 3.11; httpx2 has its own.
    return isinstance(exc, (TimeoutError, *_HTTPX2_TIMEOUTS))


def _is_transport_error(exc: BaseException) -> bool:
    if _is_timeout(exc):
        return False
    transport: tuple[type[BaseException], ...] = (
        aiohttp.ClientConnectionError,
        aiohttp.ClientPayloadError,
        ConnectionError,
        *_HTTPX2_TRANSPORT,
    )
    return isinstance(exc, transport)


def _should_retry(exc: BaseException) -> bool:
    if isinstance(exc, genai_errors.APIError):
        return exc.code in RETRY_STATUS_CODES
    return _is_transport_error(exc)


def _short(text: str, limit: int = _MESSAGE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _failure_from_exception(exc: BaseException, *, timeout: float) -> Failure:
    """Map an exception from the SDK (after retries) to a typed Failure."""
    if isinstance(exc, genai_errors.APIError):
        code = exc.code
        status = exc.status or None
        api_message = _short(str(exc.message or status or f"HTTP {code}"))
        detail = f"HTTP {code} {status}: {exc.message}"
        retry_after = retry_delay_of(exc)
        if code == 429:
            wait = (
                f" Try again in {max(1, round(retry_after))} s."
                if retry_after
                else " Try again in a minute."
            )
            return Failure(
                FailureKind.RATE_LIMITED,
                "Gemini is busy (rate limit reached)." + wait,
                reason=status,
                retry_after=retry_after,
                detail=detail,
            )
        if code in (401, 403) or _error_reason(exc) == "API_KEY_INVALID":
            return Failure(
                FailureKind.AUTH,
                "Google rejected the bot's Gemini API key. An admin needs to check GEMINI_API_KEY.",
                reason=status,
                detail=detail,
            )
        if code == 503:
            return Failure(
                FailureKind.OVERLOADED,
                "The model is overloaded right now. Try again in a minute, or use a smaller size.",
                reason=status,
                retry_after=retry_after,
                detail=detail,
            )
        if code in (408, 504):
            return Failure(
                FailureKind.TIMED_OUT,
                "Gemini took too long to answer. Try again, or use a smaller size.",
                reason=status,
                retry_after=retry_after,
                detail=detail,
            )
        if 400 <= code < 500:
            return Failure(
                FailureKind.INVALID_REQUEST,
                f"Gemini rejected the request: {api_message}",
                reason=status,
                detail=detail,
            )
        return Failure(
            FailureKind.SERVER_ERROR,
            "Gemini had an internal error. Try again in a moment.",
            reason=status,
            retry_after=retry_after,
            detail=detail,
        )
    if _is_timeout(exc):
        return Failure(
            FailureKind.TIMED_OUT,
            f"Gemini did not answer within {timeout:g} s. Try again, or use a smaller size.",
            detail=f"{type(exc).__name__}: {exc}",
        )
    if _is_transport_error(exc):
        return Failure(
            FailureKind.NETWORK,
            "Could not reach Gemini (network error). Try again in a moment.",
            detail=f"{type(exc).__name__}: {exc}",
        )
    return Failure(
        FailureKind.SERVER_ERROR,
        "Something went wrong talking to Gemini. Try again in a moment.",
        detail=f"{type(exc).__name__}: {exc}",
    )


# ---------------------------------------------------------------------------------------------
# Response interpretation
# ---------------------------------------------------------------------------------------------


def _enum_name(value: object) -> str | None:
    if value is None:
        return None
    name = getattr(value, "name", None) or getattr(value, "value", None) or value
    return str(name)


def _usage_of(response: types.GenerateContentResponse) -> Usage:
    meta = response.usage_metadata
    if meta is None:
        return Usage()
    return Usage(
        prompt_tokens=meta.prompt_token_count or 0,
        output_tokens=meta.candidates_token_count or 0,
        thoughts_tokens=meta.thoughts_token_count or 0,
        total_tokens=meta.total_token_count or 0,
    )


def _cost(model: str, size: str, images: int, usage: Usage) -> float:
    if images == 0:
        return 0.0
    try:
        return estimate_cost(model, size, images_out=images, input_tokens=usage.prompt_tokens)
    except UnknownModelError:
        return 0.0


def interpret(
    response: types.GenerateContentResponse, *, model: str, size: str
) -> Generation | Failure:
    """A parsed 200 response -> Generation, or the Failure it amounts to (latency left at 0)."""
    candidates = response.candidates or []
    feedback = response.prompt_feedback
    if not candidates:
        reason = _enum_name(feedback.block_reason) if feedback is not None else None
        if reason:
            extra = (
                f" {feedback.block_reason_message}"
                if feedback and feedback.block_reason_message
                else ""
            )
            return Failure(
                FailureKind.PROMPT_BLOCKED,
                f"Google blocked the prompt ({reason}). Rephrase it and try again.",
                reason=reason,
                detail=(f"prompt blocked: {reason}.{extra}").strip(),
            )
        return Failure(
            FailureKind.NO_IMAGE,
            "Gemini returned nothing. Try again, or rephrase the prompt.",
            detail="no candidates and no block reason",
        )

    candidate = candidates[0]
    content = candidate.content or types.Content(role="model", parts=[])
    parts = content.parts or []
    images = [
        OutputImage(data=p.inline_data.data, mime_type=p.inline_data.mime_type or "image/png")
        for p in parts
        if p.inline_data is not None
        and p.inline_data.data
        and not p.thought
        and (p.inline_data.mime_type or "image/").startswith("image/")
    ]
    text = "\n".join(p.text for p in parts if p.text and not p.thought).strip()
    finish = _enum_name(candidate.finish_reason)
    finish_message = candidate.finish_message

    if images:
        usage = _usage_of(response)
        return Generation(
            images=images,
            text=text,
            content=content,
            usage=usage,
            cost=_cost(model, size, len(images), usage),
            model=model,
            model_version=response.model_version,
            latency=0.0,
            attempts=1,
        )
    if finish in _BLOCKED_FINISH:
        # Google's own finishMessage says why and what to do; without one, we say it.
        said = (
            f" Google says: “{_short(finish_message)}”"
            if finish_message
            else " Try a different prompt."
        )
        return Failure(
            FailureKind.OUTPUT_BLOCKED,
            f"Google blocked the generated image ({finish}).{said}",
            reason=finish,
            detail=finish_message,
        )
    if text:
        message = f"The model answered without an image: “{_short(text, 240)}”. Try rephrasing."
    elif finish_message:
        message = (
            f"The model returned no image ({finish or 'no reason given'}): "
            f"“{_short(finish_message)}”"
        )
    else:
        message = "The model returned no image. Try again, or rephrase the prompt."
    return Failure(FailureKind.NO_IMAGE, message, reason=finish, detail=text or finish_message)


def interpret_text(response: types.GenerateContentResponse, *, model: str) -> TextAnswer | Failure:
    """A parsed 200 response from a text model -> TextAnswer, or the Failure it amounts to."""
    usage = _usage_of(response)
    candidates = response.candidates or []
    feedback = response.prompt_feedback
    if not candidates:
        reason = _enum_name(feedback.block_reason) if feedback is not None else None
        if reason:
            return Failure(
                FailureKind.PROMPT_BLOCKED,
                f"Google blocked the request ({reason}). Try another image.",
                reason=reason,
                detail=f"prompt blocked: {reason}",
            )
        return Failure(
            FailureKind.BAD_ANSWER,
            "Gemini returned nothing. Try again in a moment.",
            detail="no candidates and no block reason",
        )
    candidate = candidates[0]
    content = candidate.content or types.Content(role="model", parts=[])
    parts = content.parts or []
    text = "".join(p.text for p in parts if p.text and not p.thought).strip()
    finish = _enum_name(candidate.finish_reason)
    if finish in _BLOCKED_FINISH:
        said = (
            f" Google says: “{_short(candidate.finish_message)}”"
            if candidate.finish_message
            else " Try another image."
        )
        return Failure(
            FailureKind.OUTPUT_BLOCKED,
            f"Google blocked the answer ({finish}).{said}",
            reason=finish,
            detail=candidate.finish_message,
        )
    if not text:
        return Failure(
            FailureKind.BAD_ANSWER,
            "The model gave an empty answer. Try again in a moment.",
            reason=finish,
            detail=candidate.finish_message,
        )
    return TextAnswer(
        text=text,
        content=content,
        usage=usage,
        cost=text_cost(
            model,
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.output_tokens + usage.thoughts_tokens,
        ),
        model=model,
        model_version=response.model_version,
        finish_reason=finish,
        latency=0.0,
        attempts=1,
    )


# ---------------------------------------------------------------------------------------------
# finishMessage from the raw response
# ---------------------------------------------------------------------------------------------
#
# google-genai 3.x has `Candidate.finish_message`, but its Gemini Developer API converter
# (`models._Candidate_from_mldev`) copies `finishReason` and not `finishMessage`, and the parsed
# response keeps no raw body (`sdk_http_response` carries the headers only, unless
# `should_return_http_response` is set, which then skips parsing altogether). So the client's
# one request method is wrapped: each call collects the finish messages of its own raw answer
# (a context variable per call, so concurrent calls never mix), and they are put back on the
# parsed candidates where the SDK left them empty. If the SDK starts parsing the field, its
# value wins; if its internals change shape, the tap is skipped and nothing breaks.

_RAW_FINISH_MESSAGES: contextvars.ContextVar[list[str | None] | None] = contextvars.ContextVar(
    "gemini_raw_finish_messages", default=None
)
# Answers with an image are megabytes and use no finish message; blocked ones are tiny.
_RAW_SCAN_LIMIT = 1024 * 1024


def finish_messages_of(body: object) -> list[str | None]:
    """candidates[i].finishMessage of a raw generateContent JSON body (None where absent)."""
    if not isinstance(body, str | bytes) or len(body) > _RAW_SCAN_LIMIT:
        return []
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if '"finishMessage"' not in text and '"finish_message"' not in text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return []
    candidates = data.get("candidates") if isinstance(data, dict) else None
    if not isinstance(candidates, list):
        return []
    out: list[str | None] = []
    for candidate in candidates:
        message = None
        if isinstance(candidate, dict):
            message = candidate.get("finishMessage", candidate.get("finish_message"))
        out.append(message if isinstance(message, str) and message.strip() else None)
    return out


def _tap_raw_finish_messages(client: genai.Client) -> bool:
    """Wrap the SDK client's request method so each call keeps its raw finish messages."""
    api = getattr(client, "_api_client", None)
    original = getattr(api, "async_request", None)
    if api is None or not callable(original):  # pragma: no cover - a future SDK
        log.debug("google-genai has no _api_client.async_request; finishMessage not tapped")
        return False

    async def async_request(*args: Any, **kwargs: Any) -> Any:
        response = await original(*args, **kwargs)
        sink = _RAW_FINISH_MESSAGES.get()
        if sink is not None:
            sink.extend(finish_messages_of(getattr(response, "body", None)))
        return response

    api.async_request = async_request
    return True


def restore_finish_messages(
    response: types.GenerateContentResponse, messages: Sequence[str | None]
) -> None:
    """Put raw finish messages on the parsed candidates that lack one (the SDK's own win)."""
    for candidate, message in zip(response.candidates or [], messages, strict=False):
        if message and not candidate.finish_message:
            candidate.finish_message = message


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------

_T = TypeVar("_T")


class _SdkLoop:
    """A private event loop in a daemon thread where the SDK does its HTTP and JSON work.

    A 4K answer is ~19 MB of JSON; the SDK decodes and validates it (~0.1-0.2 s of CPU) in
    whatever loop awaits the call. Kept off the bot's loop, several answers arriving at once
    no longer freeze the bot: the GIL changes hands between the SDK's C calls. Cancelling the
    awaiting task cancels the call in this loop (run_coroutine_threadsafe propagates it)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._loop is not None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="gemini-sdk", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._ensure()))

    def stop(self) -> None:
        """Cancel what still runs there (a shutdown may not wait for it), then end the thread."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return

        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(drain(), loop).result(timeout=5)
        except Exception:  # best effort at shutdown
            log.debug("gemini SDK loop did not drain", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()


class GeminiClient:
    """One async google-genai client with retries, a concurrency cap and per-model rate limits."""

    def __init__(
        self,
        settings: Settings,
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
    ) -> None:
        require(settings, "GEMINI_API_KEY")  # ConfigError with the fix, never the value
        assert settings.gemini_api_key is not None
        key = settings.gemini_api_key.get_secret_value().strip()
        self._settings = settings
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        http_options = types.HttpOptions(
            base_url=settings.gemini_base_url or None,
            api_version=settings.gemini_api_version,
            # attempts=1: we own retries; this also turns off the SDK's implicit aiohttp retry.
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self._client = genai.Client(api_key=key, http_options=http_options)
        _tap_raw_finish_messages(self._client)
        self._sdk_loop = _SdkLoop()
        self._in_flight = asyncio.Semaphore(settings.gemini_max_in_flight)
        self._limiters: dict[str, AsyncLimiter] = {}

    async def aclose(self) -> None:
        if not self._sdk_loop.started:
            await self._client.aio.aclose()  # nothing was opened in another loop
            return
        try:
            await self._sdk_loop.run(self._client.aio.aclose())
        finally:
            self._sdk_loop.stop()

    async def __aenter__(self) -> GeminiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- public ---------------------------------------------------------------------------------

    async def generate(
        self,
        *,
        model: str,
        contents: Sequence[types.Content],
        config: types.GenerateContentConfig,
        size: str,
    ) -> Generation | Failure:
        """One generation (with retries). Never raises for API, network or timeout problems."""
        model = MODEL_ALIASES.get(model.strip().lower(), model.strip())
        started = time.monotonic()
        outcome = await self._with_retries(
            model=model,
            contents=contents,
            config=config,
            seconds=self._settings.timeout_for(size),
            started=started,
        )
        if isinstance(outcome, Failure):
            return outcome
        response, attempts = outcome
        result = interpret(response, model=model, size=size)
        result.latency = time.monotonic() - started
        result.attempts = attempts
        if isinstance(result, Failure):
            log.info(
                "gemini %s answered without an image: %s (%s)",
                model,
                result.kind.value,
                result.reason,
            )
        return result

    async def generate_text(
        self,
        *,
        model: str,
        contents: Sequence[types.Content],
        config: types.GenerateContentConfig,
        seconds: float,
    ) -> TextAnswer | Failure:
        """One call to a text model (with the same retries, limits and failure mapping as
        images): its text answer, or the Failure it amounts to. Never raises for API,
        network or timeout problems."""
        model = model.strip()
        started = time.monotonic()
        outcome = await self._with_retries(
            model=model, contents=contents, config=config, seconds=seconds, started=started
        )
        if isinstance(outcome, Failure):
            return outcome
        response, attempts = outcome
        result = interpret_text(response, model=model)
        result.latency = time.monotonic() - started
        result.attempts = attempts
        if isinstance(result, Failure):
            log.info(
                "gemini %s answered without usable text: %s (%s)",
                model,
                result.kind.value,
                result.reason,
            )
        return result

    async def _with_retries(
        self,
        *,
        model: str,
        contents: Sequence[types.Content],
        config: types.GenerateContentConfig,
        seconds: float,
        started: float,
    ) -> tuple[types.GenerateContentResponse, int] | Failure:
        """The call with our retry policy: the parsed answer and the attempts it took, or
        the Failure the last error amounts to."""
        http_options = (config.http_options or types.HttpOptions()).model_copy(
            update={"timeout": int(seconds * 1000)}  # HttpOptions.timeout is in milliseconds
        )
        update: dict[str, Any] = {"http_options": http_options}
        if config.automatic_function_calling is None:
            # No tools to call: skip the SDK's function-calling loop (and its INFO line per call).
            update["automatic_function_calling"] = types.AutomaticFunctionCallingConfig(
                disable=True
            )
        call_config = config.model_copy(update=update)
        attempts = 0

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._settings.gemini_max_attempts)
            | stop_before_delay(self._settings.gemini_retry_budget_seconds),
            wait=self._wait,
            retry=retry_if_exception(_should_retry),
            reraise=True,
            before_sleep=self._log_retry,
        )
        response: types.GenerateContentResponse | None = None
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    response = await self._call_once(
                        model=model, contents=list(contents), config=call_config, seconds=seconds
                    )
        except Exception as exc:  # CancelledError is not an Exception: cancelling still works
            failure = _failure_from_exception(exc, timeout=seconds)
            failure.latency = time.monotonic() - started
            failure.attempts = attempts
            level = logging.ERROR if failure.kind is FailureKind.SERVER_ERROR else logging.WARNING
            log.log(
                level,
                "gemini %s failed after %d attempt(s): %s (%s)",
                model,
                attempts,
                failure.kind.value,
                failure.detail,
                exc_info=not isinstance(exc, genai_errors.APIError)
                and failure.kind is FailureKind.SERVER_ERROR,
            )
            return failure

        assert response is not None  # the loop only ends without raising after a success
        return response, attempts

    # -- internals ------------------------------------------------------------------------------

    def _limiter(self, model: str) -> AsyncLimiter | None:
        rpm = self._settings.gemini_requests_per_minute
        if not rpm:
            return None
        limiter = self._limiters.get(model)
        if limiter is None:
            limiter = self._limiters[model] = AsyncLimiter(rpm, 60.0)
        return limiter

    async def _call_once(
        self,
        *,
        model: str,
        contents: list[types.Content],
        config: types.GenerateContentConfig,
        seconds: float,
    ) -> types.GenerateContentResponse:
        limiter = self._limiter(model)
        if limiter is not None:
            await limiter.acquire()  # before the semaphore: a throttled model holds no slot
        async with self._in_flight:
            # The SDK enforces `timeout` itself; this backstop catches anything it misses.
            async with asyncio.timeout(seconds + _BACKSTOP_GRACE):
                return await self._sdk_loop.run(
                    self._generate_content(model=model, contents=contents, config=config)
                )

    async def _generate_content(
        self,
        *,
        model: str,
        contents: list[types.Content],
        config: types.GenerateContentConfig,
    ) -> types.GenerateContentResponse:
        """One SDK call (in the SDK's loop), with the finish messages the SDK drops put back."""
        raw_messages: list[str | None] = []
        token = _RAW_FINISH_MESSAGES.set(raw_messages)
        try:
            response = await self._client.aio.models.generate_content(
                model=model, contents=contents, config=config
            )
        finally:
            _RAW_FINISH_MESSAGES.reset(token)
        restore_finish_messages(response, raw_messages)
        return response

    def _wait(self, state: RetryCallState) -> float:
        """The server's retryDelay (+ up to 10 % jitter, at most 1 s) or exponential backoff."""
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = retry_delay_of(exc) if exc is not None else None
        if delay is not None:
            return delay + random.uniform(0.0, min(1.0, delay * 0.1))
        backoff = wait_exponential_jitter(
            initial=self._backoff_initial, max=self._backoff_max, jitter=self._backoff_initial
        )
        return float(backoff(state))

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        what = (
            f"HTTP {exc.code} {exc.status}"
            if isinstance(exc, genai_errors.APIError)
            else type(exc).__name__
        )
        log.info(
            "gemini attempt %d failed (%s); retrying in %.1f s",
            state.attempt_number,
            what,
            state.upcoming_sleep,
        )
