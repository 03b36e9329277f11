"""Smoke test of the benchmark (tests/bench/): its real code on tiny numbers, and the JSON it writes.

No timing assertions: machines are noisy, and the figures belong in tests/bench/RESULTS.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from tests.bench.__main__ import meta, parse_args, run
from tests.bench.fakes import _with_mark
from tests.bench.report import table, write_json
from tests.bench.scenarios import Options, request_cost
from tests.bench.stats import check, percentile, summary
from tests.fakes.gemini import fake_mark_of, render_png


async def test_quick_overhead_run_writes_the_documented_json(tmp_path: Path) -> None:
    options = replace(Options.quick_run(latency=0.05), runs=1, overhead_sizes=("1K",))
    results = await run(options, ["overhead"])

    overhead = results["overhead"]
    assert "error" not in overhead, overhead["error"]
    out = tmp_path / "results" / "latest.json"
    write_json(out, meta(options, ["--quick"], 1.0), results)
    doc = json.loads(out.read_text())
    assert set(doc) == {"meta", "results", "checks", "all_ok"}
    assert doc["meta"]["quick"] is True and doc["meta"]["latency_s"] == 0.05
    one = doc["results"]["overhead"]["sizes"]["1K"]
    assert {"ratio_median", "e2e_median_s", "fake_work_median_s", "bot_overhead_median_s"} <= set(
        one
    )
    (first,) = one["runs"]
    assert first["gemini_calls"] == 1  # the job reached the fake Gemini once, over real HTTP
    assert first["posted"]["filename"].startswith("nano-banana-")  # and came back to Discord
    assert first["e2e_s"] > 0.05  # at least the model's latency
    names = [c["name"] for c in doc["checks"]]
    # one ratio per backend, and PostgreSQL's against SQLite's
    assert names == [
        "overhead ratio 1K (sqlite)",
        "overhead ratio 1K (postgresql)",
        "PostgreSQL/SQLite ratio 1K",
    ]
    for ratio in doc["checks"]:
        assert ratio["scenario"] == "overhead"
        assert set(ratio) == {"scenario", "name", "value", "target", "op", "unit", "ok"}
    assert "overhead ratio 1K (sqlite)" in table(results)


def test_a_failed_scenario_is_reported_not_hidden(tmp_path: Path) -> None:
    results = {"memory": {"error": "RuntimeError: the bot exited (1)", "checks": []}}
    assert "ERROR" in table(results)
    out = tmp_path / "latest.json"
    write_json(out, {}, results)
    assert json.loads(out.read_text())["all_ok"] is False


def test_statistics() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert math.isnan(percentile([], 50))
    assert summary([0.2, 0.1])["max"] == 0.2
    assert check("lag", 0.2, 0.1)["ok"] is False
    assert check("efficiency", 0.97, 0.95, higher_is_better=True)["ok"] is True
    assert check("nothing measured", math.nan, 1.0)["ok"] is False


def test_request_cost_counts_history_images_and_skips_thoughts() -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "x" * 40}, {"inlineData": {"data": "..."}}]},
            {
                "role": "model",
                "parts": [{"text": "thinking", "thought": True}, {"inlineData": {"data": "..."}}],
            },
            {"role": "user", "parts": [{"text": "y" * 8}]},
        ]
    }
    cost = request_cost(body, 1234)
    assert cost == {"request_bytes": 1234, "turns": 3, "images": 2, "token_estimate": 12 + 2 * 560}


def test_reused_fake_render_keeps_a_mark_per_answer() -> None:
    png = render_png(64, 64, "fake-1")
    assert fake_mark_of(_with_mark(png, "fake-7")) == "fake-7"


def test_cli_options() -> None:
    args = parse_args(["--quick", "--latency", "2", "--only", "lag,memory"])
    assert args.quick and args.latency == 2.0 and args.only == ["lag", "memory"]
    with pytest.raises(SystemExit):
        parse_args(["--only", "nonsense"])
