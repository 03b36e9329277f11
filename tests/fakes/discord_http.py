"""REST plumbing of the fake Discord: routing under `/api[/vN]`, request bodies (JSON and
multipart `payload_json` + `files[n]`), bot-token auth, injected 429s, schema validation and
the request log. Handlers live in the `discord_rest_*` modules; each offers its routes as
`RouteSpec` rows and this module matches, runs and records them.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

from tests.fakes import discord_schema
from tests.fakes.discord_limits import DiscordError, not_found, unauthorized

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord

# Path fragments shared by the route tables.
APP = r"(?P<app_id>\d+)"
TOKEN = r"(?P<token>[^/]+)"
CHANNEL = r"(?P<channel_id>\d+)"
MESSAGE = r"(?P<message_id>\d+)"
GUILD = r"(?P<guild_id>\d+)"

_API_PREFIX = re.compile(r"^/api(?:/v(\d+))?(/.*)$")
_TOKEN_IN_PATH = re.compile(r"/(aW50ZXJhY3Rpb246[^/]+)")


@dataclass
class UploadedFile:
    index: int
    filename: str
    data: bytes


@dataclass
class RestCall:
    """One REST request the bot made (fake.requests)."""

    method: str
    path: str
    status: int
    json: Any
    files: list[tuple[str, int]]
    time: float
    query: dict[str, str] = field(default_factory=dict)
    error_code: int | None = None

    def __repr__(self) -> str:
        extra = f" files={self.files}" if self.files else ""
        code = f" code={self.error_code}" if self.error_code is not None else ""
        return f"<{self.method} {self.path} -> {self.status}{code}{extra}>"


@dataclass
class Req:
    """A parsed REST request as handlers see it."""

    method: str
    path: str
    params: dict[str, str]
    query: Mapping[str, str]
    json: Any
    files: list[UploadedFile]

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("1", "true")

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body when it is an object, else {}."""
        return self.json if isinstance(self.json, dict) else {}


@dataclass
class RateLimitRule:
    substring: str
    retry_after: float
    global_: bool
    remaining: int
    method: str | None


Handler = Callable[[Req], Awaitable[tuple[int, Any]]]
# (method, path regex, handler, needs the bot token, OpenAPI route to validate the body against)
RouteSpec = tuple[str, str, Handler, bool, str | None]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool
    spec: str | None


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    # Exactly "application/json": discord.py compares the header verbatim.
    out = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(status=status, body=json.dumps(body).encode(), headers=out)


def size_text(n: int) -> str:
    return f"{n / 1024:.1f}kB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f}MiB"


def brief_json(body: Any) -> str:
    if not isinstance(body, dict):
        return f"[{len(body)} items]" if isinstance(body, list) else ""
    data: dict[str, Any] = body["data"] if isinstance(body.get("data"), dict) else body
    bits = []
    if "type" in body:
        bits.append(f"type={body['type']}")
    if isinstance(data.get("content"), str):
        bits.append(f"content={data['content'][:50]!r}")
    if data.get("embeds"):
        bits.append(f"embeds={len(data['embeds'])}")
    if data.get("components"):
        bits.append("components")
    if data.get("flags"):
        bits.append(f"flags={data['flags']}")
    if data.get("name"):
        bits.append(f"name={data['name']!r}")
    return " ".join(bits)


