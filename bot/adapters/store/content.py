"""Keep image bytes out of the stored model content.

A chain step must send the model's previous turn back unchanged (thought signatures and all).
`types.Content.model_dump(mode="json")` puts each image inline as base64 — 13–40 MB of text for
a 4K PNG. Before storing, every inline image is moved into the content-addressed image files
and its `data` replaced by `data_sha256` (plus the base64 alphabet it came in); `hydrate` puts
the exact same text back. Everything else, thought signatures included, is stored as is.

A forgotten `hydrate` cannot slip through: google-genai's models forbid unknown fields, so
`Content.model_validate` rejects the `data_sha256` marker loudly.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.adapters.store.files import sha256_hex

_INLINE_KEYS = ("inline_data", "inlineData")
_MIME_KEYS = ("mime_type", "mimeType")
MARKER = "data_sha256"
_ENCODING = "data_encoding"


@dataclass(frozen=True)
class Blob:
    sha: str
    data: bytes
    mime_type: str


def dehydrate(content: Any) -> tuple[Any, list[Blob]]:
    """A copy of `content` with inline image data replaced by sha references, and the blobs."""
    blobs: dict[str, Blob] = {}
    return _dehydrate_node(content, blobs), list(blobs.values())


# The walks are module functions, not recursive closures: a closure that calls itself is a
# reference cycle, and the image bytes it reaches would wait for the garbage collector
# (~14 MB per 4K result, hundreds of MB when many finish together).
def _dehydrate_node(node: Any, blobs: dict[str, Blob]) -> Any:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _INLINE_KEYS and isinstance(value, Mapping):
                out[key] = _dehydrate_blob(value, blobs)
            else:
                out[key] = _dehydrate_node(value, blobs)
        return out
    if isinstance(node, list):
        return [_dehydrate_node(item, blobs) for item in node]
    return node


def _dehydrate_blob(blob: Mapping[str, Any], blobs: dict[str, Blob]) -> dict[str, Any]:
    data = blob.get("data")
    if not isinstance(data, str):
        return dict(blob)
    url_safe = "-" in data or "_" in data
    try:
        raw = _decode(data)
    except (binascii.Error, ValueError):
        return dict(blob)  # not base64 after all: store it untouched
    mime = next((str(blob[k]) for k in _MIME_KEYS if blob.get(k)), "application/octet-stream")
    sha = sha256_hex(raw)
    blobs.setdefault(sha, Blob(sha, raw, mime))
    out: dict[str, Any] = {}
    for key, value in blob.items():  # the marker takes the place of "data": key order is kept
        if key == "data":
            out[MARKER] = sha
            out[_ENCODING] = "base64url" if url_safe else "base64"
        else:
            out[key] = value
    return out


def referenced(blob: Mapping[str, Any], sha: str) -> dict[str, Any]:
    """What `dehydrate` makes of an inline blob whose bytes are already stored under `sha`
    (`blob`: its other fields), without the base64 round trip: the bytes as google-genai
    writes them, URL-safe base64, is what `hydrate` gives back."""
    out = {k: v for k, v in blob.items() if k != "data"}
    out[MARKER] = sha
    out[_ENCODING] = "base64url"
    return out


def _decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)


def references(content: Any) -> list[str]:
    """The shas a dehydrated content refers to, in order, without repeats."""
    found: dict[str, None] = {}

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in _INLINE_KEYS and isinstance(value, Mapping) and MARKER in value:
                    found.setdefault(str(value[MARKER]), None)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(content)
    return list(found)


def hydrate(content: Any, blobs: Mapping[str, bytes]) -> Any:
    """Put the bytes back (as the base64 text they arrived as). KeyError if a blob is missing."""
    return _hydrate_node(content, blobs)


def _hydrate_node(node: Any, blobs: Mapping[str, bytes]) -> Any:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _INLINE_KEYS and isinstance(value, Mapping) and MARKER in value:
                raw = blobs[str(value[MARKER])]
                encode = (
                    base64.urlsafe_b64encode
                    if value.get(_ENCODING) == "base64url"
                    else base64.b64encode
                )
                restored: dict[str, Any] = {}
                for k, v in value.items():
                    if k == MARKER:
                        restored["data"] = encode(raw).decode("ascii")
                    elif k != _ENCODING:
                        restored[k] = v
                out[key] = restored
            else:
                out[key] = _hydrate_node(value, blobs)
        return out
    if isinstance(node, list):
        return [_hydrate_node(item, blobs) for item in node]
    return node
