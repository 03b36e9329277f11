"""`python -m bot prompt validate|compile` through the real entry point."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from bot.__main__ import main
from bot.cli.prompt import compile_file, sniff_image_type, validate_files
from bot.config import Settings

SEED = Path(__file__).resolve().parents[1] / "adapters" / "prompts" / "data" / "seed_examples"
TEMPLATES = Path(__file__).resolve().parents[3] / "templates"


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("DEFAULT_MODEL", "DEFAULT_SIZE", "DEFAULT_ASPECT"):
        monkeypatch.delenv(name, raising=False)
    # main() sets up logging on the root logger; leave it as we found it for other tests
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _png(path: Path, color: str = "red") -> Path:
    Image.new("RGB", (4, 4), color).save(path)
    return path


def test_validate_reports_each_problem_and_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = SEED / "ok_basic_pattern.json"
    bad = SEED / "bad_identity_persistence.json"
    missing = tmp_path / "missing.json"
    assert main(["prompt", "validate", str(good), str(bad), str(missing)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{good}: ok"
    assert lines[1].startswith(f"{bad}: inputs[0].data: '<reference_face>'")
    assert lines[2].startswith(f"{missing}: cannot read it")
    assert len(lines) == 3


def test_validate_all_good_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prompt", "validate", *map(str, sorted(TEMPLATES.glob("*.json")))]) == 0
    assert all(line.endswith(": ok") for line in capsys.readouterr().out.splitlines())


def test_validate_templates_against_the_chosen_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, settings: Settings
) -> None:
    banner = tmp_path / "banner.json"
    banner.write_text(
        '{"description": "wide banner", "spec": {"subject": "{{text}}", '
        '"output_format": {"aspect_ratio": "8:1"}}}'
    )
    assert validate_files([banner], model="flash", settings=settings) == 0
    assert validate_files([banner], model="pro", settings=settings) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{banner}: ok"
    assert out[1].startswith(f"{banner}: output_format.aspect_ratio: aspect ratio 8:1")


def test_validate_prints_warnings(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    long = tmp_path / "long.json"
    long.write_text(json.dumps({"subject": "word " * 1100}))
    assert main(["prompt", "validate", str(long)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{long}: warning: the prompt is about")
    assert out[1] == f"{long}: ok"


def test_unknown_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prompt", "validate", str(SEED / "ok_start_simple.json"), "--model", "x"]) == 2
    assert "unknown model 'x'" in capsys.readouterr().err


def test_compile_prints_rest_body(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "blend.json"
    spec.write_text(
        json.dumps(
            {
                "task": "blend_images",
                "inputs": [
                    {"type": "image", "data": "attachment:1"},
                    {"type": "image", "data": "attachment:2", "role": "style"},
                ],
                "output_format": {"aspect_ratio": "4:3"},
            }
        )
    )
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", "blue")
    code = main(
        ["prompt", "compile", str(spec), "--model", "flash", "--image", str(a), "--image", str(b)]
    )
    assert code == 0
    captured = capsys.readouterr()
    body = json.loads(captured.out)
    assert captured.err.splitlines() == [f"{spec}: output: 1200×896 px (4:3, 1K) from Nano Banana 2"]
    parts = body["contents"][0]["parts"]
    assert [p.get("text") for p in parts[1::2]] == [
        "Image 1: reference image (attachment 1: a.png)",
        "Image 2: style reference (attachment 2: b.png)",
    ]
    assert parts[2]["inlineData"] == {
        "mimeType": "image/png",
        "data": f"<{a.stat().st_size} bytes image/png>",
    }
    assert body["generationConfig"]["imageConfig"] == {"aspectRatio": "4:3", "imageSize": "1K"}


def test_compile_shows_the_real_output_dimensions(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "poster.json"
    spec.write_text(json.dumps({"subject": "a poster", "output_format": {"width": 800, "height": 1200}}))
    assert main(["prompt", "compile", str(spec), "--model", "pro"]) == 0
    captured = capsys.readouterr()
    assert f"{spec}: output: 848×1264 px (2:3, 1K) from Nano Banana Pro" in captured.err
    assert json.loads(captured.out)["generationConfig"]["imageConfig"] == {
        "aspectRatio": "2:3",
        "imageSize": "1K",
    }
    assert main(["prompt", "compile", str(spec), "--model", "legacy"]) == 0
    assert "output: 832×1248 px (2:3, 1K) from Nano Banana (legacy)" in capsys.readouterr().err


def test_compile_with_images_embeds_base64(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, settings: Settings
) -> None:
    spec = tmp_path / "edit.json"
    spec.write_text(
        '{"task": "edit_image", "changes": "add a hat", '
        '"inputs": [{"type": "image", "data": "attachment:1", "role": "edit_target"}]}'
    )
    img = _png(tmp_path / "x.png")
    assert compile_file(spec, model=None, settings=settings, with_images=True, images=[img]) == 0
    body = json.loads(capsys.readouterr().out)
    data = body["contents"][0]["parts"][2]["inlineData"]["data"]
    assert base64.b64decode(data) == img.read_bytes()


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("anchor:alice", "anchor 'alice' lives in the bot's database and cannot be used offline"),
        ("chain:latest", "chain:latest exists only in a Discord thread"),
        ("attachment:2", "attachment:2 needs at least 2 --image option(s) (got 1)"),
    ],
)
def test_compile_unresolvable_refs_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, settings: Settings, ref: str, fragment: str
) -> None:
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"subject": "x", "inputs": [{"type": "image", "data": ref}]}))
    img = _png(tmp_path / "x.png")
    assert compile_file(spec, model=None, settings=settings, with_images=False, images=[img]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"{spec}: inputs[0].data: ")
    assert fragment in err[0]


def test_compile_rejects_non_images(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, settings: Settings
) -> None:
    spec = tmp_path / "s.json"
    spec.write_text('{"subject": "x", "inputs": [{"data": "attachment:1"}]}')
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert compile_file(spec, model=None, settings=settings, with_images=False, images=[text]) == 1
    assert "is not a PNG, JPEG, WEBP or HEIC image" in capsys.readouterr().err


def test_compile_template_uses_defaults(
    capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    path = TEMPLATES / "product_shot.json"
    assert compile_file(path, model="pro", settings=settings, with_images=False, images=[]) == 0
    text = json.loads(capsys.readouterr().out)["contents"][0]["parts"][0]["text"]
    assert json.loads(text)["product"]["color"] == "matte black"


def test_compile_template_without_defaults_names_missing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "t.json"
    path.write_text('{"description": "d", "spec": {"subject": "{{thing}}"}}')
    assert compile_file(path, model=None, settings=settings, with_images=False, images=[]) == 1
    assert "needs a value for: thing" in capsys.readouterr().err


def test_sniff_image_type() -> None:
    assert sniff_image_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_image_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_image_type(b"\x00\x00\x00\x18ftypheic") == "image/heic"
    assert sniff_image_type(b"GIF89a") is None


def test_json_file_must_hold_an_object(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, settings: Settings
) -> None:
    listing = tmp_path / "list.json"
    listing.write_text('["a cat"]')
    plain = tmp_path / "prompt.txt"
    plain.write_text("a cat on a mat\n")
    assert validate_files([listing, plain], model=None, settings=settings) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{listing}: a .json prompt file must hold a JSON object ({{...}})",
        f"{plain}: ok",
    ]
