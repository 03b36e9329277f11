"""The model's turn is stored with the posted image referenced, not written out as base64,
and comes back byte for byte."""

from __future__ import annotations

from google.genai import types

from bot.adapters.gemini import content_from_json, content_to_json
from bot.adapters.store import content as stored_content
from bot.adapters.store import sha256_hex
from bot.services.generation import _content_json


def test_the_posted_image_is_referenced_and_restored_exactly() -> None:
    image = bytes(range(256)) * 64  # every byte value: '-' and '_' in URL-safe base64
    other = b"\xfb\xff\xfe another inline image"
    content = types.Content(
        role="model",
        parts=[
            types.Part(text="here", thought_signature=b"\xfb\xefsig"),
            types.Part(inline_data=types.Blob(data=image, mime_type="image/png")),
            types.Part(inline_data=types.Blob(data=other, mime_type="image/jpeg")),
        ],
    )
    sha = sha256_hex(image)
    stored = _content_json(content, image, sha)
    assert stored is not None
    assert stored_content.references(stored) == [sha]
    assert "data" not in stored["parts"][1]["inline_data"]
    # Any other inline image is left for the store to move out (as before).
    dehydrated, blobs = stored_content.dehydrate(stored)
    assert [b.data for b in blobs] == [other]
    back = stored_content.hydrate(dehydrated, {sha: image, sha256_hex(other): other})
    assert back == content_to_json(content)
    assert content_from_json(back) == content


def test_no_content_stores_nothing() -> None:
    assert _content_json(None, b"x", "0" * 64) is None
