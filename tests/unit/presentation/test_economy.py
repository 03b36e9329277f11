"""The lines economy requests show: their state with Discord timestamps, and durations."""

from __future__ import annotations

from bot.presentation.economy import CHAINS_NOTE, gathering_text, state_text
from bot.presentation.text import format_duration


def test_the_state_line_says_where_the_request_is_with_discord_timestamps() -> None:
    waiting = state_text(
        gemini_state="JOB_STATE_PENDING", submitted_at=1000.4, expected_by=87400.9,
        model="gemini-3-pro-image",
    )  # fmt: skip
    assert "Waiting in Gemini's batch queue" in waiting
    assert "Submitted <t:1000:R> · expected by <t:87400:R>" in waiting
    assert "Nano Banana Pro" in waiting
    running = state_text(
        gemini_state="JOB_STATE_RUNNING", submitted_at=1000, expected_by=2000,
        model="gemini-3-pro-image", images=4, field="product.color",
    )  # fmt: skip
    assert running.startswith("🐢 Economy batch on `product.color` (4 images")
    assert "too late to cancel" in running
    assert "half price" in gathering_text("gemini-3.1-flash-image", images=3)
    assert "interactively" in CHAINS_NOTE and "Refine" in CHAINS_NOTE


def test_durations_read_as_people_say_them() -> None:
    assert format_duration(12.34) == "12.3 s"
    assert format_duration(119.9) == "119.9 s"
    assert format_duration(42 * 60) == "42 min"
    assert format_duration(3 * 3600) == "3 h"
    assert format_duration(3 * 3600 + 5 * 60 + 10) == "3 h 5 min"
