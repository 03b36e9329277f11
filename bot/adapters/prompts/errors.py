"""The one exception the prompt engine raises for anything a user can fix."""

from __future__ import annotations

from collections.abc import Sequence


class SpecError(Exception):
    """One or more problems with a spec, template or option; each is one short actionable line."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        if isinstance(problems, str):
            problems = [problems]
        # one line each, whatever user text a message quotes
        cleaned = [" ".join(p.split()) for p in problems if p and p.strip()]
        self.problems: list[str] = cleaned or ["invalid prompt"]
        super().__init__("\n".join(self.problems))

    def prefixed(self, prefix: str) -> SpecError:
        """The same problems, each prefixed (e.g. with a file or template name)."""
        return SpecError([f"{prefix}: {p}" for p in self.problems])


def json_path(parts: Sequence[str | int]) -> str:
    """('inputs', 0, 'data') -> 'inputs[0].data' (the form users see in messages)."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = short(str(part), 30) or '""'
            out += f".{key}" if out else key
    return out or "(top level)"


def short(value: object, limit: int = 40) -> str:
    """A value quoted briefly for a message."""
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
