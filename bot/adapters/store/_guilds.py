"""Server-saved templates, and per-user / per-guild settings (key/value, values as JSON)."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from bot.adapters.store._base import StoreBase, from_json, name_key, prefix_upper_bound, to_json
from bot.adapters.store.rows import GuildTemplateRow

_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TEMPLATE_COLUMNS = "guild_id, name, description, body, author_id, created_at, updated_at"


def _template(r: sqlite3.Row) -> GuildTemplateRow:
    return GuildTemplateRow(
        guild_id=int(r["guild_id"]),
        name=r["name"],
        description=r["description"],
        body=r["body"],
        author_id=int(r["author_id"]),
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
    )


def _check_keys(values: dict[str, Any]) -> None:
    for key in values:
        if not _KEY.match(key):
            raise ValueError(f"bad setting name {key!r}")


class GuildsMixin(StoreBase):
    # -- guild templates ---------------------------------------------------------------------

    async def save_guild_template(
        self, *, guild_id: int, name: str, description: str, body: str, author_id: int
    ) -> None:
        """Create or replace a server template (names compare case-insensitively)."""
        display = name.strip()
        if not display:
            raise ValueError("a template needs a name")
        now = self._now()
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO guild_templates (guild_id, name, name_key, description, body,"
                " author_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (guild_id, name_key) DO UPDATE SET name = excluded.name,"
                " description = excluded.description, body = excluded.body,"
                " author_id = excluded.author_id, updated_at = excluded.updated_at",
                (guild_id, display, name_key(display), description, body, author_id, now, now),
            )

    async def get_guild_template(self, guild_id: int, name: str) -> GuildTemplateRow | None:
        async with self._db.reading() as tx:
            row = await tx.one(
                f"SELECT {_TEMPLATE_COLUMNS} FROM guild_templates"
                " WHERE guild_id = ? AND name_key = ?",
                (guild_id, name_key(name)),
            )
        return None if row is None else _template(row)

    async def list_guild_templates(self, guild_id: int) -> list[GuildTemplateRow]:
        async with self._db.reading() as tx:
            rows = await tx.all(
                f"SELECT {_TEMPLATE_COLUMNS} FROM guild_templates WHERE guild_id = ?"
                " ORDER BY name_key",
                (guild_id,),
            )
        return [_template(r) for r in rows]

    async def guild_template_names(self, guild_id: int, prefix: str, limit: int = 25) -> list[str]:
        """Autocomplete: the server's template names starting with `prefix` (any case)."""
        key = name_key(prefix)
        async with self._db.reading() as tx:
            rows = await tx.all(
                "SELECT name FROM guild_templates WHERE guild_id = ? AND name_key >= ?"
                " AND name_key < ? ORDER BY name_key LIMIT ?",
                (guild_id, key, prefix_upper_bound(key), max(0, limit)),
            )
        return [str(r["name"]) for r in rows]

    async def delete_guild_template(self, guild_id: int, name: str) -> bool:
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "DELETE FROM guild_templates WHERE guild_id = ? AND name_key = ?",
                (guild_id, name_key(name)),
            )
        return changed > 0

    # -- settings ----------------------------------------------------------------------------

    async def get_user_settings(self, user_id: int) -> dict[str, Any]:
        """Only the keys the user set (model, size, aspect, private, threads, …)."""
        return await self._get_settings("user_settings", "user_id", user_id)

    async def update_user_settings(self, user_id: int, **values: Any) -> None:
        """Set keys; a value of None unsets that key. All in one transaction."""
        await self._update_settings("user_settings", "user_id", user_id, values)

    async def get_guild_settings(self, guild_id: int) -> dict[str, Any]:
        """Only the keys an admin set (model, size, aspect, daily_images_per_user,
        daily_dollars_per_user, daily_dollars_guild, …)."""
        return await self._get_settings("guild_settings", "guild_id", guild_id)

    async def update_guild_settings(self, guild_id: int, **values: Any) -> None:
        await self._update_settings("guild_settings", "guild_id", guild_id, values)

    # The table and column names below come from the four methods above, never from input.
    async def _get_settings(self, table: str, column: str, owner: int) -> dict[str, Any]:
        async with self._db.reading() as tx:
            rows = await tx.all(
                f"SELECT key, value FROM {table} WHERE {column} = ? ORDER BY key", (owner,)
            )
        return {str(r["key"]): from_json(r["value"]) for r in rows}

    async def _update_settings(
        self, table: str, column: str, owner: int, values: dict[str, Any]
    ) -> None:
        _check_keys(values)
        encoded = {k: None if v is None else to_json(v) for k, v in values.items()}
        now = self._now()
        async with self._db.transaction() as tx:
            for key, value in encoded.items():
                if value is None:
                    await tx.execute(
                        f"DELETE FROM {table} WHERE {column} = ? AND key = ?", (owner, key)
                    )
                else:
                    await tx.execute(
                        f"INSERT INTO {table} ({column}, key, value, updated_at)"
                        " VALUES (?, ?, ?, ?)"
                        f" ON CONFLICT ({column}, key) DO UPDATE"
                        " SET value = excluded.value, updated_at = excluded.updated_at",
                        (owner, key, value, now),
                    )
