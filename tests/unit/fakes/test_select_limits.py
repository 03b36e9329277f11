"""The fake Discord refuses select menus Discord refuses (and the bot's tile picker fits)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.presentation.tiles import tile_picker_view
from tests.fakes.discord_limits import component_errors


def _row(*items: dict[str, Any]) -> dict[str, Any]:
    return {"type": 1, "components": list(items)}


def _select(n: int = 3, **kw: Any) -> dict[str, Any]:
    menu: dict[str, Any] = {
        "type": 3,
        "custom_id": "pick",
        "options": [{"label": f"Tile {i}", "value": str(i)} for i in range(1, n + 1)],
    }
    menu.update(kw)
    return menu


def _codes(components: list[dict[str, Any]]) -> list[str]:
    return [code for _path, code, _msg in component_errors(components, 0)]


def test_a_good_select_passes() -> None:
    assert _codes([_row(_select())]) == []


@pytest.mark.parametrize(
    ("menu", "code"),
    [
        (_select(26), "BASE_TYPE_BAD_LENGTH"),
        (_select(0), "BASE_TYPE_BAD_LENGTH"),
        (_select(3, max_values=4), "BASE_TYPE_BAD_LENGTH"),
        (_select(3, min_values=3, max_values=2), "BASE_TYPE_BAD_LENGTH"),
        (_select(3, placeholder="x" * 151), "BASE_TYPE_MAX_LENGTH"),
        (
            {**_select(1), "options": [{"label": "x" * 101, "value": "1"}]},
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            {**_select(1), "options": [{"label": "a", "value": "1"}, {"label": "b", "value": "1"}]},
            "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
        ),
    ],
)
def test_bad_selects_are_refused(menu: dict[str, Any], code: str) -> None:
    assert code in _codes([_row(menu)])


def test_a_select_takes_a_whole_row() -> None:
    button = {"type": 2, "style": 1, "label": "Go", "custom_id": "go"}
    assert "COMPONENT_LAYOUT_WIDTH_EXCEEDED" in _codes([_row(_select(), button)])


@pytest.mark.parametrize(("count", "menus"), [(4, 1), (9, 1), (25, 1), (48, 2), (100, 4)])
def test_tile_picker_fits_discord(count: int, menus: int) -> None:
    view = tile_picker_view(42, count, cols=8)
    payload = view.to_components()
    assert len(payload) == menus
    assert _codes(payload) == []
    values = [o["value"] for row in payload for o in row["components"][0]["options"]]
    assert values == [str(n) for n in range(1, count + 1)]
