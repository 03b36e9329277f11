"""Diagnostics for a lag that misses its target (`python -m tests.bench --watchdog --logs DIR`).

Inside the bot process (tests.bench.botproc, with $BENCH_WATCHDOG set): a thread watches a
timestamp the event loop refreshes every 5 ms. While the loop is stuck for more than 50 ms it
prints, every 10 ms, the innermost frames of the loop thread and of every busy thread to
stderr (the bot's log), and it reports each garbage collection over 10 ms. A thread holding
the GIL in one long C call shows up as the busy frame while the loop sits in `select`.
The watchdog itself competes for the GIL: use it to find a cause, not to measure.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any


def _snapshot(stalled_ms: float, loop_thread: int) -> str:
    lines = [f"STALL {stalled_ms:.0f} ms"]
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        stack = traceback.extract_stack(frame)
        if ident != loop_thread and stack[-1].filename.endswith(("threading.py", "queue.py")):
            continue  # an idle worker
        name = "LOOP" if ident == loop_thread else f"t{ident % 10000}"
        where = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack[-4:][::-1])
        lines.append(f"  {name}: {where}")
    return "\n".join(lines)


async def watch_stalls(threshold: float = 0.05) -> None:
    """Run in the bot's loop until cancelled."""
    last = [time.monotonic()]
    loop_thread = threading.get_ident()
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = time.monotonic()
        elif time.monotonic() - gc_started[0] > 0.01:
            took = (time.monotonic() - gc_started[0]) * 1000
            print(f"GC gen {info['generation']} took {took:.0f} ms", file=sys.stderr)

    def watch() -> None:
        while True:
            time.sleep(threshold / 5)
            stalled = time.monotonic() - last[0]
            if stalled > threshold:
                print(_snapshot(stalled * 1000, loop_thread), file=sys.stderr, flush=True)

    gc.callbacks.append(on_gc)
    threading.Thread(target=watch, daemon=True, name="stall-watchdog").start()
    while True:
        last[0] = time.monotonic()
        await asyncio.sleep(0.005)
