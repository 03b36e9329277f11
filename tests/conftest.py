"""Shared fixtures: the loopback fakes, usable from any test."""

pytest_plugins = ["tests.fakes.gemini_fixtures", "tests.fakes.discord_fixtures"]
