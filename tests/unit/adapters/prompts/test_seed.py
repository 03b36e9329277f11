"""Every JSON example of the seed guide (copied into data/seed_examples): the well-formed ones
compile, the malformed ones fail with the specific message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.adapters.prompts import Defaults, SpecError, compile_request, prepare, rest_body

SEED = Path(__file__).parent / "data" / "seed_examples"
PRO = Defaults(model="pro", size="1K", aspect="1:1")
COMMENTS = "(JSON has no comments; remove the // or /* */ parts)"
NOT_A_REF = (
    "inputs[0].data: '{ref}' is not an image reference; "
    'use "attachment:N", "anchor:NAME" or "chain:latest"'
)
NOTHING = 'nothing to draw: add a "subject" (text or object) describing the image'
API_BODY = (
    "this looks like a Gemini API request or response, not a prompt spec; "
    'send the prompt itself, e.g. {"task": "generate_image", "subject": "..."}'
)

EXPECTED_PROBLEMS = {
    "bad_hierarchical_structure.json": [
        f"JSON syntax error at line 8, column 16: expecting property name enclosed in double "
        f"quotes {COMMENTS}"
    ],
    "bad_prompt_chaining_base.json": [
        "JSON syntax error at line 4, column 3: expecting property name enclosed in double "
        f"quotes {COMMENTS}"
    ],
    "bad_minimal_diff_base.json": [
        f"JSON syntax error at line 1, column 1: expecting value {COMMENTS}"
    ],
    "bad_multi_step_1.json": [
        "JSON syntax error at line 1, column 46: expecting property name enclosed in double "
        f"quotes {COMMENTS}"
    ],
    "bad_full_spec_ellipsis.json": [
        "JSON syntax error at line 1, column 40: expecting property name enclosed in double "
        'quotes (replace "..." with real values)'
    ],
    "bad_prompt_chaining_edit.json": [NOT_A_REF.format(ref="<previous_output>")],
    "bad_identity_persistence.json": [NOT_A_REF.format(ref="<reference_face>")],
    "bad_multi_step_2.json": [NOT_A_REF.format(ref="<step1_output>")],
    "bad_multi_step_3.json": [NOT_A_REF.format(ref="<step2_output>")],
    "bad_metadata_only.json": [NOTHING],
    "bad_log_everything.json": [NOTHING],
    "bad_rest_request_body.json": [API_BODY],
    "bad_rest_response.json": [API_BODY],
}


def _files(prefix: str) -> list[Path]:
    return sorted(SEED.glob(f"{prefix}_*.json"))


def test_every_example_is_classified() -> None:
    assert len(_files("ok")) == 5
    assert {p.name for p in _files("bad")} == set(EXPECTED_PROBLEMS)


@pytest.mark.parametrize("path", _files("ok"), ids=lambda p: p.stem)
def test_good_examples_compile(path: Path) -> None:
    prepared = prepare(path.read_text(), None, PRO)
    compiled = compile_request(prepared, [])
    body = rest_body(compiled)
    sent = json.loads(body["contents"][0]["parts"][0]["text"])
    assert "output_format" not in sent and "metadata" not in sent
    assert sent["task"] == "generate_image"


@pytest.mark.parametrize("path", _files("bad"), ids=lambda p: p.stem)
def test_malformed_examples_fail_specifically(path: Path) -> None:
    with pytest.raises(SpecError) as info:
        prepare(path.read_text(), None, PRO)
    assert info.value.problems == EXPECTED_PROBLEMS[path.name]


def test_basic_pattern_maps_output_format() -> None:
    prepared = prepare((SEED / "ok_basic_pattern.json").read_text(), None, PRO)
    assert (prepared.aspect, prepared.size) == ("1:1", "1K")
    compiled = compile_request(prepared, [])
    assert json.loads(compiled.text)["camera"] == {"angle": "eye-level", "lens": "85mm f/2.0"}


def test_universal_schema_becomes_rich_form() -> None:
    prepared = prepare((SEED / "ok_universal_schema.json").read_text(), None, PRO)
    data = prepared.spec.to_dict()
    assert data["subject"] == "Main description"
    assert data["output_format"]["width"] == 1024
    assert "prompt" not in data and "width" not in data


def test_fixed_chain_example_compiles_with_a_real_reference() -> None:
    text = (SEED / "bad_prompt_chaining_edit.json").read_text()
    fixed = text.replace("<previous_output>", "chain:latest")
    prepared = prepare(fixed, None, PRO)
    assert prepared.spec.chain_id == "scene-001"
    assert prepared.summary() == "Edit: Add sunset lighting"
