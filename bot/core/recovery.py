"""What a job whose worker died (or that a restart interrupted) still needs: decided from its
generation alone, so any process that claims it does the same."""

from __future__ import annotations

from enum import StrEnum

from bot.adapters.store import GenerationRow


class Recovery(StrEnum):
    RESUME = "resume"  # queued or running: generate, same id, same message
    POST = "post"  # finished but never shown: post the stored result
    REPORT = "report"  # failed or blocked: show the failure with Retry
    NOTHING = "nothing"  # shown, cancelled or gone: just end the job


def decide(gen: GenerationRow | None) -> Recovery:
    if gen is None:
        return Recovery.NOTHING
    if gen.status in ("queued", "running"):
        return Recovery.RESUME
    if gen.status == "done" and gen.message_id is None and gen.output_image:
        return Recovery.POST
    if gen.status in ("failed", "blocked"):
        return Recovery.REPORT
    return Recovery.NOTHING
