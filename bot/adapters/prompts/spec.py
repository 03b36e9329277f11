"""The spec model (pydantic v2) and the structural check that gives path-specific errors.

The schema is open: unknown keys are kept and sent, because the model reads them
semantically. Known keys are type-checked by `check_structure`, which produces messages such
as 'negative_prompt: expected a string or a list of strings, got a number (42); e.g.
"negative_prompt": ["blurry", "watermark"]'; the pydantic types mirror it so that a Spec
built in code obeys the same rules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from bot.adapters.prompts.errors import SpecError, json_path, short

TASKS: tuple[str, ...] = ("generate_image", "edit_image", "blend_images")
ROLES: tuple[str, ...] = ("identity_anchor", "reference", "style", "edit_target")
MAX_DEPTH = 8
MAX_PROBLEMS = 12  # a wall of errors helps nobody; the first few show the pattern

Role = Literal["identity_anchor", "reference", "style", "edit_target"]
# See "Structural check" below for why each known key has the type it has.
TextOrObject = str | dict[str, Any]
Strings = str | list[str]


class _Open(BaseModel):
    # strict: no silent coercion (True is not 1, 1024.0 is not a width)
    model_config = ConfigDict(extra="allow", strict=True)


class InputRef(_Open):
    type: str = "image"
    data: str
    role: Role = "reference"


class OutputFormat(_Open):
    width: int | None = None
    height: int | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    mime_type: str | None = None


class Spec(_Open):
    task: str = "generate_image"
    subject: TextOrObject | None = None
    subjects: list[TextOrObject] | None = None
    style: TextOrObject | None = None
    environment: TextOrObject | None = None
    camera: TextOrObject | None = None
    lighting: TextOrObject | None = None
    layout: dict[str, Any] | None = None
    props: list[TextOrObject] | None = None
    negative_prompt: Strings | None = None
    inputs: list[InputRef] = Field(default_factory=list)
    changes: Strings | None = None
    chain_id: str | None = None
    output_format: OutputFormat | None = None
    metadata: dict[str, Any] | None = None

    # The author's key order: the model reads the JSON top to bottom, so a spec's own order
    # (say "product" before "lighting") is kept rather than the order of the fields above.
    _key_order: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_order(cls, data: Any, handler: ModelWrapValidatorHandler[Spec]) -> Spec:
        spec = handler(data)
        if isinstance(data, dict):
            order = [k for k in data if isinstance(k, str)]
            spec._key_order = order if "task" in order else ["task", *order]
        return spec

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: None fields dropped, an empty `inputs` dropped, unknown keys kept."""
        dumped: dict[str, Any] = self.model_dump(mode="json", exclude_none=True)
        if not dumped.get("inputs"):
            dumped.pop("inputs", None)
        data = {k: dumped[k] for k in self._key_order if k in dumped}
        data.update((k, v) for k, v in dumped.items() if k not in data)
        return data

    @classmethod
    def from_dict(cls, data: object) -> Spec:
        """Check the structure (all problems at once) and build the model; SpecError."""
        problems = check_structure(data)
        if problems:
            raise SpecError(problems)
        assert isinstance(data, dict)
        try:
            return cls.model_validate(_drop_nulls(data))
        except ValidationError as exc:  # the structural check should have caught it
            raise SpecError(
                [f"{json_path(e['loc'])}: {e['msg']}" for e in exc.errors()][:MAX_PROBLEMS]
            ) from None


