"""The JSON schemas sent for structured output, generated from the spec model."""

from __future__ import annotations

import json

import jsonschema
import pytest

from bot.adapters.prompts import Defaults, prepare
from bot.adapters.prompts.grid import grid_of, parse_grid
from bot.adapters.prompts.schema import describe_schema, spec_json_schema, unsupported_keywords
from bot.config import BASE_ASPECTS


def test_spec_schema_uses_only_what_gemini_reads() -> None:
    schema = spec_json_schema()
    assert unsupported_keywords(schema) == []
    assert "$ref" not in json.dumps(schema) and "default" not in json.dumps(schema)
    assert schema["properties"]["inputs"]["items"]["properties"]["role"]["enum"] == [
        "identity_anchor",
        "reference",
        "style",
        "edit_target",
    ]


def test_describe_schema_is_a_generate_spec_without_request_fields() -> None:
    schema = describe_schema(BASE_ASPECTS)
    assert unsupported_keywords(schema) == []
    props = schema["properties"]
    assert props["task"]["enum"] == ["generate_image"]
    for key in ("inputs", "chain_id", "changes", "metadata"):
        assert key not in props
    assert props["output_format"]["properties"]["aspect_ratio"]["enum"] == list(BASE_ASPECTS)
    assert "grid" in props["layout"]["properties"]
    assert schema["propertyOrdering"][0] == "task"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_a_spec_that_fits_the_describe_schema_is_a_valid_spec() -> None:
    spec = {
        "task": "generate_image",
        "subject": {"description": "a red fox", "pose": "sitting"},
        "style": "watercolour",
        "environment": {"setting": "snowy field"},
        "camera": {"angle": "eye level", "lens": "85mm"},
        "lighting": "overcast",
        "layout": {"grid": "3x3"},
        "output_format": {"aspect_ratio": "1:1"},
    }
    jsonschema.validate(spec, describe_schema(BASE_ASPECTS))
    prepared = prepare(spec, None, Defaults(model="pro", size="1K", aspect="1:1"))
    assert prepared.aspect == "1:1"


@pytest.mark.parametrize(
    ("value", "grid"),
    [
        ("3x3", (3, 3)),
        ("2 × 4", (2, 4)),
        ("2X3", (2, 3)),
        ({"rows": 2, "columns": 5}, (2, 5)),
        ("1x1", None),
        ("17x2", None),
        ("exactly 3 columns", None),
        (None, None),
        (True, None),
    ],
)
def test_parse_grid(value: object, grid: tuple[int, int] | None) -> None:
    assert parse_grid(value) == grid


def test_grid_of_reads_layout_grid() -> None:
    assert grid_of({"layout": {"grid": "3x3"}}) == (3, 3)
    assert grid_of({"layout": "3x3"}) is None
    assert grid_of({}) is None
