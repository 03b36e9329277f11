"""Minimal-diff batches."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.adapters.prompts import SpecError, expand_batch, parse_batch_values

BASE: dict[str, Any] = {
    "task": "generate_image",
    "product": {"name": "mug", "color": "red"},
    "lighting": {"key_light": "softbox"},
    "props": [{"item": "spoon", "position": "left"}],
    "output_format": {"width": 1024},
}


def _without(spec: dict[str, Any], path: list[str]) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    node: Any = out
    for part in path[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(path[-1])] = None
    else:
        node.pop(path[-1], None)
    return out


def test_variants_differ_only_in_the_field() -> None:
    variants = expand_batch(BASE, "product.color", ["blue", "green", "yellow"])
    assert [v.label for v in variants] == ["blue", "green", "yellow"]
    assert [v.spec["product"]["color"] for v in variants] == ["blue", "green", "yellow"]
    for v in variants:
        assert _without(v.spec, ["product", "color"]) == _without(BASE, ["product", "color"])
    assert BASE["product"]["color"] == "red"  # the base is untouched
    variants[0].spec["lighting"]["key_light"] = "changed"
    assert variants[1].spec["lighting"]["key_light"] == "softbox"  # deep copies


def test_missing_intermediate_objects_are_created() -> None:
    variants = expand_batch(BASE, "environment.background.color", ["white", "black"])
    assert variants[0].spec["environment"] == {"background": {"color": "white"}}


def test_list_positions_and_numbers() -> None:
    variants = expand_batch(BASE, "props.0.item", ["fork", "knife"])
    assert variants[1].spec["props"] == [{"item": "knife", "position": "left"}]
    widths = expand_batch(BASE, "output_format.width", ["512", "2048"])
    assert [v.spec["output_format"]["width"] for v in widths] == [512, 2048]


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("product.color.shade", "product.color is text ('red'), not an object"),
        ("task.kind", "task is text ('generate_image'), not an object"),
        ("product", "product is an object; pick a field inside it, such as product.name"),
        ("props.5.item", "props is a list of 1; '5' is not a position in it"),
        ("props", "props is a list; pick a field inside it"),
        ("product..color", "is not a field path"),
        ("", "is not a field path"),
    ],
)
def test_bad_paths(path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        expand_batch(BASE, path, ["a", "b"])
    assert fragment in str(info.value)


def test_value_count_and_duplicates_checked() -> None:
    with pytest.raises(SpecError, match="2–10 values"):
        expand_batch(BASE, "product.color", ["a"])
    with pytest.raises(SpecError, match="twice"):
        expand_batch(BASE, "product.color", ["Red", "red"])


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("red, blue", ["red", "blue"]),
        (" red ,blue,green ", ["red", "blue", "green"]),
        ('"navy, matte", red', ["navy, matte", "red"]),
        ("a\nb", ["a", "b"]),
        (",".join(str(i) for i in range(10)), [str(i) for i in range(10)]),
    ],
)
def test_parse_batch_values(text: str, values: list[str]) -> None:
    assert parse_batch_values(text) == values


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("red", "2–10 values"),
        (",".join(str(i) for i in range(11)), "(got 11)"),
        ("red, , blue", "empty"),
        ("red, blue, red", "'red' is in the list twice"),
        ("", "separated by commas"),
    ],
)
def test_parse_batch_values_errors(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_batch_values(text)
    assert fragment in str(info.value)
