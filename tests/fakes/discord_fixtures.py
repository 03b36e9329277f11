"""Pytest fixtures for the fake Discord.

Use from a test module or conftest.py:

    from tests.fakes.discord_fixtures import fake_discord  # noqa: F401  (the fixture)

`fake_discord` is a started FakeDiscord, stopped after the test. `discord_py_pointed_at(fake)`
redirects discord.py's REST base and default gateway to the fake and restores them after, for
tests that start a bot without going through the bot's own settings.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import discord.gateway
import discord.http
import pytest_asyncio
import yarl

from tests.fakes.discord_server import FakeDiscord


@contextlib.contextmanager
def discord_py_pointed_at(fake: FakeDiscord) -> Iterator[None]:
    """Route discord.py's REST calls and gateway connection to the fake, then restore."""
    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


@pytest_asyncio.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