class RestApi:
    """Matches `/api/...` requests to handlers and answers the way Discord does."""

    def __init__(self, fake: FakeDiscord, specs: Iterable[RouteSpec]) -> None:
        self.fake = fake
        self.routes = [
            Route(meth, re.compile(f"^{pat}$"), h, auth, spec) for meth, pat, h, auth, spec in specs
        ]
        self.rate_limits: list[RateLimitRule] = []

    def rate_limit_next(
        self, substring: str, retry_after: float, global_: bool, count: int, method: str | None
    ) -> None:
        self.rate_limits.append(RateLimitRule(substring, retry_after, global_, count, method))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            if route.method == method:
                found = route.pattern.match(path)
                if found:
                    return route, {k: unquote(v) for k, v in found.groupdict().items()}
        return None, {}

    async def read_body(self, request: web.Request) -> tuple[Any, list[UploadedFile]]:
        if request.content_type == "multipart/form-data":
            payload: Any = None
            files: list[UploadedFile] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                name = getattr(part, "name", None) or ""
                if name == "payload_json":
                    payload = json.loads(await part.text())  # type: ignore[union-attr]
                elif name.startswith("files[") or name == "file":
                    index = int(name[6:-1]) if name.startswith("files[") else 0
                    data = await part.read(decode=False)  # type: ignore[union-attr]
                    files.append(
                        UploadedFile(
                            index, getattr(part, "filename", None) or f"file{index}", bytes(data)
                        )
                    )
            return payload, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError as exc:
            raise DiscordError(400, 50109, "The request body contains invalid JSON.") from exc

    @staticmethod
    def ratelimit_headers(route: str) -> dict[str, str]:
        bucket = hashlib.md5(route.encode()).hexdigest()
        return {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "49",
            "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
            "X-RateLimit-Reset-After": "1.000",
            "X-RateLimit-Bucket": bucket,
        }

    def take_rate_limit(self, method: str, path: str) -> RateLimitRule | None:
        for rule in self.rate_limits:
            if rule.method not in (None, method):
                continue
            if rule.substring in path or rule.substring in f"{method} {path}":
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self.rate_limits.remove(rule)
                return rule
        return None

    def rate_limited(self, rule: RateLimitRule, route_key: str) -> web.Response:
        headers = self.ratelimit_headers(route_key)
        headers.update(
            {
                "Via": "1.1 google",
                "Retry-After": str(max(1, int(rule.retry_after + 0.999))),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset-After": f"{rule.retry_after:.3f}",
                "X-RateLimit-Reset": f"{time.time() + rule.retry_after:.3f}",
                "X-RateLimit-Scope": "global" if rule.global_ else "user",
            }
        )
        if rule.global_:
            headers["X-RateLimit-Global"] = "true"
        body = {
            "message": "You are being rate limited.",
            "retry_after": rule.retry_after,
            "global": rule.global_,
            "code": 0,
        }
        return json_response(429, body, headers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        fake = self.fake
        prefix = _API_PREFIX.match(request.path)
        path = prefix.group(2) if prefix else request.path
        method = request.method
        route, params = self.match(method, path)
        req = Req(method, path, params, request.query, None, [])
        route_key = f"{method} {route.pattern.pattern if route else path}"
        error_code: int | None = None
        try:
            req.json, req.files = await self.read_body(request)
            if route is None:
                fake.unhandled.append(f"{method} {path}")
                raise not_found()
            if route.auth and request.headers.get("Authorization") != f"Bot {fake.token}":
                raise unauthorized()
            rule = self.take_rate_limit(method, path)
            if rule is not None:
                response: web.StreamResponse = self.rate_limited(rule, route_key)
            else:
                if route.spec and fake.validate_schema and req.json is not None:
                    self.validate(route.spec, method, path, req.json)
                status, body = await route.handler(req)
                headers = self.ratelimit_headers(route_key)
                response = (
                    web.Response(status=204, headers=headers)
                    if body is None
                    else json_response(status, body, headers)
                )
        except DiscordError as err:
            error_code = err.code
            response = json_response(err.status, err.body(), self.ratelimit_headers(route_key))
        except Exception as exc:
            # A bug in the fake (or a body it cannot parse). Not a 5xx: discord.py would retry
            # those for ~16 s. Tests should assert fake.internal_errors == [].
            fake.internal_errors.append(f"{method} {path}: {traceback.format_exc()}")
            error_code = 0
            body = {"message": f"fake Discord internal error: {exc!r}", "code": 0}
            response = json_response(400, body)
        status = response.status
        if status in (401, 403, 429):
            fake.invalid_requests += 1
        files = [(f.filename, len(f.data)) for f in req.files]
        fake.requests.append(
            RestCall(
                method, path, status, req.json, files, time.time(), dict(request.query), error_code
            )
        )
        file_note = (
            " files=[" + ", ".join(f"{n}:{size_text(s)}" for n, s in files) + "]" if files else ""
        )
        code_note = f" code={error_code}" if error_code is not None else ""
        shown = _TOKEN_IN_PATH.sub(lambda t: f"/{t.group(1)[:4]}…{t.group(1)[-4:]}", path)
        fake._log(f"REST {method} {shown} -> {status}{code_note} {brief_json(req.json)}{file_note}")
        return response

    def validate(self, spec_route: str, method: str, path: str, body: Any) -> None:
        for problem in discord_schema.validate(spec_route, method, body):
            self.fake.schema_violations.append(
                {"method": method, "path": path, "schema": spec_route, "error": problem}
            )
            self.fake._log(f"SCHEMA violation {method} {path}: {problem}")
