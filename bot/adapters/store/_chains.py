"""Chains: a thread of iterative edits, a tree of steps (each step one generation)."""

from __future__ import annotations

import sqlalchemy as sa

from bot.adapters.store._base import StoreBase
from bot.adapters.store.db import Record, Tx
from bot.adapters.store.rows import ChainRow, ChainStepRow
from bot.adapters.store.tables import chain_steps, chains, generations

_SELECT = sa.select(*chains.c)


def _chain(r: Record) -> ChainRow:
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
        sa.select(chain_steps.c.chain_id).where(chain_steps.c.generation_id == generation_id)
    )
    return None if value is None else int(value)


async def _generation_exists(tx: Tx, generation_id: int) -> bool:
    found = await tx.one(sa.select(generations.c.id).where(generations.c.id == generation_id))
    return found is not None


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
            if not await _generation_exists(tx, root_generation_id):
                raise ValueError(f"no generation {root_generation_id}")
            existing = await _chain_of_step(tx, root_generation_id)
            if existing is not None:
                raise ValueError(f"generation {root_generation_id} is already in chain {existing}")
            chain_id = await tx.insert(
                sa.insert(chains).values(
                    root_generation_id=root_generation_id, head_generation_id=root_generation_id,
                    guild_id=guild_id, channel_id=channel_id, thread_id=thread_id,
                    owner_id=owner_id, created_at=now, updated_at=now,
                )
            )  # fmt: skip
            await tx.execute(
                sa.insert(chain_steps).values(
                    chain_id=chain_id, generation_id=root_generation_id, parent_step_id=None,
                    step=0, created_at=now,
                )
            )  # fmt: skip
            await tx.execute(
                sa.update(generations)
                .where(generations.c.id == root_generation_id)
                .values(chain_id=chain_id, step=0)
            )
        return chain_id

    async def get_chain(self, chain_id: int) -> ChainRow | None:
        async with self._db.reading() as tx:
            row = await tx.one(_SELECT.where(chains.c.id == chain_id))
        return None if row is None else _chain(row)

    async def chain_by_thread(self, thread_id: int) -> ChainRow | None:
        async with self._db.reading() as tx:
            row = await tx.one(_SELECT.where(chains.c.thread_id == thread_id))
        return None if row is None else _chain(row)

    async def chain_for_generation(self, generation_id: int) -> ChainRow | None:
        """The chain a generation is the root or a step of (or was queued for)."""
        by_step = (
            sa.select(chain_steps.c.chain_id)
            .where(chain_steps.c.generation_id == generation_id)
            .scalar_subquery()
        )
        by_generation = (
            sa.select(generations.c.chain_id)
            .where(generations.c.id == generation_id)
            .scalar_subquery()
        )
        async with self._db.reading() as tx:
            row = await tx.one(
                _SELECT.where(chains.c.id == sa.func.coalesce(by_step, by_generation))
            )
        return None if row is None else _chain(row)

    async def set_chain_thread(self, chain_id: int, thread_id: int | None) -> None:
        """Attach the chain to its thread (None: the thread is gone)."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                sa.update(chains)
                .where(chains.c.id == chain_id)
                .values(thread_id=thread_id, updated_at=self._now())
            )
        if changed != 1:
            raise LookupError(f"no chain {chain_id}")

    async def set_chain_head(self, chain_id: int, generation_id: int) -> None:
        """Move the head (a new result, or Undo). The generation must be a step of the chain."""
        async with self._db.transaction() as tx:
            if await _chain_of_step(tx, generation_id) != chain_id:
                raise ValueError(f"generation {generation_id} is not a step of chain {chain_id}")
            await tx.execute(
                sa.update(chains)
                .where(chains.c.id == chain_id)
                .values(head_generation_id=generation_id, updated_at=self._now())
            )

    async def add_chain_step(
        self, *, chain_id: int, generation_id: int, parent_generation_id: int | None
    ) -> int:
        """Add a generation to the chain's tree below `parent_generation_id`; returns its step
        number (root 0, otherwise parent's + 1) and sets the generation's chain_id, parent_id
        and step. Idempotent for a generation already in this chain. Only the root (already
        added by create_chain) has no parent. Does not move the head."""
        now = self._now()
        s = chain_steps
        async with self._db.transaction() as tx:
            current = await tx.one(
                sa.select(s.c.chain_id, s.c.step).where(s.c.generation_id == generation_id)
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
                sa.select(s.c.id, s.c.step).where(
                    s.c.chain_id == chain_id, s.c.generation_id == parent_generation_id
                )
            )
            if parent is None:
                raise ValueError(
                    f"generation {parent_generation_id} is not a step of chain {chain_id}"
                )
            if not await _generation_exists(tx, generation_id):
                raise ValueError(f"no generation {generation_id}")
            step = int(parent["step"]) + 1
            await tx.execute(
                sa.insert(s).values(
                    chain_id=chain_id, generation_id=generation_id,
                    parent_step_id=int(parent["id"]), step=step, created_at=now,
                )
            )  # fmt: skip
            await tx.execute(
                sa.update(generations)
                .where(generations.c.id == generation_id)
                .values(chain_id=chain_id, parent_id=parent_generation_id, step=step)
            )
            await tx.execute(
                sa.update(chains).where(chains.c.id == chain_id).values(updated_at=now)
            )
        return step

    async def chain_steps(self, chain_id: int) -> list[ChainStepRow]:
        """Every step of a chain (the whole tree), by step number then age."""
        s, p = chain_steps.alias("s"), chain_steps.alias("p")
        async with self._db.reading() as tx:
            rows = await tx.all(
                sa.select(
                    s.c.id, s.c.chain_id, s.c.generation_id, s.c.parent_step_id,
                    p.c.generation_id.label("parent_generation_id"), s.c.step, s.c.created_at,
                )
                .select_from(s.outerjoin(p, p.c.id == s.c.parent_step_id))
                .where(s.c.chain_id == chain_id)
                .order_by(s.c.step, s.c.id)
            )  # fmt: skip
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
