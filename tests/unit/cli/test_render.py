"""`python -m bot render`: spec file -> fake Gemini -> image + JSON record, and its exit statuses."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.adapters.gemini import FailureKind
from bot.cli.render import EXIT_FOR_FAILURE, render_file
from bot.config import estimate_cost
from tests.fakes import gemini_fixtures
from tests.fakes.gemini import FakeGemini, fake_mark_of
from tests.fakes.gemini_fixtures import gemini_env, gemini_settings

fake_gemini = gemini_fixtures.fake_gemini

ROOT = Path(__file__).resolve().parents[3]
SPEC = {
    "task": "generate_image",
    "subject": "a lighthouse on a cliff at dusk",
    "style": "oil painting",
    "output_format": {"aspect_ratio": "16:9", "resolution": "1K"},
}


def write_spec(tmp_path: Path, spec: dict[str, Any] | str = SPEC, name: str = "lighthouse") -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec), "utf-8")
    return path


def png(tmp_path: Path, name: str = "ref.png", colour: str = "teal") -> Path:
    path = tmp_path / name
    Image.new("RGB", (64, 48), colour).save(path)
    return path


async def render(fake: FakeGemini, spec: Path, out: Path, **kw: Any) -> int:
    """render_file is synchronous (it runs its own loop): call it off this loop, which serves."""
    settings = gemini_settings(fake, **kw.pop("settings", {}))
    return await asyncio.to_thread(
        render_file,
        spec,
        out=out,
        model=kw.pop("model", None),
        settings=settings,
        images=kw.pop("images", []),
    )


async def test_render_writes_image_and_record(
    fake_gemini: FakeGemini, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {**SPEC, "inputs": [{"type": "image", "data": "attachment:1", "role": "style"}]}
    path = write_spec(tmp_path, spec)
    out = tmp_path / "out" / "nested"
    reference = png(tmp_path)

    status = await render(fake_gemini, path, out, images=[reference])

    assert status == 0
    stdout = capsys.readouterr().out.split()
    assert stdout == [str(out / "lighthouse.png"), str(out / "lighthouse.render.json")]
    data = (out / "lighthouse.png").read_bytes()
    issued = fake_gemini.issued[-1]
    assert fake_mark_of(data) == issued.mark
    assert Image.open(io.BytesIO(data)).size == (issued.width, issued.height)
    assert (issued.size, issued.aspect) == ("1K", "16:9")

    record = json.loads((out / "lighthouse.render.json").read_text("utf-8"))
    assert record["spec"]["subject"] == SPEC["subject"]
    assert record["model"] == "gemini-3-pro-image"
    assert record["model_version"] == "gemini-3-pro-image"
    assert (record["size"], record["aspect"]) == ("1K", "16:9")
    # the planned size is what the (fake) model really made: Google's 1K 16:9 is 1376×768
    assert record["output_dimensions"] == [1376, 768] == list(Image.open(io.BytesIO(data)).size)
    assert record["usage"]["prompt_tokens"] > 0
    assert record["usage"]["output_tokens"] > 0
    assert record["cost"] == estimate_cost(
        "gemini-3-pro-image", "1K", input_tokens=record["usage"]["prompt_tokens"]
    )
    assert record["seconds"] > 0
    assert record["text"] == fake_gemini.reply_text
    assert record["images"] == [
        {"file": "lighthouse.png", "mime_type": "image/png", "bytes": len(data)}
    ]

    [req] = fake_gemini.requests
    assert req.image_config == {"aspectRatio": "16:9", "imageSize": "1K"}
    assert req.texts[0] == record["prompt_text"]
    [(mime, sent)] = req.input_images
    assert mime == "image/png" and sent == reference.read_bytes()


async def test_render_model_option(fake_gemini: FakeGemini, tmp_path: Path) -> None:
    spec = {**SPEC, "output_format": {"aspect_ratio": "1:8", "resolution": "512"}}
    status = await render(fake_gemini, write_spec(tmp_path, spec), tmp_path, model="flash")
    assert status == 0
    assert fake_gemini.requests[0].model == "gemini-3.1-flash-image"
    assert fake_gemini.requests[0].image_config == {"aspectRatio": "1:8", "imageSize": "512"}


async def test_render_cli_end_to_end(fake_gemini: FakeGemini, tmp_path: Path) -> None:
    path = write_spec(tmp_path)
    out = tmp_path / "renders"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "GOOGLE_"))},
        **gemini_env(fake_gemini),
        "PYTHONPATH": str(ROOT),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "render", str(path), "--out", str(out),
        cwd=tmp_path, env=env,  # cwd: no developer .env is read
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode()
    assert stdout.decode().split() == [
        str(out / "lighthouse.png"),
        str(out / "lighthouse.render.json"),
    ]
    assert fake_mark_of((out / "lighthouse.png").read_bytes()) == fake_gemini.issued[-1].mark
    assert fake_gemini.requests[0].headers["x-goog-api-key"] == fake_gemini.api_key


@pytest.mark.parametrize(
    ("fault", "kw", "kind"),
    [
        ("prompt_blocked", {}, FailureKind.PROMPT_BLOCKED),
        ("image_safety", {}, FailureKind.OUTPUT_BLOCKED),
        ("text_only", {"text": "No."}, FailureKind.NO_IMAGE),
        ("rate_limit", {"retry_delay": "60s"}, FailureKind.RATE_LIMITED),
        ("overloaded", {}, FailureKind.OVERLOADED),
        ("hang", {}, FailureKind.TIMED_OUT),
        ("invalid", {"message": "Bad thing."}, FailureKind.INVALID_REQUEST),
        ("auth", {}, FailureKind.AUTH),
        ("server_error", {}, FailureKind.SERVER_ERROR),
        ("disconnect", {}, FailureKind.NETWORK),
    ],
)
async def test_render_failures_have_distinct_statuses(
    fake_gemini: FakeGemini,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fault: str,
    kw: dict[str, Any],
    kind: FailureKind,
) -> None:
    fake_gemini.fail_next(fault, **kw)
    settings = {"gemini_max_attempts": 1, "timeout_1k_seconds": 0.3}
    status = await render(fake_gemini, write_spec(tmp_path), tmp_path / "out", settings=settings)
    assert status == EXIT_FOR_FAILURE[kind]
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert fake_gemini.api_key not in captured.err
    assert not list((tmp_path / "out").iterdir())


def test_exit_statuses_are_distinct() -> None:
    codes = list(EXIT_FOR_FAILURE.values())
    assert set(EXIT_FOR_FAILURE) == set(FailureKind)
    assert len(set(codes)) == len(codes)
    assert not {0, 1, 2} & set(codes)


@pytest.mark.parametrize(
    ("spec", "images", "needle"),
    [
        ('{"task": "generate_image", "subject": "x",}', [], "line 1"),
        ({"task": "paint_image", "subject": "x"}, [], "task"),
        ({**SPEC, "inputs": [{"data": "anchor:alice", "role": "identity_anchor"}]}, [], "anchor"),
        ({**SPEC, "inputs": [{"data": "chain:latest", "role": "edit_target"}]}, [], "chain"),
        ({**SPEC, "inputs": [{"data": "attachment:2"}]}, ["ref.png"], "attachment:2"),
    ],
)
async def test_invalid_specs_exit_1_before_any_call(
    fake_gemini: FakeGemini,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    spec: dict[str, Any] | str,
    images: list[str],
    needle: str,
) -> None:
    paths = [png(tmp_path, name) for name in images]
    status = await render(fake_gemini, write_spec(tmp_path, spec), tmp_path / "out", images=paths)
    assert status == 1
    assert needle in capsys.readouterr().err
    assert fake_gemini.requests == []


async def test_usage_errors_exit_2_before_any_call(
    fake_gemini: FakeGemini, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(tmp_path)
    assert await render(fake_gemini, path, tmp_path / "out", model="nano-potato") == 2
    assert "unknown model" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    assert await render(fake_gemini, path, blocker / "out") == 2
    assert "cannot create output folder" in capsys.readouterr().err
    assert fake_gemini.requests == []


async def test_missing_spec_file_exits_1(
    fake_gemini: FakeGemini, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await render(fake_gemini, tmp_path / "nope.json", tmp_path / "out") == 1
    assert "cannot read" in capsys.readouterr().err
