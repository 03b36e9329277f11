"""Every key the JSON prompt contract names has its type, checked before any model call, with the JSON
path, what was wrong and how to fix it; the same message in the bot's prepare() and in
`python -m bot prompt validate`. Strings stay valid where community specs use them."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot.__main__ import main
from bot.adapters.prompts import Defaults, Spec, SpecError, prepare, validate

PRO = Defaults(model="pro", size="1K", aspect="1:1")
SEED = Path(__file__).parent / "data" / "seed_examples"
TEMPLATES = Path(__file__).resolve().parents[4] / "templates"


@pytest.fixture(autouse=True)
def _cli_leaves_no_trace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """main() reads .env and sets up logging; keep both from leaking into other tests."""
    monkeypatch.chdir(tmp_path)
    for name in ("DEFAULT_MODEL", "DEFAULT_SIZE", "DEFAULT_ASPECT"):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    http_level = logging.getLogger("discord.http").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("discord.http").setLevel(http_level)


def problems_of(raw: str | dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        prepare(raw, None, PRO)
    return info.value.problems


def test_the_contract_example_number_negative_prompt() -> None:
    problems = problems_of({"task": "generate_image", "subject": "a kite", "negative_prompt": 42})
    assert problems == [
        "negative_prompt: expected a string or a list of strings, got a number (42); "
        'e.g. "negative_prompt": ["blurry", "watermark"]'
    ]


# (key, wrong value, what the message says is expected)
WRONG: list[tuple[str, Any, str]] = [
    ("subject", 42, "a string or an object"),
    ("subject", ["a", "b"], "a string or an object"),
    ("style", 7, "a string or an object"),
    ("style", True, "a string or an object"),
    ("environment", 42, "a string or an object"),
    ("environment", ["forest"], "a string or an object"),
    ("camera", 42, "a string or an object"),
    ("camera", ["low", "35mm"], "a string or an object"),
    ("lighting", 3.5, "a string or an object"),
    ("lighting", False, "a string or an object"),
    ("layout", "3x3 grid", "an object"),
    ("layout", ["a"], "an object"),
    ("output_format", "2K", "an object"),
    ("metadata", [1], "an object"),
    ("metadata", "v1", "an object"),
    ("subjects", "a knight", "a list of subjects (strings or objects)"),
    ("props", "a cup", "a list of props (strings or objects)"),
    ("props", 7, "a list of props (strings or objects)"),
    ("inputs", "attachment:1", "a list of input images"),
    ("negative_prompt", 42, "a string or a list of strings"),
    ("negative_prompt", {"a": "b"}, "a string or a list of strings"),
    ("changes", 5, "a string or a list of strings"),
    ("chain_id", 5, "a string"),
    ("chain_id", ["a"], "a string"),
    ("task", 1, 'a string such as "generate_image"'),
]


@pytest.mark.parametrize(("key", "value", "expected"), WRONG, ids=lambda v: repr(v)[:20])
def test_each_contract_key_has_its_type(key: str, value: Any, expected: str) -> None:
    spec: dict[str, Any] = {"task": "generate_image", "subject": "a kite", key: value}
    problems = problems_of(spec)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{key}: expected {expected}, got ")
    assert "e.g. " in problems[0].split("; ", 1)[1]  # how to fix it: a valid value for the key


# (spec fragment, JSON path, start of the message after the path)
WRONG_ITEMS: list[tuple[dict[str, Any], str, str]] = [
    ({"subjects": ["a knight", 42]}, "subjects[1]", "expected a string or an object, got a number"),
    ({"subjects": [{"id": "a", "description": 5}]}, "subjects[0].description", "expected a string"),
    ({"props": [True]}, "props[0]", "expected a string or an object, got a boolean (true)"),
    ({"props": [{"item": ["a"]}]}, "props[0].item", "expected a string, a number or an object"),
    ({"negative_prompt": ["blurry", 3]}, "negative_prompt[1]", "expected a string, got a number"),
    ({"changes": ["ok", None]}, "changes[1]", "expected a string, got null"),
    ({"inputs": ["attachment:1"]}, "inputs[0]", "expected an object, got a string"),
    ({"inputs": [{"data": 1}]}, "inputs[0].data", "expected a string, got a number (1)"),
    ({"inputs": [{"data": "attachment:1", "type": 2}]}, "inputs[0].type", "expected a string"),
    ({"camera": {"lens": [85]}}, "camera.lens", "expected a string, a number or an object"),
    ({"style": {"mood": False}}, "style.mood", "expected a string, a number or an object"),
    ({"environment": {"time_of_day": []}}, "environment.time_of_day", "expected a string"),
    ({"lighting": {"key_light": True}}, "lighting.key_light", "expected a string"),
    ({"output_format": {"aspect_ratio": 1.5}}, "output_format.aspect_ratio", "expected a string"),
    ({"output_format": {"mime_type": 1}}, "output_format.mime_type", "expected a string"),
    ({"output_format": {"width": 0}}, "output_format.width", "expected a whole number"),
    ({"metadata": {"author": 5}}, "metadata.author", "expected a string, got a number (5)"),
    ({"metadata": {"project_id": []}}, "metadata.project_id", "expected a string"),
    ({"metadata": {"notes": [1]}}, "metadata.notes[0]", "expected a string, got a number"),
    ({"metadata": {"version": True}}, "metadata.version", "expected a string or a number"),
]


@pytest.mark.parametrize(("fragment", "path", "start"), WRONG_ITEMS, ids=lambda v: str(v)[:30])
def test_items_and_fields_are_typed_with_their_path(
    fragment: dict[str, Any], path: str, start: str
) -> None:
    problems = problems_of({"subject": "a kite", **fragment})
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: {start}"), problems[0]


def test_numbers_meant_as_text_are_told_to_be_quoted() -> None:
    assert problems_of({"subject": "x", "chain_id": 12}) == [
        'chain_id: expected a string, got a number (12); put it in quotes ("12"), '
        'e.g. "chain_id": "scene-1"'
    ]


# Strings where community specs use them; numbers inside sections; any unknown key.
VALID: list[dict[str, Any]] = [
    {"subject": "a kite", "lighting": "soft morning window light"},  # README
    {"subject": "a kite", "camera": "low angle, 35mm", "environment": "a misty beach"},
    {"subject": "a kite", "style": "watercolour"},
    {"subject": {"type": "kite", "color": "red"}, "style": {"primary": "photo", "lighting": "x"}},
    {"subject": "a kite", "camera": {"lens": 85, "angle": "low"}},  # "lens": 85 reads fine
    {"subject": "a kite", "environment": {}, "camera": {}, "lighting": {}, "layout": {}},
    {"subject": "a kite", "layout": {"grid": "3x3", "gutters": 4}},
    {"subjects": ["a knight", {"id": 1, "description": "a dragon"}]},
    {"subject": "a kite", "props": ["a kite string", {"item": "a shell", "position": 2}]},
    {"subject": "a kite", "negative_prompt": "blurry"},
    {"subject": "a kite", "negative_prompt": ["blurry", "watermark"]},
    {"subject": "a kite", "chain_id": "scene-001"},
    {"subject": "a kite", "metadata": {"version": 1.2, "timestamp": 1736676000, "notes": ["a"]}},
    {"subject": "a kite", "metadata": {"resolved_inputs": [{"sha": "ab"}], "anything": 3}},
    {"subject": "a kite", "mood_board": 42, "quality": True, "rules": [1, {"a": None}]},
    {"subject": "a kite", "camera": {"custom": [1, 2], "angle": {"pitch": 10}}},
    {"subject": "a kite", "negative_prompt": None, "layout": None},  # null means "not set"
]


@pytest.mark.parametrize("spec", VALID, ids=lambda s: next(k for k in s if k != "subject"))
def test_community_conventions_stay_valid(spec: dict[str, Any]) -> None:
    prepared = prepare(spec, None, PRO)
    assert validate(prepared.spec, "pro") == []


def test_every_template_and_good_seed_example_passes_the_strict_types() -> None:
    for path in [*sorted(SEED.glob("ok_*.json"))]:
        prepare(path.read_text(), None, PRO)
    from bot.adapters.prompts import load_templates

    templates = load_templates(TEMPLATES)
    assert len(templates) >= 7
    for template in templates.values():
        prepare(template.fill(template.sample_values()), None, PRO)


def test_a_spec_built_in_code_obeys_the_same_types() -> None:
    with pytest.raises(SpecError, match=r"negative_prompt: expected a string or a list"):
        Spec.from_dict({"subject": "x", "negative_prompt": 42})
    with pytest.raises(ValidationError):
        Spec.model_validate({"subject": "x", "camera": 42})  # the pydantic types mirror it
    unchecked = Spec.model_construct(subject="x", camera=42)  # skips pydantic's own check
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydantic: "serialized value may not be…"
        with pytest.raises(SpecError, match=r"camera: expected a string or an object"):
            validate(unchecked, "pro")


def test_bot_and_cli_say_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    specs = [
        {"task": "generate_image", "subject": "a kite", "negative_prompt": 42},
        {"task": "generate_image", "subject": "a kite", "camera": 42},
        {"subject": "a kite", "props": [{"item": "cup", "position": []}], "layout": "grid"},
    ]
    for n, spec in enumerate(specs):
        path = tmp_path / f"spec{n}.json"
        path.write_text(json.dumps(spec))
        bot_problems = problems_of(json.dumps(spec))  # what /imagine prompt:{…} runs
        assert main(["prompt", "validate", str(path)]) == 1
        cli_lines = capsys.readouterr().out.splitlines()
        assert cli_lines == [f"{path}: {p}" for p in bot_problems]