# --------------------------------------------------------------------------------------------
# Structural check
# --------------------------------------------------------------------------------------------
#
# The types of the keys the JSON prompt contract (README, JSON prompts) names, and why (community Nano Banana specs, the seed
# examples under tests/unit/adapters/prompts/data, templates/*.json and the README):
#
# - subject, style, environment, camera, lighting: a string or an object. The contract shows
#   `{}` for environment/camera/lighting, but real specs (the README, the seed guide's
#   `"lighting": "softbox key light"`) write one line of text just as often, and the model
#   reads both. Numbers, true/false and lists are mistakes (`"camera": 42`).
# - Inside those sections (camera.lens, style.mood, …) and inside subjects/props items a leaf
#   may also be a number: `"lens": 85` is as clear to the model as `"lens": "85mm"`.
# - layout, output_format, metadata: objects (the bot reads layout.grid for Split, and
#   output_format/metadata itself; every template and example uses objects).
# - subjects, props: lists whose items are strings or objects; inputs: a list of objects.
# - negative_prompt, changes: a string or a list of strings (not numbers: `"negative_prompt":
#   42` is a slip, never a negative prompt).
# - chain_id: a string (the bot writes str(chain id); a bare number is ambiguous).
# Unknown keys, at any level, stay open: they are kept and sent as written.


@dataclass(frozen=True)
class Shape:
    """What a known key may hold. kinds: string, number, object, list, count (a positive
    whole number). `expected` is the phrase after "expected" in messages; `example` a valid
    value (JSON text) shown as the fix."""

    kinds: frozenset[str]
    expected: str
    example: str
    fields: Mapping[str, Shape] = field(default_factory=dict)
    items: Shape | None = None
    required: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()


def _shape(kinds: str, expected: str, example: str, **kw: Any) -> Shape:
    return Shape(frozenset(kinds.split()), expected, example, **kw)


def _leaf(example: str) -> Shape:
    return _shape("string number object", "a string, a number or an object", example)


_LEAF = _leaf('"low angle"')
_STRING_ITEM = _shape("string", "a string", '"blurry"')
_STRINGS = "a string or a list of strings"


def _section(example: str, *names: str) -> Shape:
    """subject/style/environment/camera/lighting: a string or an object of known leaves."""
    return _shape(
        "string object", "a string or an object", example, fields=dict.fromkeys(names, _LEAF)
    )


SHAPES: dict[str, Shape] = {
    "task": _shape(
        "string", 'a string such as "generate_image"', '"generate_image"', choices=TASKS
    ),
    "subject": _shape("string object", "a string or an object", '"a red kite over the sea"'),
    "subjects": _shape(
        "list",
        "a list of subjects (strings or objects)",
        '[{"id": "hero", "description": "a tall knight"}]',
        items=_shape(
            "string object",
            "a string or an object",
            '{"id": "hero", "description": "a tall knight"}',
            fields={
                "id": _shape("string number", "a string", '"hero"'),
                "description": _shape(
                    "string object", "a string or an object", '"a tall knight"'
                ),
            },
        ),
    ),
    "style": _section('"watercolour, soft edges"', "primary", "medium", "mood", "rendering"),
    "environment": _section(
        '{"setting": "a misty forest"}',
        "background",
        "setting",
        "location",
        "time_of_day",
        "weather",
    ),
    "camera": _section(
        '{"angle": "low", "lens": "35mm"}',
        "angle",
        "lens",
        "framing",
        "shot",
        "distance",
        "focus",
        "position",
    ),
    "lighting": _section(
        '"soft morning window light"',
        "key_light",
        "fill_light",
        "rim_light",
        "back_light",
        "ambient",
        "mood",
    ),
    "layout": _shape("object", "an object", '{"grid": "3x3"}'),
    "props": _shape(
        "list",
        "a list of props (strings or objects)",
        '[{"item": "a teacup", "position": "foreground"}]',
        items=_shape(
            "string object",
            "a string or an object",
            '{"item": "a teacup", "position": "foreground"}',
            fields={"item": _leaf('"a teacup"'), "position": _leaf('"foreground"')},
        ),
    ),
    "negative_prompt": _shape(
        "string list", _STRINGS, '["blurry", "watermark"]', items=_STRING_ITEM
    ),
    "inputs": _shape(
        "list",
        "a list of input images",
        '[{"type": "image", "data": "attachment:1", "role": "reference"}]',
        items=_shape(
            "object",
            "an object",
            '{"type": "image", "data": "attachment:1", "role": "reference"}',
            fields={
                "type": _shape("string", "a string", '"image"'),
                "data": _shape("string", "a string", '"attachment:1"'),
                "role": _shape("string", "a string", '"reference"', choices=ROLES),
            },
            required=("data",),
        ),
    ),
    "changes": _shape("string list", _STRINGS, '"make the sky stormy"', items=_STRING_ITEM),
    "chain_id": _shape("string", "a string", '"scene-1"'),
    "output_format": _shape(
        "object",
        "an object",
        '{"aspect_ratio": "16:9", "resolution": "2K"}',
        fields={
            "width": _shape("count", "a whole number of pixels such as 1024", "1024"),
            "height": _shape("count", "a whole number of pixels such as 1024", "1024"),
            "aspect_ratio": _shape("string", 'a string such as "16:9"', '"16:9"'),
            "resolution": _shape("string", 'a string such as "2K"', '"2K"'),
            "mime_type": _shape("string", 'a string such as "image/png"', '"image/png"'),
        },
    ),
    "metadata": _shape(
        "object",
        "an object",
        '{"author": "sam", "notes": "first try"}',
        fields={
            "version": _shape("string number", "a string or a number", '"1.0"'),
            "timestamp": _shape("string number", "a string or a number", '"2026-01-12T10:00:00Z"'),
            "author": _shape("string", "a string", '"sam"'),
            "project_id": _shape("string", "a string", '"product-shots"'),
            "notes": _shape("string list", _STRINGS, '"first try"', items=_STRING_ITEM),
        },
    ),
}
_TOP = _shape(
    "object", "a JSON object", '{"task": "generate_image", "subject": "a red kite"}', fields=SHAPES
)


