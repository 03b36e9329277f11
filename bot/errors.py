"""Errors whose message is meant for the user: short, says what is wrong and what to do."""

from __future__ import annotations


class UserError(Exception):
    """Shown to the user as is (ephemeral). Never carries a secret or a traceback."""


class QuotaExceeded(UserError):
    pass


class QueueFull(UserError):
    """The user already has as many requests waiting as they may."""
