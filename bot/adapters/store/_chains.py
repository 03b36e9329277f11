"""Chains: a thread of iterative edits, a tree of steps (each step one generation)."""

from __future__ import annotations

import sqlite3

from bot.adapters.store._base import StoreBase
from bot.adapters.store.db import Tx
from bot.adapters.store.rows import ChainRow, ChainStepRow

_CHAIN_COLUMNS = (
    "c.id, c.root_generation_id, c.head_generation_id, c.guild_id, c.channel_id, c.thread_id,"
    " c.owner_id, c.created_at, c.updated_at"
)


def _chain(r: sqlite3.Row) -> ChainRow:
    return ChainRow(
        id=int(r["id"]),
        root_generation_id=int(r["root_generation_id"]),
        head_generation_id=int(r["head_generation_id"]),
        guild_id=r["guild_id"],
        channel_id=int(r["channel_id"]),
        thread_id=r["thread_id"],
        owner_id=int(r["owner_id"]),
        created_at=float(r["created_at"]),
        updated_at=float(r["updated_at"]),
    )


async def _chain_of_step(tx: Tx, generation_id: int) -> int | None:
    value = await tx.scalar(
        "SELECT chain_id FROM chain_steps WHERE generation_id = ?", (generation_id,)
    )
    return None if value is None else int(value)


