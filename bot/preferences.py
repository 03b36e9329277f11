"""Effective defaults for a request: the user's /settings, then the server's, then config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.config import Settings, resolve_model
from bot.prompts import Defaults

if TYPE_CHECKING:
    from bot.store import Store

USER_KEYS = ("model", "size", "aspect", "private", "threads")


@dataclass
class Preferences:
    model: str
    size: str
    aspect: str
    private: bool
    threads: bool
    sources: dict[str, str] = field(default_factory=dict)  # key -> "yours" | "server" | "built-in"

    @property
    def defaults(self) -> Defaults:
        return Defaults(model=self.model, size=self.size, aspect=self.aspect)


async def preferences_for(
    store: Store, settings: Settings, user_id: int, guild_id: int | None
) -> Preferences:
    builtin: dict[str, Any] = {
        "model": settings.default_model,
        "size": settings.default_size,
        "aspect": settings.default_aspect,
        "private": False,
        "threads": True,
    }
    guild = await store.get_guild_settings(guild_id) if guild_id else {}
    mine = await store.get_user_settings(user_id)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in USER_KEYS:
        if mine.get(key) is not None:
            values[key], sources[key] = mine[key], "yours"
        elif guild.get(key) is not None:
            values[key], sources[key] = guild[key], "server"
        else:
            values[key], sources[key] = builtin[key], "built-in"
    return Preferences(
        model=resolve_model(str(values["model"])),
        size=str(values["size"]),
        aspect=str(values["aspect"]),
        private=bool(values["private"]),
        threads=bool(values["threads"]),
        sources=sources,
    )
