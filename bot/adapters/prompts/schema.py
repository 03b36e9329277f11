"""JSON Schemas generated from the spec model, for Gemini's structured output.

`spec_json_schema()` is `Spec`'s own pydantic schema reduced to the JSON Schema subset Gemini's
`response_json_schema` accepts (no `default`, no `title`, `$ref`s inlined, optional fields
expressed by leaving them out of `required` rather than by a `null` alternative).

`describe_schema()` is that schema narrowed to what a description of an image may say: a
`generate_image` spec without inputs, chain or edit fields, with a description on each field
so the model knows what goes where, and `layout.grid` for pictures made of panels.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from bot.adapters.prompts.spec import Spec

# What Gemini's response_json_schema understands (google-genai's GenerationConfig docs);
# anything else in a schema is dropped before it is sent.
SUPPORTED_KEYWORDS = frozenset(
    {
        "$id",
        "$defs",
        "$ref",
        "$anchor",
        "type",
        "format",
        "title",
        "description",
        "enum",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "anyOf",
        "oneOf",
        "properties",
        "additionalProperties",
        "required",
        "propertyOrdering",
    }
)
# Keys a description never writes: they refer to things only a request has.
DESCRIBE_EXCLUDED = ("inputs", "chain_id", "changes", "metadata", "subjects")
DESCRIBE_REQUIRED = ("task", "subject", "style", "environment", "camera", "lighting")
GRID_PATTERN_HINT = 'rows x columns such as "3x3" or "2x4"'

_FIELD_HELP: dict[str, str] = {
    "task": "Always generate_image: the spec recreates the picture from nothing.",
    "subject": (
        "The main subject: what it is, its appearance, pose, expression, clothing, colours and "
        "materials. A string, or an object such as {\"description\": ..., \"details\": ...}."
    ),
    "style": (
        "The visual style: medium (photo, 3D render, watercolour, pixel art…), rendering, "
        "mood and colour palette."
    ),
    "environment": "Where it is: setting, background, time of day, weather.",
    "camera": "Framing, angle, lens, depth of field and focus, as a photographer would say.",
    "lighting": "Light sources, direction, quality, colour temperature and shadows.",
    "layout": (
        "Composition: where things are in the frame. When the picture is a grid of separate "
        f"panels or sprites, set grid to {GRID_PATTERN_HINT}."
    ),
    "props": "Other notable objects, each with where it is.",
    "negative_prompt": "What the picture clearly does not contain and a copy should avoid.",
    "output_format": "The picture's shape.",
    "text": "Any text visible in the picture, exactly as written, with its font and place.",
}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = copy.deepcopy(defs[ref.removeprefix("#/$defs/")])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return _inline({**target, **extra}, defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _reduce(node: Any) -> Any:
    """Drop what Gemini does not read and the `null` alternatives of optional fields."""
    if isinstance(node, list):
        return [_reduce(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in SUPPORTED_KEYWORDS or key == "title":
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _reduce(sub) for name, sub in value.items()}
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = _reduce(value)
        else:
            out[key] = _reduce(value)
    options = out.get("anyOf")
    if isinstance(options, list):
        kept = [o for o in options if o != {"type": "null"}]
        if len(kept) == 1 and isinstance(kept[0], dict):
            del out["anyOf"]
            out = {**kept[0], **out}
        else:
            out["anyOf"] = kept
    return out


def spec_json_schema() -> dict[str, Any]:
    """`Spec`'s JSON schema in the subset Gemini's structured output accepts."""
    raw = Spec.model_json_schema()
    defs = raw.get("$defs", {})
    reduced: dict[str, Any] = _reduce(_inline(raw, defs))
    return reduced


def describe_schema(aspect_ratios: Sequence[str]) -> dict[str, Any]:
    """The schema a description must fit: a generate_image spec of the picture, its shape one
    of `aspect_ratios`."""
    schema = spec_json_schema()
    properties: dict[str, Any] = schema["properties"]
    for key in DESCRIBE_EXCLUDED:
        properties.pop(key, None)
    properties["task"] = {"type": "string", "enum": ["generate_image"]}
    properties["layout"] = {
        "type": "object",
        "additionalProperties": True,
        "properties": {
            "composition": {"type": "string"},
            "grid": {"type": "string", "description": GRID_PATTERN_HINT},
        },
    }
    properties["output_format"] = {
        "type": "object",
        "properties": {"aspect_ratio": {"type": "string", "enum": list(aspect_ratios)}},
        "required": ["aspect_ratio"],
    }
    # Not a known key of the spec (unknown keys are open): the text in the picture, which
    # Google advises giving exactly.
    properties["text"] = {"type": "string"}
    for key, help_text in _FIELD_HELP.items():
        if key in properties:
            properties[key]["description"] = help_text
    order = [*DESCRIBE_REQUIRED, "layout", "props", "text", "negative_prompt", "output_format"]
    schema["propertyOrdering"] = [k for k in order if k in properties] + [
        k for k in properties if k not in order
    ]
    schema["required"] = [*DESCRIBE_REQUIRED, "output_format"]
    return schema


def unsupported_keywords(schema: object, path: str = "") -> list[str]:
    """Paths of keywords Gemini's structured output would not read (empty: all fine)."""
    found: list[str] = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            here = f"{path}/{key}"
            if key == "properties" and isinstance(value, dict):
                for name, sub in value.items():
                    found += unsupported_keywords(sub, f"{here}/{name}")
                continue
            if key not in SUPPORTED_KEYWORDS:
                found.append(here)
            if isinstance(value, dict | list):
                found += unsupported_keywords(value, here)
    elif isinstance(schema, list):
        for i, item in enumerate(schema):
            found += unsupported_keywords(item, f"{path}/{i}")
    return found
