"""The loopback fakes as the benchmark uses them.

- `TimedGemini`: the fake Gemini, recording for every call when it started answering, when it
  finished and the latency configured at the time, so the fake's own work (making and encoding
  the PNG) can be told apart from the configured "model time".
- `cached_renders()`: the fake renders each pixel size once and then re-uses the pixels,
  giving every answer its own mark in a fresh PNG tEXt chunk (so each image is still distinct
  bytes with its own sha256). A 4K render costs the fake ~1 s of CPU; re-using it leaves only
  base64 + JSON encoding (~0.1 s), and that remainder is measured per call and subtracted.
- `ResultClock`: timestamps, in the benchmark process, the moment the fake Discord stored each
  bot message that carries a result image or an error.
- `add_members()`: more guild members than the fake's four, for "many users" loads.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

import tests.fakes.gemini as fake_gemini_module
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_state import MemberRecord, MessageRecord, UserRecord
from tests.fakes.gemini import MARK_KEY, FakeGemini, FakeRequest, output_dims

RESULT_PREFIX = "nano-banana-"
ERROR_PREFIXES = ("❌", "🚫")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class CallTiming:
    request: FakeRequest
    started: float  # monotonic, when the fake began answering (body already read)
    finished: float  # monotonic, when the answer was ready to send
    latency: float  # the configured latency at the time

    @property
    def service(self) -> float:
        return self.finished - self.started

    @property
    def fake_work(self) -> float:
        """Seconds the fake itself spent beyond the configured latency."""
        return max(0.0, self.service - self.latency)


class TimedGemini(FakeGemini):
    """FakeGemini that times each answer (see CallTiming)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timings: list[CallTiming] = []

    async def _answer(
        self, request: web.Request, rec: FakeRequest, *, raw_size: int, parse_error: bool
    ) -> web.StreamResponse:
        started, latency = time.monotonic(), self.latency
        try:
            return await super()._answer(request, rec, raw_size=raw_size, parse_error=parse_error)
        finally:
            self.timings.append(CallTiming(rec, started, time.monotonic(), latency))

    def timings_since(self, since: float) -> list[CallTiming]:
        return [t for t in self.timings if t.request.arrived >= since]


# ------------------------------------------------------------------------------ PNG re-use


def _chunks(png: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, whole chunk bytes) for each chunk of a PNG."""
    pos = len(_PNG_SIGNATURE)
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        end = pos + 12 + length
        yield kind, png[pos:end]
        pos = end


def _text_chunk(key: str, value: str) -> bytes:
    body = b"tEXt" + key.encode("latin-1") + b"\x00" + value.encode("latin-1")
    return struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))


def _with_mark(png: bytes, mark: str) -> bytes:
    """The same PNG with its mark tEXt chunk replaced (placed right after IHDR)."""
    out = [_PNG_SIGNATURE]
    for kind, chunk in _chunks(png):
        if kind == b"tEXt" and chunk[8:].startswith(MARK_KEY.encode() + b"\x00"):
            continue
        out.append(chunk)
        if kind == b"IHDR":
            out.append(_text_chunk(MARK_KEY, mark))
    return b"".join(out)


@contextlib.contextmanager
def cached_renders() -> Iterator[Callable[[str, str], None]]:
    """Patch the fake's renderer to re-use pixels per size; yields a pre-warm function
    `warm(size, aspect)` (blocking: call it in a thread)."""
    original = fake_gemini_module.render_png
    cache: dict[tuple[int, int], bytes] = {}
    lock = threading.Lock()

    def base(width: int, height: int) -> bytes:
        with lock:  # concurrent first calls wait for one render instead of making twenty
            png = cache.get((width, height))
            if png is None:
                png = cache[(width, height)] = original(width, height, "fake-0")
            return png

    def render(width: int, height: int, mark: str) -> bytes:
        return _with_mark(base(width, height), mark)

    def warm(size: str, aspect: str = "1:1") -> None:
        base(*output_dims(size, aspect))

    fake_gemini_module.render_png = render
    try:
        yield warm
    finally:
        fake_gemini_module.render_png = original


# ------------------------------------------------------------------------------ Discord side


def add_members(fake: FakeDiscord, count: int, prefix: str = "user") -> list[str]:
    """Add ordinary members (call before the bot connects, so GUILD_CREATE lists them)."""
    state = fake.state
    names = []
    for i in range(count):
        name = f"{prefix}{i:03d}"
        user = UserRecord(state.ids.next(), name, name.capitalize())
        state.users[user.id] = user
        state.members[user.id] = MemberRecord(user, [], state.created)
        names.append(name)
    return names


class ResultClock:
    """When each bot message first carried a result image, or an error, in monotonic time."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.results: dict[int, float] = {}  # message id -> first time it carried a result
        self.errors: dict[int, str] = {}  # message id -> error text
        self.result_channels: dict[int, int] = {}  # message id -> channel id
        original = fake._bot_message_event

        def hooked(msg: MessageRecord) -> None:
            self._seen(msg)
            original(msg)

        fake._bot_message_event = hooked  # type: ignore[method-assign]

    def _seen(self, msg: MessageRecord) -> None:
        if msg.author.id != self.fake.bot_user.id or msg.id in self.results:
            return
        if any(f.filename.startswith(RESULT_PREFIX) for f in msg.files):
            self.results[msg.id] = time.monotonic()
            self.result_channels[msg.id] = msg.channel_id
        elif msg.content.startswith(ERROR_PREFIXES):
            self.errors[msg.id] = msg.content

    def outcome(self, message_id: int | None) -> float | str | None:
        """The result time, the error text, or None while neither has happened."""
        if message_id is None:
            return None
        if message_id in self.results:
            return self.results[message_id]
        return self.errors.get(message_id)

    def results_in(self, channel_id: int) -> list[int]:
        return [m for m, ch in self.result_channels.items() if ch == channel_id]
