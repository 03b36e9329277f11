"""Small text helpers for what users read: truncation, ordinals, costs, message links."""

from __future__ import annotations


def truncate(text: str, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def format_cost(dollars: float) -> str:
    return f"${dollars:.3f}" if dollars < 1 else f"${dollars:.2f}"


def format_duration(seconds: float) -> str:
    """12.3 s; 42 min; 3 h 5 min (an economy result may take hours)."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"


def jump_url(guild_id: int | None, channel_id: int, message_id: int) -> str:
    """A link to a message; DMs use "@me" in place of the server."""
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"
