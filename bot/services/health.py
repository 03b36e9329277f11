"""HEALTH_PORT: `/healthz` (ready, database reachable, gateway connected) and `/metrics`
(Prometheus) on a small aiohttp server beside the bot."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.core.metrics import Metrics

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0


@dataclass
class HealthChecks:
    """What /healthz asks; each answers True when healthy."""

    ready: Callable[[], bool]
    gateway: Callable[[], bool]
    database: Callable[[], Awaitable[bool]]
    job_counts: Callable[[], Awaitable[dict[str, int]]]


class HealthServer:
    def __init__(self, *, port: int, host: str, checks: HealthChecks, metrics: Metrics) -> None:
        self.port = port
        self.host = host
        self.checks = checks
        self.metrics = metrics
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("health and metrics on http://%s:%d/healthz, /metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _database_ok(self) -> bool:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                return await self.checks.database()
        except Exception as exc:  # any failure means "not reachable", said in the answer
            log.warning("health check: database unreachable: %s", exc)
            return False

    async def _healthz(self, request: web.Request) -> web.Response:
        status = {
            "ready": self.checks.ready(),
            "database": await self._database_ok(),
            "gateway": self.checks.gateway(),
        }
        healthy = all(status.values())
        return web.json_response(
            {"status": "ok" if healthy else "unavailable", **status},
            status=200 if healthy else 503,
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                self.metrics.set_job_counts(await self.checks.job_counts())
        except Exception as exc:
            log.warning("metrics: job counts unavailable: %s", exc)
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
