"""Guild templates, user/guild settings, usage and quotas, jobs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.adapters.store import QuotaUse, Store, UsageRow
from tests.unit.adapters.store.conftest import Backend

NOW = datetime(2026, 3, 14, 23, 59, tzinfo=UTC).timestamp()


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open(clock=lambda: NOW)


async def test_guild_templates_are_per_guild_and_upserted(store: Store) -> None:
    await store.save_guild_template(
        guild_id=1, name="Product Shot", description="d1", body='{"a":1}', author_id=7
    )
    await store.save_guild_template(
        guild_id=2, name="product shot", description="other guild", body="{}", author_id=8
    )
    await store.save_guild_template(
        guild_id=1, name="product SHOT", description="d2", body='{"a":2}', author_id=9
    )
    t = await store.get_guild_template(1, "PRODUCT SHOT")
    assert t is not None
    assert (t.name, t.description, t.body, t.author_id) == ("product SHOT", "d2", '{"a":2}', 9)
    assert [x.guild_id for x in await store.list_guild_templates(1)] == [1]
    await store.save_guild_template(
        guild_id=1, name="poster", description="", body="{}", author_id=7
    )
    assert [x.name for x in await store.list_guild_templates(1)] == ["poster", "product SHOT"]
    assert await store.delete_guild_template(1, "Product Shot")
    assert not await store.delete_guild_template(1, "Product Shot")
    assert await store.get_guild_template(1, "product shot") is None
    other = await store.get_guild_template(2, "product shot")
    assert other is not None and other.description == "other guild"


async def test_user_settings_set_and_unset(store: Store) -> None:
    assert await store.get_user_settings(5) == {}
    await store.update_user_settings(5, model="flash", size="2K", private=True, threads=False)
    await store.update_user_settings(6, model="pro")
    assert await store.get_user_settings(5) == {
        "model": "flash", "size": "2K", "private": True, "threads": False,
    }  # fmt: skip
    await store.update_user_settings(5, size=None, aspect="16:9")
    assert await store.get_user_settings(5) == {
        "model": "flash", "aspect": "16:9", "private": True, "threads": False,
    }  # fmt: skip
    assert await store.get_user_settings(6) == {"model": "pro"}
    with pytest.raises(ValueError):
        await store.update_user_settings(5, **{"Bad Key": 1})


async def test_guild_settings(store: Store) -> None:
    await store.update_guild_settings(
        9, daily_images_per_user=20, daily_dollars_per_user=1.5, daily_dollars_guild=None
    )
    assert await store.get_guild_settings(9) == {
        "daily_images_per_user": 20, "daily_dollars_per_user": 1.5,
    }  # fmt: skip
    await store.update_guild_settings(9, daily_images_per_user=None)
    assert await store.get_guild_settings(9) == {"daily_dollars_per_user": 1.5}
    assert await store.get_guild_settings(10) == {}


async def test_usage_by_user_guild_model_and_day(store: Store) -> None:
    pro, flash = "gemini-3-pro-image", "gemini-3.1-flash-image"
    await store.record_usage(user_id=1, guild_id=100, model=pro, images=1, cost=0.134)
    await store.record_usage(user_id=1, guild_id=100, model=pro, images=1, cost=0.24)
    await store.record_usage(user_id=1, guild_id=100, model=flash, images=2, cost=0.134)
    await store.record_usage(user_id=2, guild_id=100, model=pro, images=1, cost=0.134)
    await store.record_usage(user_id=1, guild_id=200, model=pro, images=1, cost=0.134)
    await store.record_usage(user_id=1, guild_id=None, model=pro, images=1, cost=0.134)
    await store.record_usage(
        user_id=1, guild_id=100, model=pro, images=5, cost=1.0, day="2026-02-28"
    )

    today = "2026-03-14"  # the clock's UTC day
    mine = await store.usage_between(user_id=1, guild_id=100, first_day=today, last_day=today)
    # Ordered by model id ("gemini-3-pro…" sorts before "gemini-3.1-…").
    assert [(u.model, u.images) for u in mine] == [(pro, 2), (flash, 2)]
    assert [u.cost for u in mine] == pytest.approx([0.374, 0.134])
    assert all(isinstance(u, UsageRow) for u in mine)
    guild = await store.usage_between(user_id=None, guild_id=100, first_day=today, last_day=today)
    assert [(u.model, u.images) for u in guild] == [(pro, 3), (flash, 2)]
    everywhere = await store.usage_between(
        user_id=1, guild_id=None, first_day=today, last_day=today
    )
    assert [(u.model, u.images) for u in everywhere] == [(pro, 4), (flash, 2)]
    dms = await store.usage_between(user_id=1, guild_id=0, first_day=today, last_day=today)
    assert [(u.model, u.images) for u in dms] == [(pro, 1)]
    month = await store.usage_between(
        user_id=1, guild_id=100, first_day="2026-02-01", last_day="2026-03-31"
    )
    assert [(u.model, u.images) for u in month] == [(pro, 7), (flash, 2)]
    with pytest.raises(ValueError):
        await store.usage_between(user_id=1, guild_id=1, first_day="2026-3-1", last_day=today)
    with pytest.raises(ValueError):
        await store.record_usage(
            user_id=1, guild_id=1, model=pro, images=1, cost=1, day="2026-02-30"
        )


async def test_reserved_today_counts_charged_and_in_flight(store: Store) -> None:
    pro = "gemini-3-pro-image"
    await store.record_usage(user_id=1, guild_id=100, model=pro, images=2, cost=0.5)
    await store.record_usage(user_id=1, guild_id=100, model=pro, images=9, cost=9, day="2026-03-13")

    async def queue(user: int, guild: int | None, estimate: float) -> int:
        return await store.create_generation(
            user_id=user, guild_id=guild, channel_id=1, kind="imagine", spec={}, model=pro,
            size="4K", aspect="1:1", summary="", estimated_cost=estimate,
        )  # fmt: skip

    running = await queue(1, 100, 0.24)
    await store.mark_running(running)
    await queue(1, 100, 0.24)
    await queue(2, 100, 0.134)
    await queue(1, None, 0.1)
    done = await queue(1, 100, 5.0)
    await store.fail_generation(done, status="failed", error_kind="x", error="y")

    use = await store.reserved_today(user_id=1, guild_id=100)
    assert isinstance(use, QuotaUse)
    assert (use.images, use.cost, use.pending_images) == (2, 0.5, 2)
    assert use.pending_cost == pytest.approx(0.48)
    assert use.total_images == 4 and use.total_cost == pytest.approx(0.98)
    guild = await store.reserved_today(user_id=None, guild_id=100)
    assert (guild.images, guild.pending_images) == (2, 3)
    dm = await store.reserved_today(user_id=1, guild_id=0)
    assert (dm.images, dm.pending_images, dm.pending_cost) == (0, 1, pytest.approx(0.1))
    anywhere = await store.reserved_today(user_id=1, guild_id=None)
    assert (anywhere.images, anywhere.pending_images) == (2, 3)
    yesterday = await store.reserved_today(user_id=1, guild_id=100, day="2026-03-13")
    assert (yesterday.images, yesterday.cost) == (9, 9.0)


async def test_jobs_for_restart_recovery(store: Store) -> None:
    gens = [
        await store.create_generation(
            user_id=1,
            guild_id=None,
            channel_id=1,
            kind="imagine",
            spec={},
            model="m",
            size="1K",
            aspect="1:1",
            summary="",
        )
        for _ in range(3)
    ]
    payload = {"channel_id": 1, "progress_message_id": 2, "interaction_token": "t", "created": 3}
    jobs = [await store.create_job(generation_id=g, user_id=1, payload=payload) for g in gens]
    assert [j.id for j in await store.open_jobs()] == jobs
    assert await store.update_job(jobs[0], status="running")
    assert await store.update_job(jobs[1], status="done")
    assert await store.update_job(jobs[2], payload={"progress_message_id": 9})
    assert not await store.update_job(999, status="done")
    with pytest.raises(ValueError):
        await store.update_job(jobs[0], status="exploded")
    open_jobs = await store.open_jobs()
    assert [(j.id, j.status) for j in open_jobs] == [(jobs[0], "running"), (jobs[2], "queued")]
    assert open_jobs[0].payload == payload
    assert open_jobs[1].payload == {"progress_message_id": 9}
    assert open_jobs[0].generation_id == gens[0] and open_jobs[0].created_at == NOW
    assert await store.update_job(jobs[0], status="interrupted")
    job = await store.get_job(jobs[0])
    assert job is not None and job.status == "interrupted" and job.payload == payload
    assert await store.get_job(999) is None