class ChainsMixin(StoreBase):
    async def create_chain(
        self,
        *,
        root_generation_id: int,
        guild_id: int | None,
        channel_id: int,
        thread_id: int | None,
        owner_id: int,
    ) -> int:
        """A chain rooted at a generation (its step 0, also the head); returns the chain id.
        ValueError if the generation is missing or already part of a chain."""
        now = self._now()
        async with self._db.transaction() as tx:
            root = await tx.one("SELECT 1 FROM generations WHERE id = ?", (root_generation_id,))
            if root is None:
                raise ValueError(f"no generation {root_generation_id}")
            existing = await _chain_of_step(tx, root_generation_id)
            if existing is not None:
                raise ValueError(f"generation {root_generation_id} is already in chain {existing}")
            chain_id = await tx.insert(
                "INSERT INTO chains (root_generation_id, head_generation_id, guild_id,"
                " channel_id, thread_id, owner_id, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    root_generation_id,
                    root_generation_id,
                    guild_id,
                    channel_id,
                    thread_id,
                    owner_id,
                    now,
                    now,
                ),
            )
            await tx.execute(
                "INSERT INTO chain_steps (chain_id, generation_id, parent_step_id, step,"
                " created_at) VALUES (?, ?, NULL, 0, ?)",
                (chain_id, root_generation_id, now),
            )
            await tx.execute(
                "UPDATE generations SET chain_id = ?, step = 0 WHERE id = ?",
                (chain_id, root_generation_id),
            )
        return chain_id

    async def get_chain(self, chain_id: int) -> ChainRow | None:
        async with self._db.reading() as tx:
            row = await tx.one(f"SELECT {_CHAIN_COLUMNS} FROM chains c WHERE c.id = ?", (chain_id,))
        return None if row is None else _chain(row)

    async def chain_by_thread(self, thread_id: int) -> ChainRow | None:
        async with self._db.reading() as tx:
            row = await tx.one(
                f"SELECT {_CHAIN_COLUMNS} FROM chains c WHERE c.thread_id = ?", (thread_id,)
            )
        return None if row is None else _chain(row)

    async def chain_for_generation(self, generation_id: int) -> ChainRow | None:
        """The chain a generation is the root or a step of (or was queued for)."""
        async with self._db.reading() as tx:
            row = await tx.one(
                f"SELECT {_CHAIN_COLUMNS} FROM chains c WHERE c.id = COALESCE("
                " (SELECT s.chain_id FROM chain_steps s WHERE s.generation_id = ?),"
                " (SELECT g.chain_id FROM generations g WHERE g.id = ?))",
                (generation_id, generation_id),
            )
        return None if row is None else _chain(row)

    async def set_chain_thread(self, chain_id: int, thread_id: int | None) -> None:
        """Attach the chain to its thread (None: the thread is gone)."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE chains SET thread_id = ?, updated_at = ? WHERE id = ?",
                (thread_id, self._now(), chain_id),
            )
        if changed != 1:
            raise LookupError(f"no chain {chain_id}")

    async def set_chain_head(self, chain_id: int, generation_id: int) -> None:
        """Move the head (a new result, or Undo). The generation must be a step of the chain."""
        async with self._db.transaction() as tx:
            if await _chain_of_step(tx, generation_id) != chain_id:
                raise ValueError(f"generation {generation_id} is not a step of chain {chain_id}")
            await tx.execute(
                "UPDATE chains SET head_generation_id = ?, updated_at = ? WHERE id = ?",
                (generation_id, self._now(), chain_id),
            )

    async def add_chain_step(
        self, *, chain_id: int, generation_id: int, parent_generation_id: int | None
    ) -> int:
        """Add a generation to the chain's tree below `parent_generation_id`; returns its step
        number (root 0, otherwise parent's + 1) and sets the generation's chain_id, parent_id
        and step. Idempotent for a generation already in this chain. Only the root (already
        added by create_chain) has no parent. Does not move the head."""
        now = self._now()
        async with self._db.transaction() as tx:
            current = await tx.one(
                "SELECT chain_id, step FROM chain_steps WHERE generation_id = ?", (generation_id,)
            )
            if current is not None:
                if int(current["chain_id"]) != chain_id:
                    raise ValueError(
                        f"generation {generation_id} is already in chain {current['chain_id']}"
                    )
                return int(current["step"])
            if parent_generation_id is None:
                raise ValueError("only the chain's root has no parent; create_chain adds it")
            parent = await tx.one(
                "SELECT id, step FROM chain_steps WHERE chain_id = ? AND generation_id = ?",
                (chain_id, parent_generation_id),
            )
            if parent is None:
                raise ValueError(
                    f"generation {parent_generation_id} is not a step of chain {chain_id}"
                )
            if await tx.one("SELECT 1 FROM generations WHERE id = ?", (generation_id,)) is None:
                raise ValueError(f"no generation {generation_id}")
            step = int(parent["step"]) + 1
            await tx.execute(
                "INSERT INTO chain_steps (chain_id, generation_id, parent_step_id, step,"
                " created_at) VALUES (?, ?, ?, ?, ?)",
                (chain_id, generation_id, int(parent["id"]), step, now),
            )
            await tx.execute(
                "UPDATE generations SET chain_id = ?, parent_id = ?, step = ? WHERE id = ?",
                (chain_id, parent_generation_id, step, generation_id),
            )
            await tx.execute("UPDATE chains SET updated_at = ? WHERE id = ?", (now, chain_id))
        return step

    async def chain_steps(self, chain_id: int) -> list[ChainStepRow]:
        """Every step of a chain (the whole tree), by step number then age."""
        async with self._db.reading() as tx:
            rows = await tx.all(
                "SELECT s.id, s.chain_id, s.generation_id, s.parent_step_id,"
                " p.generation_id AS parent_generation_id, s.step, s.created_at"
                " FROM chain_steps s LEFT JOIN chain_steps p ON p.id = s.parent_step_id"
                " WHERE s.chain_id = ? ORDER BY s.step, s.id",
                (chain_id,),
            )
        return [
            ChainStepRow(
                id=int(r["id"]),
                chain_id=int(r["chain_id"]),
                generation_id=int(r["generation_id"]),
                parent_step_id=r["parent_step_id"],
                parent_generation_id=r["parent_generation_id"],
                step=int(r["step"]),
                created_at=float(r["created_at"]),
            )
            for r in rows
        ]
