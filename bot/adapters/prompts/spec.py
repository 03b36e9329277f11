"""The spec model (pydantic v2) and the structural check that gives path-specific errors.

The schema is open: unknown keys are kept and sent, because the model reads them
semantically. Known keys are type-checked by `check_structure`, which produces messages such
as "camera.angle: expected text or object (got a list)"; the pydantic types mirror it so that
a Spec built in code obeys the same rules.
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
# "Text" is a string or a number: `"lens": 85` is as clear to the model as `"lens": "85mm"`.
Text = str | int | float
TextOrObject = str | int | float | dict[str, Any]


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
    layout: TextOrObject | None = None
    props: list[TextOrObject] | None = None
    negative_prompt: Text | list[Text] | None = None
    inputs: list[InputRef] = Field(default_factory=list)
    changes: Text | list[Text] | None = None
    chain_id: Text | None = None
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


@dataclass(frozen=True)
class Shape:
    """What a known key may hold. kinds: str (text only), text (text or number), object,
    list, count (a positive whole number)."""

    kinds: frozenset[str]
    expected: str
    fields: Mapping[str, Shape] = field(default_factory=dict)
    items: Shape | None = None
    required: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()


def _shape(kinds: str, expected: str, **kw: Any) -> Shape:
    return Shape(frozenset(kinds.split()), expected, **kw)


STR = _shape("str", "text")
TEXT = _shape("text", "text")
TEXT_OR_OBJECT = _shape("text object", "text or object")
TEXT_OR_LIST = _shape("text list", "text or a list of text", items=TEXT)
COUNT = _shape("count", "a whole number of pixels, such as 1024")


def _section(*names: str) -> Shape:
    return _shape("text object", "text or object", fields=dict.fromkeys(names, TEXT_OR_OBJECT))


SHAPES: dict[str, Shape] = {
    "task": _shape("str", 'text such as "generate_image"', choices=TASKS),
    "subject": TEXT_OR_OBJECT,
    "subjects": _shape(
        "list",
        "a list of subjects",
        items=_shape(
            "text object",
            "text or object",
            fields={"id": TEXT, "description": TEXT_OR_OBJECT},
        ),
    ),
    "style": _section("primary", "medium", "mood", "rendering"),
    "environment": _section("background", "setting", "location", "time_of_day", "weather"),
    "camera": _section("angle", "lens", "framing", "shot", "distance", "focus", "position"),
    "lighting": _section("key_light", "fill_light", "rim_light", "back_light", "ambient", "mood"),
    "layout": TEXT_OR_OBJECT,
    "props": _shape(
        "list",
        "a list of props",
        items=_shape(
            "text object",
            "text or object",
            fields={"item": TEXT_OR_OBJECT, "position": TEXT_OR_OBJECT},
        ),
    ),
    "negative_prompt": TEXT_OR_LIST,
    "inputs": _shape(
        "list",
        'a list of inputs such as [{"type": "image", "data": "attachment:1"}]',
        items=_shape(
            "object",
            'an object such as {"type": "image", "data": "attachment:1", "role": "reference"}',
            fields={
                "type": STR,
                "data": _shape("str", 'a reference such as "attachment:1"'),
                "role": _shape("str", "text", choices=ROLES),
            },
            required=("data",),
        ),
    ),
    "changes": TEXT_OR_LIST,
    "chain_id": TEXT,
    "output_format": _shape(
        "object",
        "an object",
        fields={
            "width": COUNT,
            "height": COUNT,
            "aspect_ratio": _shape("str", 'text such as "16:9"'),
            "resolution": _shape("str", 'text such as "2K"'),
            "mime_type": _shape("str", 'text such as "image/png"'),
        },
    ),
    "metadata": _shape("object", "an object"),
}
_TOP = _shape("object", "a JSON object", fields=SHAPES)


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
        return bool(shape.kinds & {"str", "text"})
    if isinstance(value, int):
        return "text" in shape.kinds or "count" in shape.kinds
    if isinstance(value, float):
        return "text" in shape.kinds
    if isinstance(value, dict):
        return "object" in shape.kinds
    if isinstance(value, list):
        return "list" in shape.kinds
    return False


def _check(value: object, shape: Shape, path: list[str | int], out: list[str]) -> None:
    if len(out) >= MAX_PROBLEMS:
        return
    where = json_path(path)
    if not _fits(value, shape):
        out.append(f"{where}: expected {shape.expected} (got {kind_of(value)})")
        return
    if "count" in shape.kinds and isinstance(value, int) and value <= 0:
        out.append(f"{where}: expected {shape.expected} (got {value})")
        return
    if shape.choices and isinstance(value, str) and value not in shape.choices:
        # task and role: say which ones exist
        label = "task" if path == ["task"] else "role"
        out.append(f"{where}: unknown {label} '{value}'; use one of: {', '.join(shape.choices)}")
        return
    if isinstance(value, dict):
        for key in shape.required:
            if key not in value:
                out.append(f"{json_path([*path, key])}: missing")
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
