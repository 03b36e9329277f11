"""Templates: the built-in ones from templates/ and the ones a server saved."""

from __future__ import annotations

from typing import Any

from bot.adapters.prompts import Template, parse_template, parse_vars
from bot.adapters.store import Store
from bot.errors import UserError


class TemplateCatalog:
    def __init__(self, store: Store, builtin: dict[str, Template]) -> None:
        self.store = store
        self.builtin = builtin

    async def find(self, guild_id: int | None, name: str) -> Template:
        """A server's template of that name first, then a built-in one; UserError if none."""
        key = name.strip()
        if guild_id is not None:
            row = await self.store.get_guild_template(guild_id, key)
            if row is not None:
                return parse_template(row.name, row.body, source="guild")
        template = self.builtin.get(key)
        if template is None:
            raise UserError(f"There is no template called '{name}'. See /template list.")
        return template

    async def labels(self, guild_id: int | None) -> dict[str, str]:
        """name -> "name (server) — description" for every template usable here."""
        entries: dict[str, str] = {}
        if guild_id is not None:
            for row in await self.store.list_guild_templates(guild_id):
                entries[row.name] = f"{row.name} (server) — {row.description}"
        for name, template in self.builtin.items():
            entries.setdefault(name, f"{name} — {template.description}")
        return entries


def spec_from_template(
    template: Template, vars_text: str | None, extra: str | None
) -> dict[str, Any]:
    """Fill a template; free text that is not key=value becomes an extra instruction."""
    values: dict[str, str] = {}
    instructions = None
    if extra:
        if "=" in extra:
            values.update(parse_vars(extra))
        else:
            instructions = extra
    values.update(parse_vars(vars_text))
    spec = template.fill(values)
    if instructions:
        spec["instructions"] = instructions
    return spec
