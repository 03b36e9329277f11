"""`layout.grid`: a spec that declares its picture is R×C separate tiles (sprite sheets,
storyboards, character sheets), which Split cuts apart."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAX_GRID_SIDE = 16
_GRID = re.compile(r"^\s*(\d{1,2})\s*[x×X*]\s*(\d{1,2})\s*$")


def parse_grid(value: object) -> tuple[int, int] | None:
    """"3x3", "2 × 4", {"rows": 2, "columns": 4} -> (rows, columns); None when it is not a
    grid of at least two tiles with at most 16 a side."""
    rows: Any
    cols: Any
    if isinstance(value, str):
        match = _GRID.match(value)
        if match is None:
            return None
        rows, cols = int(match.group(1)), int(match.group(2))
    elif isinstance(value, Mapping):
        rows = value.get("rows")
        cols = value.get("columns", value.get("cols"))
        if not (isinstance(rows, int) and isinstance(cols, int)) or isinstance(rows, bool):
            return None
    else:
        return None
    if not (1 <= rows <= MAX_GRID_SIDE and 1 <= cols <= MAX_GRID_SIDE) or rows * cols < 2:
        return None
    return rows, cols


def grid_of(spec: Mapping[str, Any]) -> tuple[int, int] | None:
    """The grid a spec dict declares in layout.grid, if any."""
    layout = spec.get("layout")
    if not isinstance(layout, Mapping):
        return None
    return parse_grid(layout.get("grid"))
