"""Validate the JSON bodies the bot sends against Discord's official OpenAPI description.

The spec lives outside the repository (``shared/discord-openapi.json``). When it is absent
the checker quietly does nothing. The spec and every compiled validator are cached for the
whole process, so only the first test pays the loading cost.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve()
SPEC_CANDIDATES = (
    _HERE.parents[3] / "shared" / "discord-openapi.json",
    (_HERE.parents[2] / ".." / "shared" / "discord-openapi.json").resolve(),
)
_SPEC_URI = "urn:discord-openapi"
_lock = threading.Lock()


def spec_path() -> Path | None:
    for candidate in SPEC_CANDIDATES:
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=1)
def _load() -> tuple[dict[str, Any], Any] | None:
    path = spec_path()
    if path is None:
        return None
    try:
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012
    except ImportError:  # jsonschema not installed: validation is optional
        return None
    spec = json.loads(path.read_text(encoding="utf-8"))
    # Discord accepts snowflakes as JSON numbers as well as strings (discord.py sends both).
    spec["components"]["schemas"]["SnowflakeType"] = {
        "anyOf": [
            {"type": "string", "pattern": "^(0|[1-9][0-9]*)$"},
            {"type": "integer", "minimum": 0},
        ]
    }
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    registry = Registry().with_resource(_SPEC_URI, resource)
    return spec, registry


@lru_cache(maxsize=256)
def _validator(spec_route: str, method: str) -> Any:
    loaded = _load()
    if loaded is None:
        return None
    spec, registry = loaded
    from jsonschema import Draft202012Validator

    operation = spec["paths"].get(spec_route, {}).get(method.lower())
    if not operation:
        return None
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    body = "requestBody/content/application~1json/schema"
    pointer = f"/paths/{_escape(spec_route)}/{method.lower()}/{body}"
    return Draft202012Validator({"$ref": f"{_SPEC_URI}#{pointer}"}, registry=registry)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _reach(error: Any) -> int:
    """How deep into the body an error (or any of its alternatives) got."""
    return max([len(error.absolute_path), *(_reach(sub) for sub in error.context)])


def available() -> bool:
    return _load() is not None


def validate(spec_route: str, method: str, body: Any) -> list[str]:
    """Human-readable violations of the request schema (empty when valid or unknown)."""
    with _lock:
        validator = _validator(spec_route, method)
    if validator is None:
        return []
    from jsonschema.exceptions import best_match

    errors = list(validator.iter_errors(body))
    if not errors:
        return []
    best = best_match(errors)
    # For anyOf/oneOf, the alternative that got furthest into the body names the real mistake.
    while best.context:
        best = max(best.context, key=_reach)
    where = "/".join(str(p) for p in best.absolute_path) or "<body>"
    rule = f"{best.validator}={str(best.validator_value)[:60]}"
    return [f"{where}: {rule}: {best.message[:150]}"]
