"""The six measurements. Each starts its own world (fresh fakes, a fresh bot process), drives
simulated users through the fake Discord, and returns a JSON-able dict with its figures and a
list of `checks` (figure vs target)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bot.config import TOKENS_PER_INPUT_IMAGE, Settings
from tests.bench.stats import check, median, summary
from tests.bench.world import READY_LINE, BotProcess, World, world
from tests.fakes.discord_driver import FakeInteraction, FakeUser

MIB = 1024 * 1024


@dataclass(frozen=True)
class Options:
    latency: float = 5.0  # the fake model's latency, seconds
    quick: bool = False
    runs: int = 3  # overhead: jobs per size (the median is quoted)
    overhead_sizes: tuple[str, ...] = ("1K", "4K")
    ack_count: int = 100
    ack_users: int = 20
    saturation_c: int = 4
    saturation_jobs: int = 24
    saturation_users: int = 4
    lag_jobs: int = 8
    lag_size: str = "4K"
    memory_jobs: int = 20
    memory_size: str = "4K"
    chain_steps: int = 10
    chain_latency: float = 0.5  # at most; bytes and tokens do not depend on it
    kill_jobs: int = 12
    log_dir: Path | None = None  # keep each scenario's bot log there
    watchdog: bool = False  # stall stacks in those logs (see tests.bench.stalls)

    @classmethod
    def quick_run(cls, latency: float | None = None) -> Options:
        """Small counts for a smoke run (about a minute)."""
        return cls(
            latency=0.5 if latency is None else latency,
            quick=True,
            runs=1,
            ack_count=10,
            ack_users=5,
            saturation_c=2,
            saturation_jobs=6,
            saturation_users=2,
            lag_jobs=2,
            memory_jobs=4,
            chain_steps=5,
            kill_jobs=4,
        )

    def with_latency(self, latency: float) -> Options:
        return replace(self, latency=latency)


@dataclass
class Context:
    options: Options
    warm: Callable[[str, str], None]  # pre-renders the fake's image for (size, aspect)
    postgres: Callable[[], Awaitable[str]] | None = None  # a fresh database's URL

    def world(self, name: str, **kwargs: Any) -> AbstractAsyncContextManager[World]:
        """A fresh world for scenario `name`, with the run's diagnostics options."""
        log = self.options.log_dir / f"{name}.log" if self.options.log_dir else None
        return world(watchdog=self.options.watchdog, log_to=log, **kwargs)

    async def backend(self, name: str) -> dict[str, str]:
        """The settings that put a world on `name` ("sqlite": the default file)."""
        if name == "sqlite":
            return {}
        if self.postgres is None:
            raise RuntimeError("no PostgreSQL server for this run")
        return {"database_url": await self.postgres()}

    async def prewarm(self, *sizes: str) -> None:
        for size in sizes:
            await asyncio.to_thread(self.warm, size, "1:1")


Scenario = Callable[[Context], Awaitable[dict[str, Any]]]


# ------------------------------------------------------------------------------ helpers


async def warm_up(w: World, sizes: tuple[str, ...] = ("1K",)) -> None:
    """One job per size with no model latency: first-use imports and caches in the bot."""
    saved = w.gemini.latency
    w.gemini.latency = 0.0
    user = w.discord.user("admin")
    for size in sizes:
        ix = await user.slash("imagine", prompt=f"warm-up {size}", size=size)
        await w.result(ix, 120)
    w.gemini.latency = saved
    w.gemini.max_in_flight = w.gemini.in_flight


def users(w: World, count: int) -> list[FakeUser]:
    names = sorted(
        u.username for u in w.discord.state.users.values() if u.username.startswith("user")
    )
    if len(names) < count:
        raise ValueError(f"world has {len(names)} extra members, {count} needed")
    return [w.discord.user(n) for n in names[:count]]


async def burst(people: list[FakeUser], jobs: int, size: str, label: str) -> list[FakeInteraction]:
    """`jobs` /imagine interactions, round-robin over people, sent back to back."""
    return [
        await people[i % len(people)].slash("imagine", prompt=f"{label} #{i}", size=size)
        for i in range(jobs)
    ]


