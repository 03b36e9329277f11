"""The tile picker under a Split message: persistent select menus whose custom id carries the
split result's id and which tiles they list ("nb:tiles:42:1:9"), so picking still works after
a restart. The handler is the registry's Action.PICK_TILE; it reads the picked number from
the interaction."""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.presentation.buttons import Action, ActionRegistry
from bot.presentation.replies import report_error

# Discord: at most 25 options per select menu, 5 action rows per message.
OPTIONS_PER_MENU = 25
MAX_MENUS = 5
MAX_PICKABLE = OPTIONS_PER_MENU * MAX_MENUS


def tile_label(number: int, cols: int) -> str:
    row, col = divmod(number - 1, cols)
    return f"Tile {number} (row {row + 1}, column {col + 1})"


class TilePicker(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=r"nb:tiles:(?P<gid>[0-9]+):(?P<first>[0-9]+):(?P<count>[0-9]+):(?P<cols>[0-9]+)",
):
    """One select menu listing tiles first … first+count-1 of result `generation_id`."""

    def __init__(self, generation_id: int, first: int, count: int, cols: int) -> None:
        count = max(1, min(count, OPTIONS_PER_MENU))
        last = first + count - 1
        super().__init__(
            discord.ui.Select(
                custom_id=f"nb:tiles:{generation_id}:{first}:{count}:{cols}",
                placeholder=(
                    "Pick a tile to refine, upscale or save"
                    if first == 1 and count > 1
                    else f"Tiles {first}–{last}"
                ),
                min_values=1,
                max_values=1,
                options=[
                    discord.SelectOption(label=tile_label(n, cols), value=str(n))
                    for n in range(first, last + 1)
                ],
            )
        )
        self.generation_id = generation_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> TilePicker:
        return cls(int(match["gid"]), int(match["first"]), int(match["count"]), int(match["cols"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        registry: ActionRegistry | None = getattr(interaction.client, "actions", None)
        handler = registry.get(Action.PICK_TILE) if registry is not None else None
        if handler is None:
            await interaction.response.send_message(
                "That menu no longer does anything.", ephemeral=True
            )
            return
        try:
            await handler(interaction, self.generation_id)
        except Exception as exc:  # a menu must always answer
            await report_error(interaction, exc, where=f"tile picker #{self.generation_id}")


def picked_tile(interaction: discord.Interaction) -> int | None:
    """The tile number a select interaction picked."""
    data: Any = interaction.data or {}
    values = data.get("values") if isinstance(data, dict) else None
    if not values:
        return None
    try:
        return int(values[0])
    except (TypeError, ValueError):
        return None


def tile_picker_view(generation_id: int, count: int, cols: int) -> discord.ui.View:
    """Select menus for `count` tiles (25 a menu, at most 5 menus)."""
    view = discord.ui.View(timeout=None)
    for first in range(1, min(count, MAX_PICKABLE) + 1, OPTIONS_PER_MENU):
        view.add_item(
            TilePicker(generation_id, first, min(OPTIONS_PER_MENU, count - first + 1), cols)
        )
    return view
