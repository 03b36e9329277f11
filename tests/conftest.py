"""Shared fixtures: the loopback fakes and a real PostgreSQL server, usable from any test."""

pytest_plugins = [
    "tests.fakes.gemini_fixtures",
    "tests.fakes.discord_fixtures",
    "tests.support.postgres",
]
