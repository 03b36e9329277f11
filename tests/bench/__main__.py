"""`python -m tests.bench` (or `make bench`): the bot's own overhead, responsiveness and memory.

Starts the loopback fake Discord and fake Gemini in this process, runs the real bot as a
subprocess pointed at them, drives simulated users through the fake Discord, prints a table
and writes tests/bench/results/latest.json. See tests/bench/RESULTS.md for what each figure means and the
figures from the reference machine. Machines are noisy: medians and ratios, not single runs.

    python -m tests.bench                  # everything, ~4 minutes on 2 cores
    python -m tests.bench --quick          # small counts, a smoke run
    python -m tests.bench --only lag,memory --latency 3
    python -m tests.bench --only lag --logs /tmp/bench-logs --watchdog   # why is the loop stalling?
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.bench.fakes import cached_renders
from tests.bench.report import table, write_json
from tests.bench.scenarios import SCENARIOS, Context, Options
from tests.support.postgres import running_postgres

NEEDS_POSTGRES = {"overhead", "ack", "saturation2"}

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"


async def run(
    options: Options, only: list[str] | None = None, *, echo: bool = False
) -> dict[str, Any]:
    """Run the chosen scenarios (all by default) and return {name: figures}.

    A scenario that fails is reported as {"error": ...} and the others still run."""
    names = only or list(SCENARIOS)
    results: dict[str, Any] = {}
    with cached_renders() as warm, contextlib.ExitStack() as stack:
        postgres = None
        if set(names) & NEEDS_POSTGRES:
            postgres = stack.enter_context(running_postgres()).create_database
        ctx = Context(options, warm, postgres)
        for name in names:
            if echo:
                print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                results[name] = await SCENARIOS[name](ctx)
            except Exception as exc:
                detail = "".join(traceback.format_exception_only(exc)).strip()
                results[name] = {"error": detail, "checks": []}
                if echo:
                    traceback.print_exc()
            results[name]["duration_s"] = round(time.monotonic() - started, 2)
    return results


def meta(options: Options, argv: list[str], duration: float) -> dict[str, Any]:
    import PIL

    return {
        "command": "python -m tests.bench " + " ".join(argv),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": round(duration, 1),
        "latency_s": options.latency,
        "quick": options.quick,
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument(
        "--latency",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the fake model's latency (default 5, or 0.5 with --quick)",
    )
    parser.add_argument(
        "--only",
        default=None,
        metavar="NAME[,NAME]",
        help=f"run only these scenarios: {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    parser.add_argument(
        "--logs",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep each scenario's bot log in DIR (NAME.log)",
    )
    parser.add_argument(
        "--watchdog",
        action="store_true",
        help="diagnostics: stall stacks in the bot logs (use with --logs; skews timings)",
    )
    args = parser.parse_args(argv)
    if args.only:
        args.only = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in args.only if n not in SCENARIOS]
        if unknown:
            parser.error(
                f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
            )
    if args.latency is not None and args.latency <= 0:
        parser.error("--latency must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    options = Options.quick_run(args.latency) if args.quick else Options()
    if args.latency is not None:
        options = options.with_latency(args.latency)
    options = replace(options, log_dir=args.logs, watchdog=args.watchdog)
    started = time.monotonic()
    results = asyncio.run(run(options, args.only, echo=True))
    info = meta(options, argv, time.monotonic() - started)
    write_json(args.out, info, results)
    print(table(results))
    checks = [c for d in results.values() for c in d.get("checks", [])]
    met = sum(1 for c in checks if c["ok"])
    print(f"\n{met} of {len(checks)} targets met in {info['duration_s']} s; JSON: {args.out}")
    if options.quick:
        print("(--quick: small counts and a short latency; the targets are for the default run)")
    return 1 if any("error" in d for d in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
