"""Effective defaults for a request: the user's /settings, then the server's, then config."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from bot.adapters.prompts import Defaults
from bot.config import (
    MODEL_ALIASES,
    Settings,
    UnknownModelError,
    capability,
    model_display_name,
    resolve_model,
)
from bot.errors import UserError

if TYPE_CHECKING:
    from bot.adapters.store import Store

log = logging.getLogger(__name__)

USER_KEYS = ("model", "size", "aspect", "private", "threads", "economy")
YOURS, SERVER, BUILTIN = "yours", "server", "built-in"


@dataclass(frozen=True)
class Preferences:
    model: str
    size: str
    aspect: str
    private: bool
    threads: bool
    sources: dict[str, str] = field(default_factory=dict)  # key -> "yours" | "server" | "built-in"
    # Gemini's Batch API by default (/imagine, /prompt, /template use, /batch only)
    economy: bool = False

    @property
    def defaults(self) -> Defaults:
        return Defaults(model=self.model, size=self.size, aspect=self.aspect)


def _valid(key: str, value: Any) -> bool:
    """A stored value the bot can still use (a model may have been retired since)."""
    if key == "model":
        try:
            resolve_model(str(value))
        except UnknownModelError:
            return False
    return value is not None


async def preferences_for(
    store: Store, settings: Settings, user_id: int, guild_id: int | None
) -> Preferences:
    builtin: dict[str, Any] = {
        "model": settings.default_model,
        "size": settings.default_size,
        "aspect": settings.default_aspect,
        "private": False,
        "threads": True,
        "economy": False,
    }
    guild = await store.get_guild_settings(guild_id) if guild_id else {}
    mine = await store.get_user_settings(user_id)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in USER_KEYS:
        if _valid(key, mine.get(key)):
            values[key], sources[key] = mine[key], YOURS
        elif _valid(key, guild.get(key)):
            values[key], sources[key] = guild[key], SERVER
        else:
            values[key], sources[key] = builtin[key], BUILTIN
    return Preferences(
        model=resolve_model(str(values["model"])),
        size=str(values["size"]),
        aspect=str(values["aspect"]),
        private=bool(values["private"]),
        threads=bool(values["threads"]),
        sources=sources,
        economy=bool(values["economy"]),
    )


def combination_problems(prefs: Preferences) -> dict[str, str]:
    """key -> why the chosen model cannot use that size or aspect ratio."""
    cap = capability(prefs.model)
    problems: dict[str, str] = {}
    if prefs.size not in cap.sizes:
        problems["size"] = f"{cap.name} has no size {prefs.size} (it offers {', '.join(cap.sizes)})"
    if prefs.aspect not in cap.aspect_ratios:
        problems["aspect"] = f"{cap.name} has no aspect ratio {prefs.aspect}"
    return problems


def fallback_for(prefs: Preferences, key: str) -> str:
    """What a request on this model uses instead of an unusable inherited default."""
    cap = capability(prefs.model)
    if key == "size":
        return cap.default_size if cap.default_size in cap.sizes else cap.sizes[0]
    return "1:1"


async def update_preferences(
    store: Store,
    settings: Settings,
    user_id: int,
    guild_id: int | None,
    changes: dict[str, Any],
) -> tuple[Preferences, list[str]]:
    """Save the user's changed defaults if the result is a combination the model offers.

    Raises UserError (nothing saved) when a value the user chose - now or before - does not
    fit the model. A server or built-in default that does not fit is only noted: requests
    fall back to the model's own default, as bot.prompts does."""
    current = await preferences_for(store, settings, user_id, guild_id)
    if "model" in changes:
        try:
            changes = {**changes, "model": resolve_model(str(changes["model"]))}
        except UnknownModelError as exc:
            raise UserError(str(exc).capitalize() + ".") from None
    sources = dict(current.sources)
    sources.update({key: YOURS for key in changes})
    merged = replace(current, **changes, sources=sources)
    problems = combination_problems(merged)
    mine = [key for key in problems if merged.sources[key] == YOURS]
    if mine:
        model = model_display_name(merged.model)
        hints = " ".join(f"{problems[key]}." for key in mine)
        fix = " ".join(f"{key}:{fallback_for(merged, key)}" for key in mine)
        alias = next((a for a, m in MODEL_ALIASES.items() if m == merged.model), merged.model)
        raise UserError(
            f"Not saved: {hints} Choose a {' and '.join(mine)} that {model} offers, "
            f"e.g. `/settings model:{alias} {fix}`."
        )
    await store.update_user_settings(user_id, **changes)
    log.info("user %s changed settings %s", user_id, sorted(changes))
    notes = [
        f"{problems[key]}; your requests on it use {fallback_for(merged, key)}."
        for key in problems
    ]
    return merged, notes
