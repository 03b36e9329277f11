"""Message nonces on the fake Discord: echoed back, and with `enforce_nonce` a repeat within the
window returns the message already created instead of posting a second one (raw HTTP and the
real discord.py, which always sends a nonce with enforce_nonce)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest_asyncio

from tests.fakes.discord_fixtures import discord_py_pointed_at, fake_discord
from tests.fakes.discord_server import FakeDiscord

__all__ = ["fake_discord"]


class Rest:
    def __init__(self, fake: FakeDiscord, session: aiohttp.ClientSession) -> None:
        self.fake = fake
        self.session = session

    async def __call__(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bot {self.fake.token}"}
        async with self.session.request(
            method, self.fake.api_base + path, json=body, headers=headers
        ) as resp:
            return resp.status, (await resp.json() if resp.status != 204 else None)

    async def post(self, channel: str, body: dict[str, Any]) -> tuple[int, Any]:
        return await self("POST", f"/channels/{self.fake.channel(channel)}/messages", body)


@pytest_asyncio.fixture
async def rest(fake_discord: FakeDiscord) -> AsyncIterator[Rest]:
    async with aiohttp.ClientSession() as session:
        yield Rest(fake_discord, session)


async def test_enforced_nonce_returns_the_message_already_created(rest: Rest) -> None:
    body = {"content": "once", "nonce": "job-42", "enforce_nonce": True}
    status, first = await rest.post("general", body)
    assert status == 200 and first["nonce"] == "job-42"
    status, second = await rest.post("general", {**body, "content": "twice?"})
    assert status == 200
    assert second["id"] == first["id"] and second["content"] == "once"
    assert second["nonce"] == "job-42"
    assert [m.content for m in rest.fake.messages_in("general")] == ["once"]
    assert rest.fake.schema_violations == []


async def test_nonce_without_enforce_is_only_echoed(rest: Rest) -> None:
    status, first = await rest.post("general", {"content": "a", "nonce": 1234567890123})
    assert status == 200 and first["nonce"] == 1234567890123
    status, second = await rest.post("general", {"content": "b", "nonce": 1234567890123})
    assert status == 200 and second["id"] != first["id"]
    assert [m.content for m in rest.fake.messages_in("general")] == ["a", "b"]
    # The nonce is part of the create answer only.
    status, fetched = await rest("GET", f"/channels/{first['channel_id']}/messages/{first['id']}")
    assert status == 200 and "nonce" not in fetched


async def test_enforced_nonce_is_per_channel_and_expires(rest: Rest) -> None:
    fake = rest.fake
    body = {"content": "x", "nonce": "n1", "enforce_nonce": True}
    _, in_general = await rest.post("general", body)
    _, in_art = await rest.post("art", body)
    assert in_art["id"] != in_general["id"]
    fake.advance_clock(fake.nonce_window + 1)
    _, later = await rest.post("general", body)
    assert later["id"] != in_general["id"]
    assert len(fake.messages_in("general")) == 2


async def test_enforced_nonce_of_a_deleted_message_is_unknown_message(rest: Rest) -> None:
    body = {"content": "x", "nonce": "gone", "enforce_nonce": True}
    _, first = await rest.post("general", body)
    status, _ = await rest("DELETE", f"/channels/{first['channel_id']}/messages/{first['id']}")
    assert status == 204
    status, err = await rest.post("general", body)
    assert (status, err["code"]) == (404, 10008)
    assert rest.fake.messages_in("general") == []


async def test_nonce_longer_than_25_is_refused(rest: Rest) -> None:
    status, err = await rest.post("general", {"content": "x", "nonce": "n" * 26})
    assert (status, err["code"]) == (400, 50035)
    assert err["errors"]["nonce"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    status, _ = await rest.post("general", {"content": "x", "nonce": "n" * 25})
    assert status == 200


async def test_discord_py_retry_with_the_same_nonce_posts_once(fake_discord: FakeDiscord) -> None:
    intents = discord.Intents.default()
    client = discord.Client(intents=intents, guild_ready_timeout=0.1)
    with discord_py_pointed_at(fake_discord):
        task = asyncio.create_task(client.start(fake_discord.token))
        await fake_discord.wait_until_ready(timeout=10, commands=False)
        await client.wait_until_ready()
        try:
            channel = client.get_channel(fake_discord.channel("general"))
            assert isinstance(channel, discord.TextChannel)
            first = await channel.send("result ready", nonce=987654321)
            retry = await channel.send("result ready", nonce=987654321)
            other = await channel.send("another")  # discord.py picks a fresh random nonce
            assert retry.id == first.id and other.id != first.id
            assert first.nonce == "987654321"
            assert [m.content for m in fake_discord.messages_in("general")] == [
                "result ready",
                "another",
            ]
            sent = [r.json for r in fake_discord.requests if r.method == "POST"]
            assert all(b["enforce_nonce"] is True and b["nonce"] for b in sent)
            created = [
                json.loads(frame)["d"]
                for s in fake_discord.gateway.live_sessions()
                for _, frame in s.buffer
                if json.loads(frame)["t"] == "MESSAGE_CREATE"
            ]
            assert [d["id"] for d in created] == [str(first.id), str(other.id)]
            assert created[0]["nonce"] == "987654321"
        finally:
            await client.close()
            await asyncio.wait_for(task, 5)
    assert fake_discord.internal_errors == [] and fake_discord.schema_violations == []
