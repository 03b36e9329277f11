"""Minimal-diff batches: one spec, one field swapped per variant, everything else identical."""

from __future__ import annotations

import copy
import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.adapters.prompts.errors import SpecError, short
from bot.adapters.prompts.spec import kind_of

MIN_VALUES, MAX_VALUES = 2, 10


@dataclass
class BatchVariant:
    label: str  # the value, for the contact sheet
    spec: dict[str, Any]


def _check_values(values: Sequence[str]) -> list[str]:
    cleaned = [v.strip() for v in values]
    if any(not v for v in cleaned):
        raise SpecError("a batch value is empty; remove the extra comma")
    if not MIN_VALUES <= len(cleaned) <= MAX_VALUES:
        raise SpecError(
            f"a batch takes {MIN_VALUES}–{MAX_VALUES} values, separated by commas "
            f"(got {len(cleaned)})"
        )
    seen: dict[str, str] = {}
    for value in cleaned:
        key = value.casefold()
        if key in seen:
            raise SpecError(f"'{short(value)}' is in the list twice; each variant must differ")
        seen[key] = value
    return cleaned


def parse_batch_values(text: str) -> list[str]:
    """'red, blue, "navy, matte"' -> ['red', 'blue', 'navy, matte']; 2–10, no duplicates."""
    if not text or not text.strip():
        raise SpecError(
            f"give {MIN_VALUES}–{MAX_VALUES} values separated by commas, e.g. red, blue"
        )
    try:
        rows = list(csv.reader([text.strip().replace("\n", ",")], skipinitialspace=True))
    except csv.Error:
        raise SpecError("the values list has an unclosed quote") from None
    return _check_values(rows[0] if rows else [])


def _parse_path(path: str) -> list[str]:
    parts = [p.strip() for p in (path or "").strip().split(".")]
    if not path or not path.strip() or any(not p for p in parts):
        raise SpecError(
            f"'{short(path)}' is not a field path; write it like product.color (dots between names)"
        )
    return parts


def _typed_like(old: object, value: str) -> object:
    """Keep numbers numbers: swapping output_format.width must not turn it into text."""
    if isinstance(old, bool) or not isinstance(old, int | float):
        return value
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    if isinstance(parsed, int | float) and not isinstance(parsed, bool):
        return parsed
    return value


def _set(spec: dict[str, Any], parts: list[str], value: str) -> None:
    node: Any = spec
    walked: list[str] = []
    for part in parts[:-1]:
        walked.append(part)
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(
                    f"{'.'.join(walked[:-1])} is a list of {len(node)}; "
                    f"'{short(part)}' is not a position in it (0–{len(node) - 1})"
                )
            node = node[int(part)]
            continue
        child = node.get(part)
        if child is None:
            child = node[part] = {}  # create the missing intermediate object
        elif not isinstance(child, dict | list):
            raise SpecError(
                f"{'.'.join(walked)} is {kind_of(child)} "
                f"('{short(child)}'), not an object, so the path {'.'.join(parts)} "
                "cannot go through it"
            )
        node = child
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise SpecError(
                f"{'.'.join(parts[:-1])} is a list of {len(node)}; "
                f"'{short(last)}' is not a position in it"
            )
        index = int(last)
        if isinstance(node[index], dict | list):
            raise SpecError(f"{'.'.join(parts)} holds an object; pick a field inside it")
        node[index] = _typed_like(node[index], value)
        return
    old = node.get(last)
    if isinstance(old, dict | list):
        kind = "an object" if isinstance(old, dict) else "a list"
        example = next(iter(old), "name") if isinstance(old, dict) else "0"
        raise SpecError(
            f"{'.'.join(parts)} is {kind}; pick a field inside it, "
            f"such as {'.'.join(parts)}.{example}"
        )
    node[last] = _typed_like(old, value)


def expand_batch(spec: dict[str, Any], path: str, values: Sequence[str]) -> list[BatchVariant]:
    """One variant per value; each is a deep copy of the spec with only `path` changed."""
    if not isinstance(spec, dict):
        raise SpecError("a batch needs a JSON object spec")
    parts = _parse_path(path)
    cleaned = _check_values(values)
    variants: list[BatchVariant] = []
    for value in cleaned:
        variant = copy.deepcopy(spec)
        _set(variant, parts, value)
        variants.append(BatchVariant(label=value, spec=variant))
    return variants
