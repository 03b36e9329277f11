"""Persistent buttons: one enum of actions, one DynamicItem, one registry of handlers.

A button's custom id carries the action and the generation id ("nb:reroll:42"), so it keeps
working after a restart: all state comes from the database. The extension that owns an action
registers its handler in the bot's `ActionRegistry`; this layer never imports them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from enum import StrEnum
from typing import Any

import discord

from bot.presentation.replies import report_error

ActionHandler = Callable[[discord.Interaction, int], Awaitable[None]]


class Action(StrEnum):
    REROLL = "reroll"
    REFINE = "refine"
    UPSCALE_2K = "up2k"
    UPSCALE_4K = "up4k"
    PROMPT = "prompt"
    UNDO = "undo"
    DELETE = "delete"
    CANCEL = "cancel"
    CANCEL_BATCH = "cancelbatch"  # on a batch's progress message; carries its first variant
    RETRY = "retry"
    # /describe replies (carry the describe's record id)
    GENERATE = "generate"
    GENERATE_WITH_IMAGE = "genimage"
    EDIT_SPEC = "editspec"
    REDESCRIBE = "redescribe"
    # Split: on grid results, the tile picker (a select menu; carries the result's id) and
    # the tiles' own Save as anchor (carries the tile's id)
    SPLIT = "split"
    PICK_TILE = "tile"
    SAVE_ANCHOR = "saveanchor"
    # Economy (Gemini's Batch API): Cancel while the batch has not started (a request, or a
    # whole /batch: carries its first generation), and Retry through the Batch API again
    ECONOMY_CANCEL = "ecocancel"
    ECONOMY_RETRY = "ecoretry"


# action: (label, style, emoji)
_LOOK: dict[Action, tuple[str, discord.ButtonStyle, str | None]] = {
    Action.REROLL: ("Reroll", discord.ButtonStyle.secondary, "🎲"),
    Action.REFINE: ("Refine", discord.ButtonStyle.primary, "✏️"),
    Action.UPSCALE_2K: ("Upscale 2K", discord.ButtonStyle.secondary, None),
    Action.UPSCALE_4K: ("Upscale 4K", discord.ButtonStyle.secondary, None),
    Action.PROMPT: ("Prompt", discord.ButtonStyle.secondary, "📄"),
    Action.UNDO: ("Undo", discord.ButtonStyle.secondary, "↩️"),
    Action.DELETE: ("Delete", discord.ButtonStyle.danger, "🗑️"),
    Action.CANCEL: ("Cancel", discord.ButtonStyle.danger, None),
    Action.CANCEL_BATCH: ("Cancel batch", discord.ButtonStyle.danger, None),
    Action.RETRY: ("Retry", discord.ButtonStyle.primary, "🔁"),
    Action.GENERATE: ("Generate", discord.ButtonStyle.primary, "🎨"),
    Action.GENERATE_WITH_IMAGE: ("Generate with this image", discord.ButtonStyle.secondary, "🖼️"),
    Action.EDIT_SPEC: ("Edit spec", discord.ButtonStyle.secondary, "📝"),
    Action.REDESCRIBE: ("Retry", discord.ButtonStyle.primary, "🔁"),
    Action.SPLIT: ("Split", discord.ButtonStyle.secondary, "✂️"),
    Action.PICK_TILE: ("Pick a tile", discord.ButtonStyle.secondary, None),
    Action.SAVE_ANCHOR: ("Save as anchor", discord.ButtonStyle.secondary, "📌"),
    Action.ECONOMY_CANCEL: ("Cancel", discord.ButtonStyle.danger, None),
    Action.ECONOMY_RETRY: ("Retry in economy", discord.ButtonStyle.secondary, "🐢"),
}


class ActionRegistry:
    """What each action does; extensions register the actions they own at load time."""

    def __init__(self) -> None:
        self._handlers: dict[Action, ActionHandler] = {}

    def register(self, action: Action, handler: ActionHandler) -> None:
        if action in self._handlers:
            raise ValueError(f"button action {action.value!r} registered twice")
        self._handlers[action] = handler

    def unregister(self, *actions: Action) -> None:
        for action in actions:
            self._handlers.pop(action, None)

    def get(self, action: Action | str) -> ActionHandler | None:
        return self._handlers.get(action) if isinstance(action, Action) else None


class ActionButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"nb:(?P<action>[a-z0-9]+):(?P<gid>[0-9]+)",
):
    """One persistent button; its handler is looked up in the bot's registry at click time."""

    def __init__(self, action: Action | str, generation_id: int) -> None:
        # A custom id from an older version may name an action that no longer exists.
        look = _LOOK.get(action) if isinstance(action, Action) else None
        label, style, emoji = look or ("Unavailable", discord.ButtonStyle.secondary, None)
        super().__init__(
            discord.ui.Button(
                label=label, style=style, emoji=emoji, custom_id=f"nb:{action}:{generation_id}"
            )
        )
        self.action = action
        self.generation_id = generation_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ActionButton:
        name = match["action"]
        action = Action(name) if name in Action._value2member_map_ else name
        return cls(action, int(match["gid"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        registry: ActionRegistry | None = getattr(interaction.client, "actions", None)
        handler = registry.get(self.action) if registry is not None else None
        if handler is None:
            await interaction.response.send_message(
                "That button no longer does anything.", ephemeral=True
            )
            return
        try:
            await handler(interaction, self.generation_id)
        except Exception as exc:  # a button must always answer, never "interaction failed"
            await report_error(interaction, exc, where=f"button {self.action} #{self.generation_id}")


def action_view(generation_id: int, actions: Iterable[Action]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(ActionButton(action, generation_id))
    return view


def result_actions(*, in_chain: bool, grid: bool = False) -> list[Action]:
    """The buttons under a result; `grid`: its spec declares layout.grid (Split)."""
    actions = [
        Action.REROLL,
        Action.REFINE,
        Action.UPSCALE_2K,
        Action.UPSCALE_4K,
        Action.PROMPT,
    ]
    if grid:
        actions.append(Action.SPLIT)
    if in_chain:
        actions.append(Action.UNDO)
    actions.append(Action.DELETE)
    return actions
