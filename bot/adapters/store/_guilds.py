"""Server-saved templates, and per-user / per-guild settings (key/value, values as JSON)."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from bot.adapters.store._base import StoreBase, from_json, name_key, to_json
from bot.adapters.store.db import Record
from bot.adapters.store.rows import GuildTemplateRow
from bot.adapters.store.tables import guild_settings, guild_templates, user_settings

_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
t = guild_templates.c
_SELECT = sa.select(
    t.guild_id, t.name, t.description, t.body, t.author_id, t.created_at, t.updated_at
)


def _template(r: Record) -> GuildTemplateRow:
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
        stmt = self._insert(guild_templates).values(
            guild_id=guild_id, name=display, name_key=name_key(display), description=description,
            body=body, author_id=author_id, created_at=now, updated_at=now,
        )  # fmt: skip
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.guild_id, t.name_key],
            set_={
                key: stmt.excluded[key]
                for key in ("name", "description", "body", "author_id", "updated_at")
            },
        )
        async with self._db.transaction() as tx:
            await tx.execute(stmt)

    async def get_guild_template(self, guild_id: int, name: str) -> GuildTemplateRow | None:
        async with self._db.reading() as tx:
            row = await tx.one(_SELECT.where(t.guild_id == guild_id, t.name_key == name_key(name)))
        return None if row is None else _template(row)

    async def list_guild_templates(self, guild_id: int) -> list[GuildTemplateRow]:
        async with self._db.reading() as tx:
            rows = await tx.all(_SELECT.where(t.guild_id == guild_id).order_by(t.name_key))
        return [_template(r) for r in rows]

    async def delete_guild_template(self, guild_id: int, name: str) -> bool:
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                sa.delete(guild_templates).where(
                    t.guild_id == guild_id, t.name_key == name_key(name)
                )
            )
        return changed > 0

    # -- settings ----------------------------------------------------------------------------

    async def get_user_settings(self, user_id: int) -> dict[str, Any]:
        """Only the keys the user set (model, size, aspect, private, threads, …)."""
        return await self._get_settings(user_settings, user_settings.c.user_id, user_id)

    async def update_user_settings(self, user_id: int, **values: Any) -> None:
        """Set keys; a value of None unsets that key. All in one transaction."""
        await self._update_settings(user_settings, user_settings.c.user_id, user_id, values)

    async def get_guild_settings(self, guild_id: int) -> dict[str, Any]:
        """Only the keys an admin set (model, size, aspect, daily_images_per_user,
        daily_dollars_per_user, daily_dollars_guild, …)."""
        return await self._get_settings(guild_settings, guild_settings.c.guild_id, guild_id)

    async def update_guild_settings(self, guild_id: int, **values: Any) -> None:
        await self._update_settings(guild_settings, guild_settings.c.guild_id, guild_id, values)

    async def _get_settings(
        self, table: sa.Table, owner: sa.Column[int], owner_id: int
    ) -> dict[str, Any]:
        async with self._db.reading() as tx:
            rows = await tx.all(
                sa.select(table.c.key, table.c.value).where(owner == owner_id).order_by(table.c.key)
            )
        return {str(r["key"]): from_json(r["value"]) for r in rows}

    async def _update_settings(
        self, table: sa.Table, owner: sa.Column[int], owner_id: int, values: dict[str, Any]
    ) -> None:
        _check_keys(values)
        encoded = {k: None if v is None else to_json(v) for k, v in values.items()}
        now = self._now()
        async with self._db.transaction() as tx:
            for key, value in encoded.items():
                if value is None:
                    await tx.execute(sa.delete(table).where(owner == owner_id, table.c.key == key))
                else:
                    stmt = self._insert(table).values(
                        {owner.name: owner_id, "key": key, "value": value, "updated_at": now}
                    )
                    await tx.execute(
                        stmt.on_conflict_do_update(
                            index_elements=[owner, table.c.key],
                            set_={
                                "value": stmt.excluded.value,
                                "updated_at": stmt.excluded.updated_at,
                            },
                        )
                    )
