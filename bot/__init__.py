"""Nano Banana Discord bot: the engine (everything that is not Discord glue)."""

__version__ = "0.1.0"
