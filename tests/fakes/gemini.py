"""A loopback fake of Google's Gemini REST API (`models/{model}:generateContent`) for tests.

The real google-genai SDK talks to it over HTTP on 127.0.0.1 (point `HttpOptions.base_url` at
`fake.url`), so tests exercise the real request/response wire format, error shapes and
thought-signature rules instead of a mocked SDK. See tests/fakes/README_gemini.md.

What it does, briefly:
- `POST /{v1|v1beta}/models/{model}:generateContent`, camelCase or snake_case keys.
- `x-goog-api-key` header (or `?key=`) required: missing -> 403 PERMISSION_DENIED, wrong ->
  400 INVALID_ARGUMENT with ErrorInfo reason API_KEY_INVALID (what Google really answers).
- Rejects unknown models (404), aspect ratios / sizes / input-image counts the model lacks
  (400 INVALID_ARGUMENT, from `bot.config.CAPABILITIES`), `candidateCount > 1`, bodies over
  `max_request_bytes`.
- Answers with a real, noisy PNG of exactly the size Google documents for the model, aspect
  and size (`bot.config.OUTPUT_DIMENSIONS`: 1K 2:3 = 848x1264, 4K 1:1 = 4096x4096, > 10 MiB),
  marked per request (tEXt chunk + a visible tint and bit band; read it
  back with `fake_mark_of`), preceded by thought parts and carrying thought signatures.
- On later turns, checks every model-role content sent back carries exactly the signatures it
  issued (400 "Image part is missing a thought_signature in content position N, part
  position M", positions 1-based).
- Scriptable faults: `fake.fail_next(kind, times=1, **kw)`; base latency `fake.latency`;
  every request recorded in `fake.requests`; `fake.in_flight` / `fake.max_in_flight`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import colorsys
import contextlib
import functools
import hashlib
import io
import itertools
import json
import os
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from aiohttp import web
from PIL import Image, ImageChops, ImageDraw, ImageStat
from PIL.PngImagePlugin import PngInfo

from bot.adapters.prompts.grid import grid_of
from bot.config import CAPABILITIES, OUTPUT_DIMENSIONS, PRICES, TEXT_PRICES, ModelCapability

DEFAULT_API_KEY = "fake-gemini-key-not-a-secret"
MARK_KEY = "fake-gemini-mark"
THOUGHT_MARK = "thought"
MAX_REQUEST_BYTES = 20 * 1024 * 1024  # the "safe" inline request size Google advises

FAULT_KINDS = frozenset(
    {
        "rate_limit",  # 429 RESOURCE_EXHAUSTED, RetryInfo retryDelay (kw retry_delay="1s"|None)
        "overloaded",  # 503 UNAVAILABLE "The model is overloaded..." (kw retry_delay=None)
        "server_error",  # 500 INTERNAL (kw status=500|502|504|408)
        "slow",  # answer normally after kw delay seconds
        "hang",  # never answer (until the client gives up or the fake stops)
        "prompt_blocked",  # 200, no candidates, promptFeedback.blockReason (kw reason)
        "image_safety",  # 200, candidate without parts (kw finish_reason, message)
        "text_only",  # 200, STOP with text and no image (kw text)
        "invalid",  # 400 INVALID_ARGUMENT (kw message)
        "auth",  # 401/403, or 400 API_KEY_INVALID (kw status=403)
        "disconnect",  # drop the connection without an answer (transport error)
    }
)

# Text models the fake serves (structured output for /describe): the bot's price table.
TEXT_MODELS = frozenset(TEXT_PRICES)
# What Gemini's responseJsonSchema understands (Google's GenerationConfig reference); a schema
# using anything else is refused with 400, as the real API refuses what it cannot read.
JSON_SCHEMA_KEYWORDS = frozenset(
    {
        "$id", "$defs", "$ref", "$anchor", "type", "format", "title", "description", "enum",
        "items", "prefixItems", "minItems", "maxItems", "minimum", "maximum", "anyOf", "oneOf",
        "properties", "additionalProperties", "required", "propertyOrdering",
    }
)  # fmt: skip
GRID_GUTTER_COLOUR = (236, 236, 236)

_QUOTA_METRIC = "generativelanguage.googleapis.com/generate_content_requests"
_SNAKE = re.compile(r"_([a-z0-9])")
_marks = itertools.count(1)
_MARK_PREFIX = "fake-"

# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def output_dims(size: str, aspect: str, model: str | None = None) -> tuple[int, int]:
    """Pixel size of an output: Google's published figure for the model (bot.config's
    OUTPUT_DIMENSIONS, the table the bot plans with). Without a model, the Gemini 3 figures
    (Nano Banana Pro and Nano Banana 2 make the same sizes wherever both have the aspect)."""
    return OUTPUT_DIMENSIONS[model or _GEMINI_3][aspect][size]


_GEMINI_3 = "gemini-3.1-flash-image"  # every aspect and size a Gemini 3 model makes


@functools.lru_cache(maxsize=8)
def _noisy_base(width: int, height: int) -> Image.Image:
    """A photo-like base: smooth colour blobs plus 2x2 grain (a 4K PNG of it is ~17 MiB)."""
    rng = random.Random(width * 100_003 + height)
    small = Image.frombytes("RGB", (8, 8), bytes(rng.randrange(256) for _ in range(8 * 8 * 3)))
    smooth = small.resize((width, height), Image.Resampling.BICUBIC)
    grain_size = (max(1, width // 2), max(1, height // 2))
    grain = Image.merge("RGB", [Image.effect_noise(grain_size, 6) for _ in range(3)])
    grain = grain.resize((width, height), Image.Resampling.NEAREST)
    return ImageChops.add(smooth, grain, 1.0, -128)


# The visible mark: a band across the top, 24 black/white cells = 4 sync + 16 id bits + 4 check
# bits. Big cells sampled at their centres survive JPEG re-encoding and downscaling.
_SYNC = (1, 0, 0, 1)
_CELLS = 24
_BAND = 0.08  # fraction of the height


def _mark_number(mark: str) -> int:
    return int(mark.removeprefix(_MARK_PREFIX)) & 0xFFFF


def _bits_for(number: int) -> list[int]:
    data = [(number >> (15 - i)) & 1 for i in range(16)]
    check = (number ^ (number >> 4) ^ (number >> 8) ^ (number >> 12)) & 0xF
    return [*_SYNC, *data, *[(check >> (3 - i)) & 1 for i in range(4)]]


def _tint_for(number: int) -> tuple[int, int, int]:
    hue = (number * 0.618033988749895) % 1.0  # golden-ratio hues: neighbours differ visibly
    r, g, b = colorsys.hsv_to_rgb(hue, 0.9, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


def render_png(width: int, height: int, mark: str) -> bytes:
    """The PNG the fake returns: cached noisy base, per-mark tint and bit band, tEXt mark."""
    number = _mark_number(mark)
    img = Image.blend(
        _noisy_base(width, height), Image.new("RGB", (width, height), _tint_for(number)), 0.3
    )
    draw = ImageDraw.Draw(img)
    band_h = max(4, round(height * _BAND))
    for i, bit in enumerate(_bits_for(number)):
        x0 = round(i * width / _CELLS)
        x1 = round((i + 1) * width / _CELLS)
        draw.rectangle((x0, 0, x1 - 1, band_h - 1), fill=(255, 255, 255) if bit else (0, 0, 0))
    info = PngInfo()
    info.add_text(MARK_KEY, mark)
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1, pnginfo=info)  # level 1: fast, and noise barely packs
    return buf.getvalue()


def grid_layout(
    width: int, height: int, rows: int, cols: int
) -> tuple[int, list[tuple[int, int, int, int]]]:
    """(gutter, tile boxes row by row) of an R×C sheet: equal tiles, uniform gutters of one
    width between them and a border of at least that width around them."""
    gutter = max(4, round(min(width, height) * 0.016))
    tile_w = (width - 2 * gutter - (cols - 1) * gutter) // cols
    tile_h = (height - 2 * gutter - (rows - 1) * gutter) // rows
    left = (width - cols * tile_w - (cols - 1) * gutter) // 2
    top = (height - rows * tile_h - (rows - 1) * gutter) // 2
    boxes = [
        (
            left + c * (tile_w + gutter),
            top + r * (tile_h + gutter),
            left + c * (tile_w + gutter) + tile_w,
            top + r * (tile_h + gutter) + tile_h,
        )
        for r in range(rows)
        for c in range(cols)
    ]
    return gutter, boxes


def render_grid_png(width: int, height: int, mark: str, rows: int, cols: int) -> bytes:
    """A sheet of R×C tiles on uniform gutters; every tile carries the mark (tint and band),
    so `fake_mark_of` reads it from each tile Split cuts out, and the PNG from its tEXt."""
    _gutter, boxes = grid_layout(width, height, rows, cols)
    sheet = Image.new("RGB", (width, height), GRID_GUTTER_COLOUR)
    x0, y0, x1, y1 = boxes[0]
    tile_png = render_png(x1 - x0, y1 - y0, mark)
    with Image.open(io.BytesIO(tile_png)) as tile:
        tile.load()
        for index, box in enumerate(boxes):
            # each tile a little different, so tiles are told apart
            shade = Image.new("RGB", tile.size, _tint_for(index + 7))
            sheet.paste(Image.blend(tile.convert("RGB"), shade, 0.12), box[:2])
    # The band must stay readable per tile: redraw it on each one.
    draw = ImageDraw.Draw(sheet)
    number = _mark_number(mark)
    for bx0, by0, bx1, by1 in boxes:
        w, h = bx1 - bx0, by1 - by0
        band_h = max(4, round(h * _BAND))
        for i, bit in enumerate(_bits_for(number)):
            cx0 = bx0 + round(i * w / _CELLS)
            cx1 = bx0 + round((i + 1) * w / _CELLS)
            colour = (255, 255, 255) if bit else (0, 0, 0)
            draw.rectangle((cx0, by0, cx1 - 1, by0 + band_h - 1), fill=colour)
    info = PngInfo()
    info.add_text(MARK_KEY, mark)
    buf = io.BytesIO()
    sheet.save(buf, "PNG", compress_level=1, pnginfo=info)
    return buf.getvalue()


@functools.lru_cache(maxsize=1)
def _thought_png() -> bytes:
    img = Image.new("RGB", (256, 256), (128, 128, 128))
    info = PngInfo()
    info.add_text(MARK_KEY, THOUGHT_MARK)
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def fake_mark_of(image_bytes: bytes) -> str | None:
    """The fake's per-request mark of an output image (PNG tEXt, else the visible band).

    Works on re-encoded (JPEG/WEBP) and downscaled copies as long as the aspect is kept.
    """
    try:
        with Image.open(io.BytesIO(image_bytes)) as img:
            text = img.info.get(MARK_KEY)
            if isinstance(text, str):
                return text
            return _read_band(img.convert("L"))
    except (OSError, ValueError):
        return None


def _read_band(gray: Image.Image) -> str | None:
    width, height = gray.size
    band_h = height * _BAND
    bits: list[int] = []
    for i in range(_CELLS):
        cell_w = width / _CELLS
        box = (
            int((i + 0.3) * cell_w),
            int(band_h * 0.25),
            max(int((i + 0.3) * cell_w) + 1, int((i + 0.7) * cell_w)),
            max(int(band_h * 0.25) + 1, int(band_h * 0.75)),
        )
        stat = ImageStat.Stat(gray.crop(box))
        mean, dev = stat.mean[0], stat.stddev[0]
        if dev > 40 or 70 < mean < 185:
            return None
        bits.append(1 if mean >= 185 else 0)
    if tuple(bits[:4]) != _SYNC:
        return None
    number = int("".join(map(str, bits[4:20])), 2)
    if _bits_for(number) != bits:
        return None
    return f"{_MARK_PREFIX}{number}"


def _new_mark() -> str:
    return f"{_MARK_PREFIX}{next(_marks) & 0xFFFF}"


# ---------------------------------------------------------------------------------------------
# Wire helpers
# ---------------------------------------------------------------------------------------------


def camelize(value: Any) -> Any:
    """Every dict key in camelCase, like the API's proto JSON parser (accepts both spellings)."""
    if isinstance(value, dict):
        return {_SNAKE.sub(lambda m: m.group(1).upper(), k): camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camelize(v) for v in value]
    return value


