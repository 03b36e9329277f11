"""End-to-end fixtures: the fake Discord, the fake Gemini and the REAL bot between them."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from PIL import Image

from tests.e2e.harness import BotHarness
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.gemini import FakeGemini


@pytest_asyncio.fixture
async def harness(
    fake_discord: FakeDiscord, fake_gemini: FakeGemini, tmp_path: Path
) -> AsyncIterator[BotHarness]:
    h = BotHarness(fake_discord, fake_gemini, tmp_path)
    try:
        yield h
    finally:
        await h.stop()
        assert not fake_discord.internal_errors, fake_discord.internal_errors
        assert not fake_discord.schema_violations, fake_discord.schema_violations[:3]


@pytest_asyncio.fixture
async def bot_harness(harness: BotHarness) -> BotHarness:
    """The harness with the bot already started (default settings)."""
    await harness.start()
    return harness


def png_bytes(width: int = 64, height: int = 64, colour: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, "PNG")
    return buf.getvalue()
