"""`python -m bot describe IMAGE`: an image -> the fake Gemini's text model -> a spec on stdout."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.prompts import Defaults, prepare
from bot.cli.describe import describe_file
from tests.fakes import gemini_fixtures
from tests.fakes.gemini import FakeGemini, render_png
from tests.fakes.gemini_fixtures import gemini_env, gemini_settings

fake_gemini = gemini_fixtures.fake_gemini
ROOT = Path(__file__).resolve().parents[3]


def picture(tmp_path: Path, name: str = "photo.png") -> Path:
    path = tmp_path / name
    path.write_bytes(render_png(300, 400, "fake-2024"))
    return path


async def run(fake: FakeGemini, image: Path, **kw: Any) -> int:
    settings = gemini_settings(fake, gemini_max_attempts=1, **kw.pop("settings", {}))
    return await asyncio.to_thread(describe_file, image, settings=settings, **kw)


async def test_spec_on_stdout_summary_on_stderr(
    fake_gemini: FakeGemini, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(fake_gemini, picture(tmp_path), detail="brief") == 0
    out, err = capsys.readouterr()
    spec = json.loads(out)
    assert spec["subject"] == "the picture marked fake-2024"
    assert spec["output_format"] == {"aspect_ratio": "3:4"}
    prepare(spec, None, Defaults(model="pro", size="1K", aspect="1:1"))  # ready to render
    lines = err.splitlines()
    assert lines[0].startswith("the picture marked") and "gemini-3.8-flash" in lines[2]
    assert "one line for each field" in fake_gemini.requests[0].texts[0]


async def test_out_file_and_failures(
    fake_gemini: FakeGemini, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "spec.json"
    assert await run(fake_gemini, picture(tmp_path), out=target) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert json.loads(target.read_text())["task"] == "generate_image"

    fake_gemini.answer_next_text("nope", times=2)
    assert await run(fake_gemini, picture(tmp_path)) == 14
    assert "not a usable spec" in capsys.readouterr().err
    fake_gemini.fail_next("prompt_blocked")
    assert await run(fake_gemini, picture(tmp_path)) == 3

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    calls = len(fake_gemini.requests)
    assert await run(fake_gemini, text) == 1
    assert "not an image" in capsys.readouterr().err
    assert len(fake_gemini.requests) == calls  # refused before any call


async def test_as_a_command(fake_gemini: FakeGemini, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GOOGLE_"))},
        **gemini_env(fake_gemini),
        "GEMINI_MAX_ATTEMPTS": "1",
        "PYTHONPATH": str(ROOT),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "describe", str(picture(tmp_path)), "--detail", "full",
        cwd=tmp_path, env=env,  # cwd: no developer .env is read
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    assert json.loads(stdout)["task"] == "generate_image"
