"""Pytest fixtures for the fake Gemini: `fake_gemini`, plus Settings and env pointed at it.

Use from a test module (or a conftest) with
`from tests.fakes.gemini_fixtures import fake_gemini, gemini_settings`, or list the module in a
conftest's `pytest_plugins`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from bot.config import Settings
from tests.fakes.gemini import FakeGemini


@pytest_asyncio.fixture
async def fake_gemini() -> AsyncIterator[FakeGemini]:
    """A started FakeGemini on 127.0.0.1 (random port), stopped after the test."""
    async with FakeGemini() as fake:
        yield fake


def gemini_env(fake: FakeGemini) -> dict[str, str]:
    """Environment variables that point the bot (or a `python -m bot` subprocess) at the fake."""
    return {
        "GEMINI_API_KEY": fake.api_key,
        "GEMINI_BASE_URL": fake.url,
        "GEMINI_API_VERSION": "v1beta",
    }


def gemini_settings(fake: FakeGemini, **overrides: Any) -> Settings:
    """Settings pointed at the fake; `.env` is ignored so a developer's real key never leaks in."""
    values: dict[str, Any] = {
        "gemini_api_key": fake.api_key,
        "gemini_base_url": fake.url,
        "gemini_api_version": "v1beta",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