def kind_of(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "text"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def describe_value(value: object) -> str:
    """'a number (42)', 'a string ("42")', 'a list (["a","b"])': what a message says it got."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        name = "a boolean"
    elif isinstance(value, str):
        name = "a string"
    elif isinstance(value, int | float):
        name = "a number"
    elif isinstance(value, dict):
        name = "an object"
    elif isinstance(value, list):
        name = "a list"
    else:
        return type(value).__name__
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(value)
    return f"{name} ({short(text, 40)})"


def too_deep(value: object, limit: int = MAX_DEPTH) -> list[str | int] | None:
    """Path to the first container nested deeper than `limit`, else None (bounded recursion)."""

    def walk(node: object, depth: int, path: list[str | int]) -> list[str | int] | None:
        if isinstance(node, dict | list):
            if depth > limit:
                return path
            children = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in children:
                found = walk(child, depth + 1, [*path, key])
                if found is not None:
                    return found
        return None

    return walk(value, 1, [])


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_problems(value: object, path: list[str | int], out: list[str]) -> None:
    """Values that JSON cannot carry (only reachable when a dict is built in code)."""
    if len(out) >= MAX_PROBLEMS:
        return
    if isinstance(value, dict):
        for key, child in value.items():
            if not isinstance(key, str) or not _encodable(key):
                out.append(f"{json_path(path)}: keys must be valid text (got {short(key)})")
                continue
            _json_problems(child, [*path, key], out)
    elif isinstance(value, list):
        for i, child in enumerate(value):
            _json_problems(child, [*path, i], out)
    elif isinstance(value, str) and not _encodable(value):
        out.append(f"{json_path(path)}: text contains an invalid character (a lone surrogate)")
    elif isinstance(value, float) and not math.isfinite(value):
        out.append(f"{json_path(path)}: numbers must be finite")
    elif not (value is None or isinstance(value, str | int | float | bool)):
        out.append(f"{json_path(path)}: {type(value).__name__} is not a JSON value")


def _fits(value: object, shape: Shape) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, str):
        return "string" in shape.kinds
    if isinstance(value, int):
        return bool(shape.kinds & {"number", "count"})
    if isinstance(value, float):
        return "number" in shape.kinds
    if isinstance(value, dict):
        return "object" in shape.kinds
    if isinstance(value, list):
        return "list" in shape.kinds
    return False


def _fix(value: object, shape: Shape, path: list[str | int]) -> str:
    """How to fix a value of the wrong type: quote a number meant as text, unquote a number
    written as text, else an example of the right type."""
    example = _example(shape, path)
    if shape.kinds == {"string"} and isinstance(value, int | float) and not isinstance(value, bool):
        return f"put it in quotes ({json.dumps(str(value))}), e.g. {example}"
    if "count" in shape.kinds and isinstance(value, str) and value.strip().isdigit():
        return f"write the number without quotes ({value.strip()})"
    return f"e.g. {example}"


def _example(shape: Shape, path: list[str | int]) -> str:
    key = path[-1] if path else None
    return f'"{key}": {shape.example}' if isinstance(key, str) else shape.example


def _check(value: object, shape: Shape, path: list[str | int], out: list[str]) -> None:
    if len(out) >= MAX_PROBLEMS:
        return
    where = json_path(path)
    if not _fits(value, shape) or (
        "count" in shape.kinds and isinstance(value, int) and value <= 0
    ):
        got = describe_value(value)
        out.append(f"{where}: expected {shape.expected}, got {got}; {_fix(value, shape, path)}")
        return
    if shape.choices and isinstance(value, str) and value not in shape.choices:
        # task and role: say which ones exist
        label = "task" if path == ["task"] else "role"
        out.append(f"{where}: unknown {label} '{value}'; use one of: {', '.join(shape.choices)}")
        return
    if isinstance(value, dict):
        for key in shape.required:
            if key not in value:
                sub = shape.fields.get(key)
                hint = f", e.g. {_example(sub, [key])}" if sub is not None else ""
                out.append(f"{json_path([*path, key])}: missing; add it{hint}")
        for key, child in value.items():
            sub = shape.fields.get(key)
            if sub is None:
                continue
            if child is None and key not in shape.required:
                continue  # null means "not set"
            _check(child, sub, [*path, key], out)
    elif isinstance(value, list) and shape.items is not None:
        for i, child in enumerate(value):
            _check(child, shape.items, [*path, i], out)


def _drop_nulls(data: dict[str, Any]) -> dict[str, Any]:
    """null means "not set" for known keys (top level and inside inputs)."""
    out = {k: v for k, v in data.items() if not (v is None and k in SHAPES)}
    if isinstance(out.get("inputs"), list):
        out["inputs"] = [
            {k: v for k, v in item.items() if v is not None} if isinstance(item, dict) else item
            for item in out["inputs"]
        ]
    return out


def check_json(data: object) -> list[str]:
    """Problems that make a value unusable as a spec at all: not an object, too deep, not JSON."""
    if not isinstance(data, dict):
        return [f"a spec must be a JSON object (got {kind_of(data)})"]
    deep = too_deep(data)
    if deep is not None:
        return [
            f"{json_path(deep)}: nesting is deeper than {MAX_DEPTH} levels; flatten the structure"
        ]
    out: list[str] = []
    _json_problems(data, [], out)
    return out


def check_structure(data: object) -> list[str]:
    """All structural problems of a spec dict: JSON-ness, nesting depth, known-key types."""
    out = check_json(data)
    if out:
        return out
    _check(data, _TOP, [], out)
    return out


# --------------------------------------------------------------------------------------------
# What the model sees
# --------------------------------------------------------------------------------------------

# Consumed by the bot (image config, logging), never shown to the model.
BOT_ONLY_KEYS: tuple[str, ...] = ("output_format", "metadata")


def compact_json(data: object) -> str:
    """The exact JSON text sent: compact, UTF-8 kept readable, key order preserved."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def model_view(spec: Spec) -> dict[str, Any]:
    """The spec as the model reads it: no output_format/metadata, image data as "image N"."""
    data = spec.to_dict()
    for key in BOT_ONLY_KEYS:
        data.pop(key, None)
    if "inputs" in data:
        data["inputs"] = [
            {**item, "data": f"image {i}"} for i, item in enumerate(data["inputs"], start=1)
        ]
    return data


def estimate_tokens(text: str) -> int:
    """Rough token count (about 4 characters a token); estimates only."""
    return (len(text) + 3) // 4