def result_file(w: World, ix: FakeInteraction) -> dict[str, Any]:
    msg = w.discord.state.messages.get(ix.record.original_id or 0)
    for f in msg.files if msg is not None else []:
        if f.filename.startswith("nano-banana-"):
            return {"filename": f.filename, "bytes": f.size}
    return {}


def job_timeout(options: Options, jobs: int = 1, concurrency: int = 1) -> float:
    waves = -(-jobs // concurrency)
    return waves * (options.latency + 10) + 60


# ------------------------------------------------------------------------------ scenarios


OVERHEAD_TARGETS = {"1K": 1.05, "4K": 1.10}
PG_OVERHEAD_MARGIN = 0.02  # PostgreSQL's ratios within 2 % of SQLite's


async def overhead(ctx: Context) -> dict[str, Any]:
    """End-to-end time of one job divided by the model latency, per size, on SQLite and on
    PostgreSQL."""
    o = ctx.options
    out: dict[str, Any] = {"latency_s": o.latency, "runs_per_size": o.runs, "backends": {}}
    checks = []
    for backend in BACKENDS:
        sizes = await _overhead_on(ctx, backend)
        out["backends"][backend] = sizes
        for size, figures in sizes.items():
            ratio = figures["ratio_median"]
            checks.append(
                check(f"overhead ratio {size} ({backend})", ratio, OVERHEAD_TARGETS.get(size, 1.15))
            )
    base = out["backends"]["sqlite"]
    for size, figures in out["backends"]["postgresql"].items():
        against = base[size]["ratio_median"]
        checks.append(
            check(
                f"PostgreSQL/SQLite ratio {size}",
                round(figures["ratio_median"] / against, 4),
                1 + PG_OVERHEAD_MARGIN,
            )
        )
    out["sizes"] = base  # the default backend's figures, where earlier runs had them
    out["checks"] = checks
    return out


async def _overhead_on(ctx: Context, backend: str) -> dict[str, Any]:
    o = ctx.options
    sizes: dict[str, Any] = {}
    async with ctx.world(f"overhead-{backend}", **await ctx.backend(backend)) as w:
        await ctx.prewarm(*o.overhead_sizes)
        await warm_up(w, o.overhead_sizes)
        alice = w.discord.user("alice")
        for size in o.overhead_sizes:
            runs: list[dict[str, Any]] = []
            for i in range(o.runs):
                w.gemini.latency = o.latency
                ix = await alice.slash("imagine", prompt=f"overhead {size} #{i}", size=size)
                done = await w.result(ix, job_timeout(o))
                calls = w.gemini.timings_since(ix.record.created)
                e2e = done - ix.record.created
                fake_work = sum(c.fake_work for c in calls)
                model = sum(c.latency for c in calls)
                runs.append(
                    {
                        "e2e_s": round(e2e, 4),
                        "fake_work_s": round(fake_work, 4),
                        "model_s": model,
                        "bot_overhead_s": round(e2e - fake_work - model, 4),
                        "ratio": round((e2e - fake_work) / o.latency, 4),
                        "ack_s": round(ix.record.ack_latency or 0.0, 4),
                        "gemini_calls": len(calls),
                        "posted": result_file(w, ix),
                    }
                )
            sizes[size] = {
                "ratio_median": round(median([r["ratio"] for r in runs]), 4),
                "e2e_median_s": round(median([r["e2e_s"] for r in runs]), 4),
                "fake_work_median_s": round(median([r["fake_work_s"] for r in runs]), 4),
                "bot_overhead_median_s": round(median([r["bot_overhead_s"] for r in runs]), 4),
                "runs": runs,
            }
    return sizes


async def acknowledgements(ctx: Context) -> dict[str, Any]:
    """100 interactions at once, on each backend: how fast each is acknowledged (each one is
    recorded in the database together with its acknowledgement)."""
    out: dict[str, Any] = {"backends": {}}
    checks = []
    for backend in BACKENDS:
        figures = await _acks_on(ctx, backend)
        out["backends"][backend] = figures
        checks += [
            check(f"ack p99 ({backend})", figures["ack_s"]["p99"], 0.5, unit="s"),
            check(f"ack max ({backend})", figures["ack_s"]["max"], 3.0, unit="s"),
            check(f"interactions failed ({backend})", figures["failed"], 0),
        ]
    out.update({k: v for k, v in out["backends"]["sqlite"].items() if k != "checks"})
    out["checks"] = checks
    return out


async def _acks_on(ctx: Context, backend: str) -> dict[str, Any]:
    o = ctx.options
    settings = await ctx.backend(backend)
    async with ctx.world(f"ack-{backend}", lag=True, extra_members=o.ack_users, **settings) as w:
        await warm_up(w)
        people = users(w, o.ack_users)
        w.gemini.latency = o.latency
        first = len(w.discord.ack_latencies)
        started = time.monotonic()
        ixs = await burst(people, o.ack_count, "1K", "burst")
        sent = time.monotonic() - started
        await w.wait(
            lambda: all(ix.record.acked or ix.record.failed for ix in ixs), 30, "every ack"
        )
        acked_by = max(ix.record.created + (ix.record.ack_latency or 0) for ix in ixs) - started
        latencies = list(w.discord.ack_latencies[first:])
        failed = sum(1 for ix in ixs if ix.record.failed)
        window_end = time.monotonic()
        await w.bot.stop()
        lag = window_lag(w, started, window_end)
    return {
        "interactions": o.ack_count,
        "users": o.ack_users,
        "send_s": round(sent, 4),
        "all_acked_after_s": round(acked_by, 4),
        "ack_s": summary(latencies),
        "failed": failed,
        "loop_lag_during_burst_s": lag,
    }


async def saturation(ctx: Context) -> dict[str, Any]:
    """Many more jobs than the concurrency limit C: throughput vs the ideal C / latency, with
    one process on SQLite."""
    return await _saturate(ctx, "saturation", processes=1, target=0.97, settings={})


async def saturation_two_processes(ctx: Context) -> dict[str, Any]:
    """The same with two bot processes (one gateway shard each) on PostgreSQL, sharing one
    global limit: any process runs any job, and never more than C at Gemini."""
    return await _saturate(
        ctx, "saturation-2p", processes=2, target=0.95, settings=await ctx.backend("postgresql")
    )


async def _saturate(
    ctx: Context, name: str, *, processes: int, target: float, settings: dict[str, str]
) -> dict[str, Any]:
    o = ctx.options
    c = o.saturation_c
    async with ctx.world(
        name,
        max_concurrent_jobs=c,
        extra_members=o.saturation_users,
        processes=processes,
        **settings,
    ) as w:
        await warm_up(w)
        people = users(w, o.saturation_users)
        w.gemini.latency = o.latency
        ixs = await burst(people, o.saturation_jobs, "1K", "saturate")
        done = await w.results(ixs, job_timeout(o, o.saturation_jobs, c))
        t0 = min(ix.record.created for ix in ixs)
        makespan = max(done) - t0
        calls = w.gemini.timings_since(t0)
        service = sum(t.service for t in calls) / len(calls)
        max_in_flight = w.gemini.max_in_flight
        where = _where_time_went(t0, calls, max(done), c)
        ran_by = {bot.name: bot.log_text().count("generation") for bot in w.bots}
    achieved = o.saturation_jobs / makespan
    efficiency = achieved / (c / service)
    return {
        "processes": processes,
        "backend": "postgresql" if settings else "sqlite",
        "concurrency": c,
        "jobs": o.saturation_jobs,
        "users": o.saturation_users,
        "latency_s": o.latency,
        "makespan_s": round(makespan, 4),
        "ideal_makespan_s": round(o.saturation_jobs / c * service, 4),
        "model_time_per_call_s": round(service, 4),
        "jobs_per_s": round(achieved, 4),
        "efficiency": round(efficiency, 4),
        "efficiency_vs_configured_latency": round(achieved / (c / o.latency), 4),
        "gemini_calls": len(calls),
        "gemini_max_in_flight": max_in_flight,
        "log_lines_per_process": ran_by,
        **where,
        "checks": [
            check("saturation efficiency", efficiency, target, higher_is_better=True),
            check("gemini max in flight", max_in_flight, c),
        ],
    }


def _where_time_went(t0: float, calls: list[Any], last_result: float, c: int) -> dict[str, float]:
    """What the makespan holds besides model time: the wait before the first C calls, the
    idle time of a slot between one call's answer and the next call, and the tail after the
    last answer (for diagnosing a missed efficiency)."""
    ordered = sorted(calls, key=lambda t: t.started)
    starts = [t.started for t in ordered]
    ends = sorted(t.finished for t in ordered)
    # The k-th call after the first C starts in the slot the (k-C)-th answer freed.
    gaps = [start - end for start, end in zip(starts[c:], ends, strict=False)]
    return {
        "first_calls_after_s": round(starts[min(c, len(starts)) - 1] - t0, 4),
        "slot_gap_median_s": round(statistics.median(gaps), 4) if gaps else 0.0,
        "slot_gap_max_s": round(max(gaps), 4) if gaps else 0.0,
        "tail_after_last_answer_s": round(last_result - ends[-1], 4),
    }


async def kill_9(ctx: Context) -> dict[str, Any]:
    """kill -9 with jobs queued and running, then a new process on the same database: how
    many acknowledged requests never got their result."""
    o = ctx.options
    jobs = o.kill_jobs
    settings = {"max_concurrent_jobs": 2, "job_lease_seconds": 3}
    async with ctx.world("kill", extra_members=4, **settings) as w:
        await warm_up(w)
        people = users(w, 4)
        w.gemini.latency = max(o.latency, 2.0)
        ixs = await burst(people, jobs, "1K", "killed")
        await w.wait(lambda: all(ix.record.acked for ix in ixs), 30, "every ack")
        await w.wait(lambda: w.gemini.in_flight >= 2, 30, "two jobs at Gemini")
        killed_at = time.monotonic()
        await w.bot.kill()
        w.discord.reset_ready()
        restarted = BotProcess(w.bot.env, w.bot.workdir, name="restarted")
        w.bots.append(restarted)
        w.gemini.latency = 0.5
        await restarted.start()
        await w.wait(lambda: READY_LINE in restarted.log_text(), 60, "the new process")
        got = 0
        for ix in ixs:
            with contextlib.suppress(TimeoutError, RuntimeError):
                await w.result(ix, 60)
                got += 1
        recovered_after = time.monotonic() - killed_at
    lost = jobs - got
    return {
        "jobs": jobs,
        "answered": got,
        "lost": lost,
        "all_answered_after_kill_s": round(recovered_after, 2),
        "checks": [check("jobs lost after kill -9", lost, 0)],
    }


def window_lag(w: World, start: float, end: float) -> dict[str, float]:
    """Lag statistics of the bot's loop between two monotonic times (bot already stopped)."""
    starts, lags = w.bot.lag_samples()
    inside = [lag for s, lag in zip(starts, lags, strict=True) if start <= s <= end]
    return summary(inside)


async def loop_lag(ctx: Context) -> dict[str, Any]:
    """Event-loop lag while 4K results are fitted and posted."""
    o = ctx.options
    async with ctx.world("lag", lag=True, extra_members=4) as w:
        await ctx.prewarm(o.lag_size)
        await warm_up(w, ("1K", o.lag_size))
        people = users(w, 4)
        w.gemini.latency = o.latency
        started = time.monotonic()
        ixs = await burst(people, o.lag_jobs, o.lag_size, "lag")
        done = await w.results(ixs, job_timeout(o, o.lag_jobs, 4))
        calls = w.gemini.timings_since(started)
        first_answer = min(t.finished for t in calls)
        await w.bot.stop()
        fitting = window_lag(w, first_answer, max(done))
        whole = window_lag(w, started, max(done))
    return {
        "jobs": o.lag_jobs,
        "size": o.lag_size,
        "sampler_period_s": 0.01,
        "window_s": round(max(done) - first_answer, 4),
        "lag_while_fitting_s": fitting,
        "lag_whole_run_s": whole,
        "checks": [
            check("loop lag max (fit+post)", fitting["max"], 0.1, unit="s"),
        ],
    }


async def memory(ctx: Context) -> dict[str, Any]:
    """Peak RSS of the bot process with N concurrent 4K jobs (fakes not counted)."""
    o = ctx.options
    n = o.memory_jobs
    per_user = max(1, -(-n // 4))
    settings = {
        "max_concurrent_jobs": n,
        "max_running_per_user": per_user,
        "max_queued_per_user": max(10, per_user),
        "gemini_max_in_flight": n,
    }
    async with ctx.world("memory", extra_members=4, **settings) as w:
        await ctx.prewarm(o.memory_size)
        await warm_up(w)
        baseline = w.bot.status()
        peak_rss = 0
        sampling = True

        async def sample() -> None:
            nonlocal peak_rss
            while sampling:
                peak_rss = max(peak_rss, w.bot.status().get("VmRSS", 0))
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        people = users(w, 4)
        w.gemini.latency = o.latency
        ixs = await burst(people, n, o.memory_size, "memory")
        await w.results(ixs, job_timeout(o, n, n) + n * 5)
        sampling = False
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        final = w.bot.status()
        max_in_flight = w.gemini.max_in_flight
    hwm_mib = final.get("VmHWM", 0) / 1024
    return {
        "jobs": n,
        "size": o.memory_size,
        "gemini_max_in_flight": max_in_flight,
        "baseline_rss_mib": round(baseline.get("VmRSS", 0) / 1024, 1),
        "peak_rss_sampled_mib": round(peak_rss / 1024, 1),
        "peak_rss_hwm_mib": round(hwm_mib, 1),
        "checks": [check(f"peak RSS, {n} x {o.memory_size}", hwm_mib, 600, unit="MiB")],
    }


def request_cost(body: dict[str, Any], raw_bytes: int) -> dict[str, Any]:
    """Bytes, turns, images and an estimate of input tokens (4 chars a token, 560 an image:
    the bot's own estimate rule) of one generateContent request."""
    text = 0
    images = 0
    turns = body.get("contents") or []
    for content in turns:
        for part in content.get("parts") or []:
            if part.get("thought"):
                continue
            if "text" in part:
                text += len(part["text"])
            if "inlineData" in part or "inline_data" in part:
                images += 1
    return {
        "request_bytes": raw_bytes,
        "turns": len(turns),
        "images": images,
        "token_estimate": (text + 3) // 4 + images * TOKENS_PER_INPUT_IMAGE,
    }


async def chain(ctx: Context) -> dict[str, Any]:
    """Request size of steps 1..N of one chain: the history window keeps it bounded."""
    o = ctx.options
    latency = min(o.latency, o.chain_latency)
    steps: list[dict[str, Any]] = []
    async with ctx.world("chain") as w:
        await warm_up(w)
        w.gemini.latency = latency
        alice = w.discord.user("alice")
        ix = await alice.slash("imagine", prompt="a lighthouse on a cliff at dusk")
        await w.result(ix, job_timeout(o))
        root = ix.record.original_id
        assert root is not None
        thread = root  # a thread made from a message has that message's id
        for k in range(1, o.chain_steps + 1):
            since = time.monotonic()
            text = f"step {k}: add one more seagull and warm the light a little"
            if k == 1:
                await alice.reply(root, text)
            else:
                await alice.say(thread, text)
            await w.wait(
                lambda k=k: len(w.clock.results_in(thread)) >= k,
                job_timeout(o),
                f"chain step {k}",
            )
            call = w.gemini.timings_since(since)[-1].request
            raw = int(call.headers.get("Content-Length") or 0) or len(json.dumps(call.body))
            steps.append({"step": k, **request_cost(call.normalized, raw)})
    by_step = {s["step"]: s for s in steps}
    quoted = [k for k in (1, 5, 10) if k in by_step] or [steps[-1]["step"]]
    last = steps[-1]
    # once the window is full the request stops growing: compare the last step with step 5
    plateau = by_step[min(5, max(1, last["step"] - 1))]
    growth = last["request_bytes"] / plateau["request_bytes"]
    return {
        "steps_run": len(steps),
        "history_window": Settings.model_fields["chain_history_steps"].default,
        "model_latency_s": latency,
        "quoted_steps": [by_step[k] for k in quoted],
        "steps": steps,
        "growth_last_vs_middle": round(growth, 4),
        "checks": [
            check(
                f"request bytes step {last['step']} / step {plateau['step']}",
                growth,
                1.10,
            )
        ],
    }


BACKENDS = ("sqlite", "postgresql")

SCENARIOS: dict[str, Scenario] = {
    "overhead": overhead,
    "ack": acknowledgements,
    "saturation": saturation,
    "saturation2": saturation_two_processes,
    "kill": kill_9,
    "lag": loop_lag,
    "memory": memory,
    "chain": chain,
}
