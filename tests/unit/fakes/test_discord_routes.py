"""The fake Discord's REST route table, as composed from its handler modules."""

from __future__ import annotations

import aiohttp

from tests.fakes.discord_server import FakeDiscord, RestCall

# One sample path per route the handler modules serve ({a} app id, {c} channel, ...).
SAMPLES = [
    ("GET", "/gateway"),
    ("GET", "/gateway/bot"),
    ("GET", "/users/@me"),
    ("GET", "/users/1"),
    ("GET", "/applications/@me"),
    ("GET", "/oauth2/applications/@me"),
    ("GET", "/applications/1/commands"),
    ("PUT", "/applications/1/commands"),
    ("GET", "/applications/1/guilds/2/commands"),
    ("PUT", "/applications/1/guilds/2/commands"),
    ("POST", "/interactions/1/aW50ZXJhY3Rpb246x/callback"),
    ("POST", "/webhooks/1/tok"),
    ("GET", "/webhooks/1/tok/messages/@original"),
    ("PATCH", "/webhooks/1/tok/messages/@original"),
    ("PATCH", "/webhooks/1/tok/messages/3"),
    ("DELETE", "/webhooks/1/tok/messages/3"),
    ("GET", "/channels/1"),
    ("PATCH", "/channels/1"),
    ("GET", "/channels/1/messages"),
    ("POST", "/channels/1/messages"),
    ("GET", "/channels/1/messages/2"),
    ("PATCH", "/channels/1/messages/2"),
    ("DELETE", "/channels/1/messages/2"),
    ("POST", "/channels/1/messages/2/threads"),
    ("POST", "/channels/1/threads"),
    ("POST", "/channels/1/typing"),
    ("PUT", "/channels/1/thread-members/@me"),
    ("PUT", "/channels/1/messages/2/reactions/%F0%9F%91%8D/@me"),
    ("DELETE", "/channels/1/messages/2/reactions/%F0%9F%91%8D/@me"),
    ("GET", "/guilds/1"),
    ("GET", "/guilds/1/channels"),
    ("GET", "/guilds/1/roles"),
    ("GET", "/guilds/1/threads/active"),
    ("GET", "/guilds/1/members/2"),
]


def test_every_route_is_served_by_exactly_one_handler() -> None:
    fake = FakeDiscord()
    for method, path in SAMPLES:
        matching = [r for r in fake.rest.routes if r.method == method and r.pattern.match(path)]
        assert len(matching) == 1, (method, path, matching)
    keys = [(r.method, r.pattern.pattern) for r in fake.rest.routes]
    assert len(keys) == len(set(keys))
    assert len(fake.rest.routes) >= len(SAMPLES)


async def test_unknown_route_is_a_recorded_404(fake_discord: FakeDiscord) -> None:
    headers = {"Authorization": f"Bot {fake_discord.token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fake_discord.api_base}/voice/regions", headers=headers) as resp,
    ):
        assert resp.status == 404
        assert (await resp.json())["code"] == 0
    assert fake_discord.unhandled == ["GET /voice/regions"]
    call = fake_discord.requests[-1]
    assert isinstance(call, RestCall) and (call.status, call.path) == (404, "/voice/regions")
