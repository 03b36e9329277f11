"""The benchmark's outputs: a table for people, JSON for machines."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# One headline row per scenario beside its checks: (label, path into the scenario's dict, unit).
DETAILS: dict[str, list[tuple[str, tuple[str, ...], str]]] = {
    "overhead": [
        ("1K e2e (median)", ("sizes", "1K", "e2e_median_s"), "s"),
        ("1K bot overhead (median)", ("sizes", "1K", "bot_overhead_median_s"), "s"),
        ("4K e2e (median)", ("sizes", "4K", "e2e_median_s"), "s"),
        ("4K fake's own work, subtracted", ("sizes", "4K", "fake_work_median_s"), "s"),
        ("4K bot overhead (median)", ("sizes", "4K", "bot_overhead_median_s"), "s"),
    ],
    "ack": [
        ("ack p50", ("ack_s", "p50"), "s"),
        ("all acknowledged after", ("all_acked_after_s",), "s"),
        ("loop lag max during burst", ("loop_lag_during_burst_s", "max"), "s"),
    ],
    "saturation": [
        ("jobs per second", ("jobs_per_s",), "/s"),
        ("makespan", ("makespan_s",), "s"),
        ("ideal makespan (jobs / C x model time)", ("ideal_makespan_s",), "s"),
        ("vs configured latency only", ("efficiency_vs_configured_latency",), ""),
    ],
    "saturation2": [
        ("jobs per second", ("jobs_per_s",), "/s"),
        ("makespan", ("makespan_s",), "s"),
        ("ideal makespan (jobs / C x model time)", ("ideal_makespan_s",), "s"),
    ],
    "kill": [("all answered after the kill", ("all_answered_after_kill_s",), "s")],
    "lag": [("loop lag p99 (fit+post)", ("lag_while_fitting_s", "p99"), "s")],
    "memory": [
        ("baseline RSS (idle)", ("baseline_rss_mib",), "MiB"),
        ("peak RSS (sampled)", ("peak_rss_sampled_mib",), "MiB"),
    ],
    "chain": [],
}


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        text = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(scenario, figure, value, target, verdict) rows."""
    out: list[tuple[str, str, str, str, str]] = []
    for name, data in results.items():
        if "error" in data:
            out.append((name, "scenario failed", data["error"][:60], "", "ERROR"))
            continue
        for c in data.get("checks", []):
            target = f"{c['op']} {_fmt(c['target'], c['unit'])}"
            verdict = "ok" if c["ok"] else "MISS"
            out.append((name, c["name"], _fmt(c["value"], c["unit"]), target, verdict))
        for label, path, unit in DETAILS.get(name, []):
            value = _dig(data, path)
            if value is not None:
                out.append((name, label, _fmt(value, unit), "", ""))
        if name == "chain":
            for step in data.get("quoted_steps", []):
                out.append(
                    (
                        name,
                        f"step {step['step']}: bytes / tokens / turns",
                        f"{step['request_bytes']:,} / {step['token_estimate']:,} / {step['turns']}",
                        "",
                        "",
                    )
                )
    return out


def table(results: dict[str, Any]) -> str:
    header = ("scenario", "figure", "value", "target", "")
    body = rows(results)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = []
    for i, r in enumerate([header, *body]):
        lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(r)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def all_checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"scenario": n, **c} for n, d in results.items() for c in d.get("checks", [])]


def write_json(path: Path, meta: dict[str, Any], results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    checks = all_checks(results)
    document = {
        "meta": meta,
        "results": results,
        "checks": checks,
        "all_ok": all(c["ok"] for c in checks) and not any("error" in d for d in results.values()),
    }
    path.write_text(json.dumps(_clean(document), indent=2, allow_nan=False) + "\n")


def _clean(value: Any) -> Any:
    """NaN (a figure with no samples) becomes null: strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
