"""HEALTH_PORT: /healthz says whether the bot is ready, its database reachable and its gateway
connected; /metrics serves Prometheus metrics of the jobs it ran."""

from __future__ import annotations

import socket

import aiohttp

from tests.e2e.harness import BotHarness
from tests.e2e.test_commands import result_of


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_healthz_and_metrics(harness: BotHarness) -> None:
    port = free_port()
    bot = await harness.start(health_port=port, health_host="127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    alice = harness.discord.user("alice")
    await result_of(await alice.slash("imagine", prompt="a lighthouse at dusk"))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200
            assert await resp.json() == {
                "status": "ok", "ready": True, "database": True, "gateway": True
            }
        async with http.get(f"{base}/metrics") as resp:
            assert resp.status == 200 and resp.content_type == "text/plain"
            text = await resp.text()
        assert 'nanobanana_generations_total{model="gemini-3-pro-image",outcome="done"} 1.0' in text
        assert "nanobanana_model_latency_seconds_count" in text
        assert 'nanobanana_jobs{state="queued"} 0.0' in text
        assert "nanobanana_cost_dollars_total" in text

        await bot.store.close()  # the database goes away: not healthy, and it says why
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 503
            body = await resp.json()
            assert body["database"] is False and body["status"] == "unavailable"