def b64decode_any(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not (the SDK sends URL-safe for signatures)."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    return base64.b64decode(cleaned, validate=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def error_body(
    code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        err["details"] = details
    return {"error": err}


def _error(
    code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
) -> web.Response:
    return web.json_response(error_body(code, status, message, details), status=code)


def _retry_info(delay: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclass
class FakeRequest:
    """One request as the fake saw it."""

    model: str
    api_version: str
    method: str
    body: dict[str, Any]  # as sent
    normalized: dict[str, Any]  # every key camelCase
    headers: dict[str, str]
    arrived: float  # time.monotonic()
    status: int = 0  # HTTP status answered (0 while in flight or when dropped)
    finished: float | None = None  # time.monotonic() when answered (or dropped)
    fault: str | None = None

    @property
    def contents(self) -> list[dict[str, Any]]:
        return list(self.normalized.get("contents") or [])

    @property
    def generation_config(self) -> dict[str, Any]:
        return dict(self.normalized.get("generationConfig") or {})

    @property
    def image_config(self) -> dict[str, Any]:
        return dict(self.generation_config.get("imageConfig") or {})

    @property
    def last_content(self) -> dict[str, Any]:
        return self.contents[-1] if self.contents else {}

    @property
    def texts(self) -> list[str]:
        """Text parts of the last (current-turn) content."""
        return [p["text"] for p in self.last_content.get("parts") or [] if "text" in p]

    @property
    def spec(self) -> dict[str, Any] | None:
        """The first text part of the current turn parsed as JSON, if it is JSON."""
        for text in self.texts:
            try:
                value = json.loads(text)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
        return None

    @property
    def input_images(self) -> list[tuple[str, bytes]]:
        """(mime type, bytes) of the inline images in the current turn."""
        out = []
        for part in self.last_content.get("parts") or []:
            blob = part.get("inlineData")
            if blob:
                out.append(
                    (str(blob.get("mimeType", "")), b64decode_any(str(blob.get("data", ""))))
                )
        return out


@dataclass
class Issued:
    """One successful image answer: what was issued, for tests and signature checks."""

    mark: str
    model: str
    size: str
    aspect: str
    width: int
    height: int
    png_sha256: str
    signatures: list[bytes | None]  # per part of the returned content
    response_id: str
    grid: tuple[int, int] | None = None  # (rows, cols) when the spec declared layout.grid
    tile_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def tile_size(self) -> tuple[int, int] | None:
        if not self.tile_boxes:
            return None
        x0, y0, x1, y1 = self.tile_boxes[0]
        return x1 - x0, y1 - y0


@dataclass
class TextIssued:
    """One text-model answer (structured output): the schema it was given and what it said."""

    model: str
    schema: dict[str, Any] | None
    text: str
    scripted: bool  # a test's answer (answer_next_text), not one made from the schema
    input_marks: list[str | None]  # fake_mark_of each input image


@dataclass
class _Fault:
    kind: str
    remaining: int
    kw: dict[str, Any] = field(default_factory=dict)


class _BadSignature(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


class FakeGemini:
    """Loopback Gemini. `async with FakeGemini() as fake:` or `await fake.start()` / `stop()`."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        latency: float = 0.0,
        reply_text: str | None = "Here is the image you asked for.",
        thought_image: bool = True,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self.api_key = api_key
        self.latency = latency  # seconds added to every request
        self.reply_text = reply_text  # non-thought text part beside the image (None: image only)
        self.thought_image = thought_image  # include an interim thought image (thought=True)
        self.max_request_bytes = max_request_bytes
        self.requests: list[FakeRequest] = []
        self.issued: list[Issued] = []
        self.text_issued: list[TextIssued] = []
        # Answers the next text-model calls give instead of one made from the schema.
        self._text_answers: deque[str] = deque()
        # Fields merged into the answers made from the schema (e.g. {"layout": {"grid": "3x3"}}).
        self.describe_extra: dict[str, Any] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._faults: list[_Fault] = []
        # fingerprint of a returned content -> the signature lists issued with it
        self._by_fingerprint: dict[tuple[Any, ...], list[list[bytes | None]]] = {}
        self._all_signatures: set[bytes] = set()
        self._lock = threading.RLock()  # _image_response runs in worker threads
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._closing = asyncio.Event()
        self.port = 0
        # The Batch API and Files API (economy requests): tests/fakes/gemini_batch.py.
        from tests.fakes.gemini_batch import FakeBatchAPI

        self.batches = FakeBatchAPI(self)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("FakeGemini is not started")
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeGemini:
        app = web.Application(client_max_size=max(self.max_request_bytes * 2, 64 * 1024 * 1024))
        app.router.add_post("/{version}/models/{target}", self._handle)
        self.batches.add_routes(app)
        self._closing = asyncio.Event()
        # handler_cancellation: a client that gives up (timeout) frees its in-flight slot at once.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None
        )
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await self._site.start()
        self.port = self._site.port
        return self

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGemini:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting ------------------------------------------------------------------------------

    def fail_next(self, kind: str, times: int = 1, **kw: Any) -> None:
        """Make the next `times` requests fail (or misbehave) as `kind` (see FAULT_KINDS)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; choose from {sorted(FAULT_KINDS)}")
        if times < 1:
            raise ValueError("times must be >= 1")
        self._faults.append(_Fault(kind, times, kw))

    def answer_next_text(self, answer: str | dict[str, Any], times: int = 1) -> None:
        """The next `times` text-model answers are `answer` (a dict is sent as JSON; a string
        as it is, so invalid JSON can be scripted), whatever schema was asked for."""
        text = answer if isinstance(answer, str) else json.dumps(answer)
        self._text_answers.extend([text] * times)

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def pending_faults(self) -> int:
        return sum(f.remaining for f in self._faults)

    def requests_for(self, model: str) -> list[FakeRequest]:
        return [r for r in self.requests if r.model == model]

    def _take_fault(self) -> _Fault | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            self._faults.pop(0)
        return fault

    # -- handler --------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        record: FakeRequest | None = None
        try:
            version = request.match_info["version"]
            model, _, method = request.match_info["target"].partition(":")
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else {}
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError:
                body = {}
                parse_error = True
            else:
                parse_error = False
            record = FakeRequest(
                model=model,
                api_version=version,
                method=method,
                body=body,
                normalized=camelize(body),
                headers=dict(request.headers),
                arrived=time.monotonic(),
            )
            self.requests.append(record)
            response = await self._answer(
                request, record, raw_size=len(raw), parse_error=parse_error
            )
            record.status = response.status
            return response
        finally:
            self.in_flight -= 1
            if record is not None:
                record.finished = time.monotonic()

    async def _answer(
        self, request: web.Request, rec: FakeRequest, *, raw_size: int, parse_error: bool
    ) -> web.StreamResponse:
        if self.latency > 0:
            await asyncio.sleep(self.latency)

        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return _error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity)."
                " Please use API Key or other form of API consumer identity to call this API.",
            )
        if key != self.api_key:
            return _error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )

        if rec.method == "batchGenerateContent":  # the Batch API: its own faults and records
            return await self.batches.create(request, rec, parse_error=parse_error)

        fault = self._take_fault()
        if fault is not None:
            rec.fault = fault.kind
            faulted = await self._apply_fault(request, rec, fault)
            if faulted is not None:
                return faulted

        if rec.api_version not in ("v1", "v1beta"):
            return _error(404, "NOT_FOUND", f"API version {rec.api_version} is not found.")
        if rec.model in TEXT_MODELS and rec.method == "generateContent":
            if parse_error:
                return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
            return self._text_model_answer(rec)
        cap = _capability_for(rec.model)
        if cap is None or rec.method != "generateContent":
            return _error(
                404,
                "NOT_FOUND",
                f"models/{rec.model} is not found for API version {rec.api_version}, or is not "
                f"supported for {rec.method or 'generateContent'}. Call ListModels to see the list "
                "of available models and their supported methods.",
            )
        if parse_error:
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if raw_size > self.max_request_bytes:
            return _error(
                400,
                "INVALID_ARGUMENT",
                f"Request payload size exceeds the limit: {self.max_request_bytes} bytes.",
            )
        problem = _validate(rec, cap)
        if problem:
            return _error(400, "INVALID_ARGUMENT", problem)
        try:
            self._verify_signatures(rec.contents)
        except _BadSignature as exc:
            return _error(400, "INVALID_ARGUMENT", exc.message)

        if "IMAGE" not in [
            str(m).upper()
            for m in rec.generation_config.get("responseModalities") or ["TEXT", "IMAGE"]
        ]:
            return self._json(self._text_response(rec, "Text only, as requested."))
        image_config = rec.image_config
        size = str(image_config.get("imageSize") or cap.default_size)
        aspect = str(image_config.get("aspectRatio") or "1:1")
        body = await asyncio.to_thread(self._image_response, rec, cap, size, aspect)
        return web.Response(body=body, content_type="application/json")

    async def _apply_fault(
        self, request: web.Request, rec: FakeRequest, fault: _Fault
    ) -> web.StreamResponse | None:
        kw = fault.kw
        kind = fault.kind
        if kind == "rate_limit":
            delay = kw.get("retry_delay", "1s")
            details: list[dict[str, Any]] = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": _QUOTA_METRIC,
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                            "quotaDimensions": {"model": rec.model, "location": "global"},
                        }
                    ],
                }
            ]
            if delay is not None:
                details.append(_retry_info(str(delay)))
            message = kw.get(
                "message",
                "You exceeded your current quota, please check your plan and billing details.",
            )
            return _error(429, "RESOURCE_EXHAUSTED", message, details)
        if kind == "overloaded":
            delay = kw.get("retry_delay")
            return _error(
                503,
                "UNAVAILABLE",
                kw.get("message", "The model is overloaded. Please try again later."),
                [_retry_info(str(delay))] if delay else None,
            )
        if kind == "server_error":
            status = int(kw.get("status", 500))
            names = {
                408: "DEADLINE_EXCEEDED",
                500: "INTERNAL",
                502: "UNAVAILABLE",
                504: "DEADLINE_EXCEEDED",
            }
            return _error(
                status,
                names.get(status, "INTERNAL"),
                kw.get("message", "An internal error has occurred. Please retry."),
            )
        if kind == "slow":
            await self._sleep_unless_closing(float(kw.get("delay", 1.0)))
            return None
        if kind == "hang":
            await self._closing.wait()
            return _error(503, "UNAVAILABLE", "The fake is shutting down.")
        if kind == "prompt_blocked":
            return self._json(
                {
                    "promptFeedback": {"blockReason": kw.get("reason", "SAFETY")},
                    "usageMetadata": {
                        "promptTokenCount": _prompt_tokens(rec),
                        "totalTokenCount": _prompt_tokens(rec),
                    },
                    "modelVersion": rec.model,
                    "responseId": _response_id(),
                }
            )
        if kind == "image_safety":
            candidate: dict[str, Any] = {
                "finishReason": kw.get("finish_reason", "IMAGE_SAFETY"),
                "index": 0,
            }
            message = kw.get(
                "message",
                "Unable to show the generated image. The image was filtered out because it "
                "violated Google's Generative AI Prohibited Use policy. You will not be charged "
                "for blocked images. Try rephrasing the prompt.",
            )
            if message:
                candidate["finishMessage"] = message
            return self._json(
                {
                    "candidates": [candidate],
                    "usageMetadata": _usage(rec, output=0, thoughts=120),
                    "modelVersion": rec.model,
                    "responseId": _response_id(),
                }
            )
        if kind == "text_only":
            return self._json(
                self._text_response(
                    rec, kw.get("text", "I can't create that image, but I can describe it.")
                )
            )
        if kind == "invalid":
            return _error(
                400, "INVALID_ARGUMENT", kw.get("message", "Request contains an invalid argument.")
            )
        if kind == "auth":
            status = int(kw.get("status", 403))
            if status == 401:
                return _error(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access "
                    "token, login cookie or other valid authentication credential.",
                )
            if status == 400:
                return _error(
                    400,
                    "INVALID_ARGUMENT",
                    "API key expired. Please renew the API key.",
                    [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                        }
                    ],
                )
            return _error(
                403,
                "PERMISSION_DENIED",
                kw.get(
                    "message", "Your API key was reported as leaked. Please use another API key."
                ),
            )
        if kind == "disconnect":
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError  # the handler ends without writing a response
        raise AssertionError(kind)

    async def _sleep_unless_closing(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    # -- answers --------------------------------------------------------------------------------

    @staticmethod
    def _json(payload: dict[str, Any]) -> web.Response:
        return web.Response(text=json.dumps(payload), content_type="application/json")

    def _text_response(self, rec: FakeRequest, text: str) -> dict[str, Any]:
        mark = _new_mark()
        signature = os.urandom(48)
        parts: list[dict[str, Any]] = [
            {"text": f"**Considering the request** ({mark})", "thought": True},
            {"text": text, "thoughtSignature": _b64(signature)},
        ]
        self._remember(parts, [None, signature])
        return {
            "candidates": [
                {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": _usage(rec, output=len(text) // 4 + 1, thoughts=90),
            "modelVersion": rec.model,
            "responseId": _response_id(),
        }

    def _image_response(
        self, rec: FakeRequest, cap: ModelCapability, size: str, aspect: str
    ) -> bytes:
        """Runs in a thread: renders the PNG and builds the whole JSON body."""
        mark = _new_mark()
        width, height = output_dims(size, aspect, cap.id)
        spec = rec.spec or {}
        grid = grid_of(spec) if spec.get("task", "generate_image") == "generate_image" else None
        tile_boxes: list[tuple[int, int, int, int]] = []
        if grid is not None:
            _gutter, tile_boxes = grid_layout(width, height, *grid)
            png = render_grid_png(width, height, mark, *grid)
        else:
            png = render_png(width, height, mark)
        image_sig, text_sig = os.urandom(64), os.urandom(48)
        parts: list[dict[str, Any]] = [
            {
                "text": f"**Composing the scene**\n\nPlanning layout and lighting ({mark}).",
                "thought": True,
            }
        ]
        signatures: list[bytes | None] = [None]
        if self.thought_image:
            parts.append(
                {
                    "inlineData": {"mimeType": "image/png", "data": _b64(_thought_png())},
                    "thought": True,
                }
            )
            signatures.append(None)
        if self.reply_text:
            parts.append({"text": self.reply_text, "thoughtSignature": _b64(text_sig)})
            signatures.append(text_sig)
        parts.append(
            {
                "inlineData": {"mimeType": "image/png", "data": _b64(png)},
                "thoughtSignature": _b64(image_sig),
            }
        )
        signatures.append(image_sig)
        response_id = _response_id()
        self._remember(parts, signatures)
        with self._lock:
            self.issued.append(
                Issued(
                    mark=mark,
                    model=rec.model,
                    size=size,
                    aspect=aspect,
                    width=width,
                    height=height,
                    png_sha256=hashlib.sha256(png).hexdigest(),
                    signatures=signatures,
                    response_id=response_id,
                    grid=grid,
                    tile_boxes=tile_boxes,
                )
            )
        per_image = PRICES[cap.id].output_tokens_per_image.get(size, 1120)
        text_tokens = len(self.reply_text or "") // 4
        payload = {
            "candidates": [
                {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": _usage(rec, output=per_image + text_tokens, thoughts=180),
            "modelVersion": rec.model,
            "responseId": response_id,
        }
        return json.dumps(payload).encode()

    def _text_model_answer(self, rec: FakeRequest) -> web.Response:
        """A text model: plain text, or with responseMimeType application/json and a
        responseJsonSchema, JSON that fits the schema (checked with jsonschema)."""
        problem = _validate_text_request(rec)
        if problem:
            return _error(400, "INVALID_ARGUMENT", problem)
        try:
            self._verify_signatures(rec.contents)
        except _BadSignature as exc:
            return _error(400, "INVALID_ARGUMENT", exc.message)
        schema = _raw_json_schema(rec.body)
        marks = [fake_mark_of(data) for _mime, data in rec.input_images]
        scripted = bool(self._text_answers)
        if scripted:
            text = self._text_answers.popleft()
        elif schema is not None:
            answer = _sample(schema, "spec", marks[0] if marks else None)
            if isinstance(answer, dict):
                answer.update(self.describe_extra)
            jsonschema.validate(answer, schema)  # the fake's own answer must fit
            text = json.dumps(answer, indent=2)
        else:
            text = "A picture." if marks else "Text only, as requested."
        self.text_issued.append(
            TextIssued(
                model=rec.model, schema=schema, text=text, scripted=scripted, input_marks=marks
            )
        )
        body = self._text_response(rec, text)
        return self._json(body)

    # -- thought signatures ---------------------------------------------------------------------

    def _remember(self, parts: list[dict[str, Any]], signatures: list[bytes | None]) -> None:
        fingerprint = _fingerprint(parts)
        with self._lock:
            self._by_fingerprint.setdefault(fingerprint, []).append(signatures)
            self._all_signatures.update(s for s in signatures if s)

    def _verify_signatures(self, contents: list[dict[str, Any]]) -> None:
        """Model-role contents must come back exactly as issued (signatures byte for byte)."""
        for c_index, content in enumerate(contents, start=1):
            if content.get("role") != "model":
                continue
            parts = list(content.get("parts") or [])
            sent = [_signature_of(p) for p in parts]
            with self._lock:
                known = list(self._by_fingerprint.get(_fingerprint(parts), []))
            if known:
                if sent in known:
                    continue
                expected = known[0]
                for p_index, (part, want, got) in enumerate(
                    zip(parts, expected, sent, strict=True), start=1
                ):
                    if want != got:
                        raise _BadSignature(_signature_problem(part, got, c_index, p_index))
                continue
            # Not something this fake said: apply the API's general rule for images.
            for p_index, (part, got) in enumerate(zip(parts, sent, strict=True), start=1):
                if part.get("thought"):
                    continue
                if "inlineData" in part and got is None:
                    raise _BadSignature(_signature_problem(part, None, c_index, p_index))
                with self._lock:
                    forged = got is not None and got not in self._all_signatures
                if forged:
                    raise _BadSignature(_signature_problem(part, got, c_index, p_index))


def _signature_of(part: dict[str, Any]) -> bytes | None:
    sig = part.get("thoughtSignature")
    if not sig:
        return None
    try:
        return b64decode_any(str(sig))
    except (binascii.Error, ValueError):
        return b"<undecodable>"


def _signature_problem(part: dict[str, Any], got: bytes | None, c_index: int, p_index: int) -> str:
    if got is None:
        what = "Image part" if "inlineData" in part else "Text part" if "text" in part else "Part"
        return (
            f"{what} is missing a thought_signature in content position {c_index}, "
            f"part position {p_index}. Please refer to "
            "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
        )
    return f"Corrupted thought signature in content position {c_index}, part position {p_index}."


def _fingerprint(parts: list[dict[str, Any]]) -> tuple[Any, ...]:
    """What a content says, ignoring its signatures (images by hash)."""
    out: list[Any] = []
    for raw in parts:
        part = camelize(raw)
        thought = bool(part.get("thought"))
        if "text" in part:
            out.append(("text", part["text"], thought))
        elif "inlineData" in part:
            blob = part["inlineData"]
            try:
                data = b64decode_any(str(blob.get("data", "")))
            except (binascii.Error, ValueError):
                data = b""
            out.append(("image", hashlib.sha256(data).hexdigest(), blob.get("mimeType"), thought))
        else:
            out.append(
                (
                    "other",
                    json.dumps(
                        {k: v for k, v in part.items() if k != "thoughtSignature"}, sort_keys=True
                    ),
                )
            )
    return tuple(out)


def _capability_for(model: str) -> ModelCapability | None:
    for cap in CAPABILITIES.values():
        if model in cap.all_ids:
            return cap
    return None


def _iter_parts(contents: list[dict[str, Any]], role: str) -> Iterator[dict[str, Any]]:
    for content in contents:
        if (content.get("role") or "user") == role:
            yield from content.get("parts") or []


def _validate(rec: FakeRequest, cap: ModelCapability) -> str | None:
    contents = rec.contents
    if not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for index, content in enumerate(contents, start=1):
        if not content.get("parts"):
            return (
                f"* GenerateContentRequest.contents[{index - 1}].parts: "
                "contents.parts must not be empty."
            )
    config = rec.generation_config
    if int(config.get("candidateCount") or 1) > 1:
        return "Multiple candidates is not enabled for this model."
    image_config = rec.image_config
    aspect = image_config.get("aspectRatio")
    if aspect is not None and aspect not in cap.aspect_ratios:
        return (
            f"Unsupported aspect ratio: {aspect}. Supported aspect ratios for {rec.model} are: "
            f"{', '.join(cap.aspect_ratios)}."
        )
    size = image_config.get("imageSize")
    if size is not None and size not in cap.sizes:
        return (
            f"Unsupported image size: {size}. Supported image sizes for {rec.model} are: "
            f"{', '.join(cap.sizes)}."
        )
    images = sum(1 for p in _iter_parts(contents, "user") if "inlineData" in p or "fileData" in p)
    if images > cap.max_input_images:
        return (
            f"Too many input images: {images}. {rec.model} accepts at most {cap.max_input_images}."
        )
    return None


def _prompt_tokens(rec: FakeRequest) -> int:
    text = sum(len(p.get("text") or "") for p in _iter_parts(rec.contents, "user"))
    images = sum(1 for p in _iter_parts(rec.contents, "user") if "inlineData" in p)
    model_parts = sum(1 for _ in _iter_parts(rec.contents, "model"))
    return max(1, text // 4) + images * 560 + model_parts * 300


def _usage(rec: FakeRequest, *, output: int, thoughts: int) -> dict[str, int]:
    prompt = _prompt_tokens(rec)
    usage = {
        "promptTokenCount": prompt,
        "thoughtsTokenCount": thoughts,
        "totalTokenCount": prompt + output + thoughts,
    }
    if output:
        usage["candidatesTokenCount"] = output
    return usage


def _response_id() -> str:
    return uuid.uuid4().hex[:22]


def _validate_text_request(rec: FakeRequest) -> str | None:
    """What the real API refuses in a text-model request (structured output included)."""
    contents = rec.contents
    if not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for index, content in enumerate(contents):
        if not content.get("parts"):
            return f"* GenerateContentRequest.contents[{index}].parts: must not be empty."
    config = rec.generation_config
    modalities = [str(m).upper() for m in config.get("responseModalities") or ["TEXT"]]
    # The schema as sent: its property names are the spec's own keys, never camelised.
    raw_schema = _raw_json_schema(rec.body)
    if "IMAGE" in modalities:
        return f"Model {rec.model} does not support the requested response modalities: image"
    if int(config.get("candidateCount") or 1) > 1:
        return "Multiple candidates is not enabled for this model."
    mime = config.get("responseMimeType")
    schema = raw_schema
    if "responseSchema" in config and schema is not None:
        return "responseSchema and responseJsonSchema cannot both be set."
    if schema is not None:
        if mime != "application/json":
            return "responseJsonSchema requires responseMimeType application/json."
        if not isinstance(schema, dict):
            return "* GenerationConfig.response_json_schema: must be a JSON Schema object."
        bad = _unknown_keywords(schema)
        if bad:
            return f"* GenerationConfig.response_json_schema: unsupported keyword at {bad[0]}"
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            return f"* GenerationConfig.response_json_schema: invalid schema: {exc.message}"
    return None


def _raw_json_schema(body: dict[str, Any]) -> Any:
    config = body.get("generationConfig", body.get("generation_config")) or {}
    if not isinstance(config, dict):
        return None
    return config.get("responseJsonSchema", config.get("response_json_schema"))


def _unknown_keywords(schema: object, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in ("properties", "$defs") and isinstance(value, dict):
                for name, sub in value.items():
                    found += _unknown_keywords(sub, f"{path}/{key}/{name}")
                continue
            if key not in JSON_SCHEMA_KEYWORDS:
                found.append(f"{path}/{key}")
            if isinstance(value, dict | list) and key != "enum":
                found += _unknown_keywords(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for i, item in enumerate(schema):
            found += _unknown_keywords(item, f"{path}/{i}")
    return found


def _sample(schema: dict[str, Any], name: str, mark: str | None) -> Any:
    """A value that fits `schema`: what a model would write for a field called `name`."""
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema or "oneOf" in schema:
        options = schema.get("anyOf") or schema.get("oneOf") or []
        strings = [o for o in options if isinstance(o, dict) and o.get("type") == "string"]
        return _sample(strings[0] if strings else options[0], name, mark)
    kind = schema.get("type")
    if kind == "object":
        props: dict[str, Any] = schema.get("properties") or {}
        out: dict[str, Any] = {}
        wanted = list(schema.get("required") or []) + [
            k for k in ("layout", "props") if k in props
        ]
        for key in props if name == "spec" else wanted:
            if key in props and key not in out and key != "grid":
                out[key] = _sample(props[key], key, mark)
        if name == "spec" and mark:
            out["subject"] = f"the picture marked {mark}"
        return out
    if kind == "array":
        return [_sample(schema.get("items") or {"type": "string"}, name, mark)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    words = {
        "subject": "a ceramic mug on a table",
        "style": "clean product photography",
        "environment": "a sunlit kitchen counter",
        "camera": "three-quarter view, 85mm",
        "lighting": "soft window light from the left",
        "text": "no visible text",
        "negative_prompt": "blurry",
        "composition": "subject centred",
    }
    return words.get(name, f"{name} as seen in the picture")
