"""The fake CDN: serves attachment bytes at signed URLs (`?ex=&is=&hm=`) that expire after 24 h
of the fake clock, answering 404 for a wrong signature or an expired link, as Discord's CDN does.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from aiohttp import web

from tests.fakes.discord_http import size_text

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord


class Cdn:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/attachments/{channel}/{attachment}/{filename}", self.handle)
        app.router.add_get("/ephemeral-attachments/{channel}/{attachment}/{filename}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        fake = self.fake
        try:
            att_id = int(request.match_info["attachment"])
        except ValueError:
            return web.Response(status=404, text="Not Found")
        att = fake.state.attachments.get(att_id)
        path = request.path
        expires_hex = request.query.get("ex", "")
        try:
            expires = int(expires_hex, 16)
        except ValueError:
            expires = -1
        valid_sig = att is not None and request.query.get("hm") == fake.state.sign(path, expires)
        if att is None or not valid_sig:
            fake._log(f"CDN GET {path} -> 404")
            return web.Response(status=404, text="Not Found")
        if time.time() + fake._clock_offset > expires:
            fake._log(f"CDN GET {path} -> 404 (signed URL expired)")
            return web.Response(status=404, text="This content is no longer available.")
        fake._log(f"CDN GET {att.filename} ({size_text(att.size)})")
        if fake.cdn_latency > 0:  # a slow download (the bot may die during it)
            await asyncio.sleep(fake.cdn_latency)
        return web.Response(body=att.data, headers={"Content-Type": att.content_type})
