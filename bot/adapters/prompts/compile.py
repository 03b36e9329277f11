"""PreparedSpec + resolved images -> google-genai contents/config, and the exact REST body."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.genai import types

from bot.adapters.prompts.build import PreparedSpec
from bot.adapters.prompts.references import ResolvedImage
from bot.adapters.prompts.spec import compact_json, estimate_tokens, model_view
from bot.config import TOKENS_PER_INPUT_IMAGE, capability

RESPONSE_MODALITIES = ["TEXT", "IMAGE"]
RULES_KEY = "consistency_rules"

# What "keep this identity" means for each anchor kind.
_RULES: dict[str, str] = {
    "face": "keep facial features identical to image {n}",
    "character": "keep facial features, hairstyle and outfit identical to image {n}",
    "product": "keep the product's shape, colours, materials and markings identical to image {n}",
    "object": "keep the object's shape, colours, materials and markings identical to image {n}",
    "style": "match the style of image {n}",
}
_GENERIC_RULE = "keep the identity of the subject in image {n} identical (features, shape, colours)"

# GenerateContentConfig fields that sit beside generationConfig in the REST body.
_TOP_LEVEL_CONFIG = {"systemInstruction", "tools", "toolConfig", "safetySettings", "cachedContent"}
# SDK-side settings that never reach the wire.
_CLIENT_ONLY_CONFIG = {"httpOptions", "shouldReturnHttpResponse", "automaticFunctionCalling"}


@dataclass
class CompiledRequest:
    model: str
    size: str
    aspect: str
    text: str  # the JSON text part, exactly as sent
    parts: list[types.Part]
    config: types.GenerateContentConfig

    def user_content(self) -> types.Content:
        return types.Content(role="user", parts=list(self.parts))

    def estimated_input_tokens(self) -> int:
        tokens = 0
        for part in self.parts:
            if part.text is not None:
                tokens += estimate_tokens(part.text)
            elif part.inline_data is not None:
                tokens += TOKENS_PER_INPUT_IMAGE
        return tokens


def consistency_rule(kind: str | None, n: int) -> str:
    return _RULES.get((kind or "").lower(), _GENERIC_RULE).format(n=n)


def _with_rules(view: dict[str, Any], rules: list[str]) -> dict[str, Any]:
    """Add the anchor rules to the JSON, keeping any the author already wrote."""
    if not rules:
        return view
    existing = view.get(RULES_KEY)
    if isinstance(existing, list):
        merged = [*existing, *(r for r in rules if r not in existing)]
    elif isinstance(existing, str) and existing.strip():
        merged = [existing, *rules]
    else:
        merged = rules
    return {**view, RULES_KEY: merged}


def compile_request(prepared: PreparedSpec, images: list[ResolvedImage]) -> CompiledRequest:
    """The JSON text part, then "Image N: …" + image part per input, and the image config."""
    spec = prepared.spec
    if len(images) != len(spec.inputs):
        raise ValueError(f"{len(spec.inputs)} inputs but {len(images)} resolved images")
    rules = [
        consistency_rule(image.anchor_kind, n)
        for n, (item, image) in enumerate(zip(spec.inputs, images, strict=True), start=1)
        if item.role == "identity_anchor"
    ]
    text = compact_json(_with_rules(model_view(spec), rules))
    parts = [types.Part(text=text)]
    for n, image in enumerate(images, start=1):
        parts.append(types.Part(text=f"Image {n}: {image.description}"))
        parts.append(types.Part.from_bytes(data=image.data, mime_type=image.mime_type))
    cap = capability(prepared.model)
    # A fixed-size model (one size only) takes no imageSize.
    image_size = prepared.size if len(cap.sizes) > 1 else None
    config = types.GenerateContentConfig(
        response_modalities=list(RESPONSE_MODALITIES),
        image_config=types.ImageConfig(aspect_ratio=prepared.aspect, image_size=image_size),
    )
    return CompiledRequest(
        model=prepared.model,
        size=prepared.size,
        aspect=prepared.aspect,
        text=text,
        parts=parts,
        config=config,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _content_json(content: types.Content, with_images: bool) -> dict[str, Any]:
    """camelCase JSON of one turn. Bytes as standard base64 (pydantic's dump is URL-safe);
    image data shown as "<N bytes type>" unless with_images."""
    dumped: dict[str, Any] = content.model_dump(mode="json", exclude_none=True, by_alias=True)
    for part, out in zip(content.parts or [], dumped.get("parts", []), strict=True):
        if part.thought_signature is not None:
            out["thoughtSignature"] = _b64(part.thought_signature)
        blob = part.inline_data
        if blob is not None and "inlineData" in out:
            data = blob.data or b""
            out["inlineData"]["data"] = (
                _b64(data) if with_images else f"<{len(data)} bytes {blob.mime_type}>"
            )
    return dumped


def rest_body(
    compiled: CompiledRequest,
    *,
    history: Sequence[types.Content] = (),
    with_images: bool = False,
) -> dict[str, Any]:
    """The generateContent request body (camelCase), history first, then this turn."""
    contents = [_content_json(c, with_images) for c in (*history, compiled.user_content())]
    config: dict[str, Any] = compiled.config.model_dump(
        mode="json", exclude_none=True, by_alias=True
    )
    body: dict[str, Any] = {"contents": contents}
    for key in _TOP_LEVEL_CONFIG & config.keys():
        value = config.pop(key)
        if key == "systemInstruction" and isinstance(value, str):
            value = {"parts": [{"text": value}]}
        body[key] = value
    for key in _CLIENT_ONLY_CONFIG:
        config.pop(key, None)
    body["generationConfig"] = config
    return body
