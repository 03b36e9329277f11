"""Nothing lost or mixed up: concurrent writers, close/reopen, a process killed mid-write."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.store import Store
from tests.unit.adapters.store.conftest import Backend

ROOT = Path(__file__).resolve().parents[4]
MODEL = "gemini-3-pro-image"


def _generation_args(user: int, inputs: list[str]) -> dict[str, Any]:
    return {
        "user_id": user, "guild_id": 1, "channel_id": 2, "kind": "imagine",
        "spec": {"subject": f"user {user}"}, "model": MODEL, "size": "1K", "aspect": "1:1",
        "summary": f"user {user}", "input_images": inputs,
    }  # fmt: skip


def _finish_args(sha: str) -> dict[str, Any]:
    return {
        "output_image": sha, "output_mime": "image/png", "model_text": "", "model_content": None,
        "prompt_tokens": 1, "output_tokens": 2, "thoughts_tokens": 3, "cost": 0.134,
        "model_version": None, "seconds": 1.0,
    }  # fmt: skip


async def test_pragmas(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "bot.db")
    try:
        async with store.database.reading() as tx:
            assert str(await tx.scalar("PRAGMA journal_mode")).lower() == "wal"
            assert await tx.scalar("PRAGMA foreign_keys") == 1
            assert int(await tx.scalar("PRAGMA busy_timeout")) >= 5000
    finally:
        await store.close()


async def test_fifty_concurrent_writers(backend: Backend) -> None:
    store = await backend.open()

    async def writer(i: int) -> tuple[int, str]:
        user = 1000 + i % 5
        sha = await store.put_image(f"image {i} ".encode() * 500, "image/png")
        gen = await store.create_generation(**_generation_args(user, [sha]))
        await store.create_job(generation_id=gen, user_id=user, payload={"i": i})
        assert await store.mark_running(gen)
        assert await store.finish_generation(gen, **_finish_args(sha))
        await store.record_usage(user_id=user, guild_id=1, model=MODEL, images=1, cost=0.134)
        if i < 5:
            await store.save_anchor(
                owner_id=user, name="anchor", kind="face", note=str(i), image_sha=sha, width=1,
                height=1,
            )  # fmt: skip
        await store.update_user_settings(user, **{f"k{i}": i})
        return gen, sha

    try:
        results = await asyncio.gather(*(writer(i) for i in range(50)))
        assert len({gen for gen, _ in results}) == 50
        for i, (gen, sha) in enumerate(results):
            row = await store.get_generation(gen)
            assert row is not None and row.status == "done"
            assert row.user_id == 1000 + i % 5 and row.input_images == [sha]
            assert await store.get_image(sha) == (f"image {i} ".encode() * 500, "image/png")
        for u in range(5):
            usage = await store.usage_between(
                user_id=1000 + u, guild_id=1, first_day="2000-01-01", last_day="2100-01-01"
            )
            assert [(x.images, round(x.cost, 3)) for x in usage] == [(10, 1.34)]
            anchor = await store.get_anchor(1000 + u, "anchor")
            assert anchor is not None and anchor.note == str(u)
            settings = await store.get_user_settings(1000 + u)
            assert settings == {f"k{i}": i for i in range(u, 50, 5)}
        assert len(await store.open_jobs()) == 50
        assert await store.database.integrity_check() == ["ok"]
    finally:
        await store.close()


async def test_two_processes_worth_of_connections_do_not_lose_updates(backend: Backend) -> None:
    """Two stores on one database (two bot processes on PostgreSQL, or a CLI render beside
    the bot on SQLite, serialised by its lock and busy timeout): no update is lost."""
    first = await backend.open()
    second = await backend.open()
    try:
        await asyncio.gather(
            *(
                store.record_usage(user_id=1, guild_id=1, model=MODEL, images=1, cost=0.5)
                for store in (first, second)
                for _ in range(25)
            )
        )
        usage = await first.usage_between(
            user_id=1, guild_id=1, first_day="2000-01-01", last_day="2100-01-01"
        )
        assert [(u.images, u.cost) for u in usage] == [(50, 25.0)]
    finally:
        await first.close()
        await second.close()


async def test_close_and_reopen_keeps_everything(backend: Backend) -> None:
    store = await backend.open()
    sha = await store.put_image(b"face", "image/png")
    out = await store.put_image(b"out", "image/webp")
    root = await store.create_generation(**_generation_args(7, [sha]))
    await store.finish_generation(
        root,
        **{
            **_finish_args(out),
            "model_content": {
                "role": "model",
                "parts": [{"text": "t", "thought_signature": "c2ln"}],
            },
        },
    )
    await store.set_generation_message(root, message_id=70, channel_id=2, public=True)
    chain = await store.create_chain(
        root_generation_id=root, guild_id=1, channel_id=2, thread_id=70, owner_id=7
    )
    step = await store.create_generation(**_generation_args(7, []))
    await store.add_chain_step(chain_id=chain, generation_id=step, parent_generation_id=root)
    job = await store.create_job(generation_id=step, user_id=7, payload={"token": "x"})
    await store.save_anchor(
        owner_id=7, name="me", kind="face", note="n", image_sha=sha, width=2, height=2
    )
    await store.save_guild_template(guild_id=1, name="t", description="d", body="{}", author_id=7)
    await store.update_user_settings(7, model="flash")
    await store.update_guild_settings(1, daily_images_per_user=3)
    await store.record_usage(user_id=7, guild_id=1, model=MODEL, images=1, cost=0.1)

    async def snapshot(s: Store) -> list[Any]:
        return [
            await s.get_generation(root), await s.get_generation(step),
            await s.generation_by_message(70), await s.get_chain(chain),
            await s.chain_by_thread(70), await s.chain_steps(chain),
            await s.chain_lineage(step, 5), await s.get_job(job), await s.open_jobs(),
            await s.list_anchors(7), await s.list_guild_templates(1),
            await s.get_user_settings(7), await s.get_guild_settings(1),
            await s.usage_between(user_id=7, guild_id=1, first_day="2000-01-01",
                                  last_day="2100-01-01"),
            await s.get_image(sha), await s.get_image(out),
            await s.unfinished_generations(), await s.recent_generations(7),
        ]  # fmt: skip

    before = await snapshot(store)
    await store.close()
    await store.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):  # and a closed store says so
        await store.get_user_settings(7)
    if backend.is_sqlite:  # the WAL was folded into the main file: the .db alone holds all
        wal = backend.path.parent / "bot.db-wal"
        assert not wal.exists() or wal.stat().st_size == 0
    reopened = await backend.open()
    try:
        assert await snapshot(reopened) == before
        assert all(item not in (None, [], {}) for item in before)
    finally:
        await reopened.close()


# The writer announces each big transaction ("tx") before it starts, so the parent can kill it
# a few milliseconds later: most kills land inside a transaction, others inside a file write.
_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from bot.adapters.store import Store

    async def main(path):
        store = await Store.open(Path(path))
        i = 0
        while True:
            shas = [await store.put_image(f"{i}-{k} ".encode() * 3000, "image/png")
                    for k in range(3)]
            print("tx", flush=True)
            gen = await store.create_generation(
                user_id=1, guild_id=1, channel_id=2, kind="imagine", spec={"i": i},
                model="m", size="1K", aspect="1:1", summary=str(i), input_images=shas * 100)
            await store.finish_generation(
                gen, output_image=shas[0], output_mime="image/png", model_text="",
                model_content=None, prompt_tokens=1, output_tokens=1, thoughts_tokens=1,
                cost=0.1, model_version=None, seconds=0.1)
            await store.update_user_settings(1, last=i)
            print("done", flush=True)
            i += 1

    asyncio.run(main(sys.argv[1]))
    """
)
INPUTS_PER_GENERATION = 300


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
async def test_killed_mid_write_leaves_a_sound_database(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    committed = 0  # iterations the writers reported done, over all rounds
    for round_, (iterations, delay) in enumerate([(2, 0.002), (3, 0.0), (1, 0.006), (2, 0.012)]):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, str(path),
            stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            done = 0
            while True:
                line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
                assert line, f"the writer died early in round {round_}"
                if line.strip() == b"done":
                    done += 1
                elif done >= iterations:  # the next big transaction is starting: kill it
                    await asyncio.sleep(delay)
                    break
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        committed += iterations

        with sqlite3.connect(path) as conn:  # a plain connection, before the store touches it
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.close()

        store = await Store.open(path)
        try:
            assert await store.database.integrity_check() == ["ok"]
            assert await store.database.foreign_key_violations() == 0
            async with store.database.reading() as tx:
                gens = await tx.all("SELECT id, status FROM generations ORDER BY id")
                inputs = await tx.all(
                    "SELECT generation_id, COUNT(*) AS n FROM generation_images"
                    " GROUP BY generation_id"
                )
                shas = [r[0] for r in await tx.all("SELECT sha256 FROM images")]
            # Every reported iteration is there, and every transaction is all or nothing.
            assert sum(1 for g in gens if g["status"] == "done") >= committed
            assert {g["status"] for g in gens} <= {"queued", "done"}
            assert {r["n"] for r in inputs} == {INPUTS_PER_GENERATION}
            assert len(inputs) == len(gens)
            for sha in shas:  # a row is written after its file: no row without bytes
                assert await store.get_image(sha) is not None
            assert (await store.get_user_settings(1))["last"] >= iterations - 1
        finally:
            await store.close()
