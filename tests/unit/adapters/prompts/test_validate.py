"""Validation rules: each gives one specific, actionable message before any paid call."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.adapters.prompts import Defaults, InputRef, Spec, SpecError, prepare, validate

PRO = Defaults(model="pro", size="1K", aspect="1:1")


def problems_of(raw: str | dict[str, Any], defaults: Defaults = PRO) -> list[str]:
    with pytest.raises(SpecError) as info:
        prepare(raw, None, defaults)
    return info.value.problems


def test_valid_minimal_spec() -> None:
    prepared = prepare({"subject": "a cat"}, None, PRO)
    assert prepared.spec.task == "generate_image"
    assert prepared.warnings == []


def test_unknown_task_lists_valid_ones() -> None:
    assert problems_of({"task": "draw", "subject": "x"}) == [
        "task: unknown task 'draw'; use one of: generate_image, edit_image, blend_images"
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"subject": "x", "camera": {"angle": ["low", "high"]}},
            'camera.angle: expected a string, a number or an object, got a list (["low","high"]);'
            ' e.g. "angle": "low angle"',
        ),
        (
            {"subject": "x", "camera": {"angle": True}},
            "camera.angle: expected a string, a number or an object, got a boolean (true);"
            ' e.g. "angle": "low angle"',
        ),
        (
            {"subject": ["a", "b"]},
            'subject: expected a string or an object, got a list (["a","b"]);'
            ' e.g. "subject": "a red kite over the sea"',
        ),
        (
            {"subjects": {"id": "a"}},
            'subjects: expected a list of subjects (strings or objects), got an object ({"id":"a"});'
            ' e.g. "subjects": [{"id": "hero", "description": "a tall knight"}]',
        ),
        (
            {"subject": "x", "props": [{"item": "cup", "position": []}]},
            "props[0].position: expected a string, a number or an object, got a list ([]);"
            ' e.g. "position": "foreground"',
        ),
        (
            {"subject": "x", "negative_prompt": {"a": 1}},
            'negative_prompt: expected a string or a list of strings, got an object ({"a":1});'
            ' e.g. "negative_prompt": ["blurry", "watermark"]',
        ),
        (
            {"subject": "x", "negative_prompt": ["ok", {"a": 1}]},
            'negative_prompt[1]: expected a string, got an object ({"a":1}); e.g. "blurry"',
        ),
        (
            {"subject": "x", "output_format": {"width": "1024"}},
            "output_format.width: expected a whole number of pixels such as 1024, got a string"
            ' ("1024"); write the number without quotes (1024)',
        ),
        (
            {"subject": "x", "output_format": {"width": 1024.5}},
            "output_format.width: expected a whole number of pixels such as 1024, got a number"
            ' (1024.5); e.g. "width": 1024',
        ),
        (
            {"subject": "x", "output_format": {"height": -5}},
            "output_format.height: expected a whole number of pixels such as 1024, got a number"
            ' (-5); e.g. "height": 1024',
        ),
        (
            {"subject": "x", "metadata": "v1"},
            'metadata: expected an object, got a string ("v1");'
            ' e.g. "metadata": {"author": "sam", "notes": "first try"}',
        ),
        (
            {"subject": "x", "inputs": {"data": "attachment:1"}},
            "inputs: expected a list of input images, got an object"
            ' ({"data":"attachment:1"}); e.g. "inputs": [{"type": "image", "data":'
            ' "attachment:1", "role": "reference"}]',
        ),
        (
            {"subject": "x", "inputs": [{"type": "image"}]},
            'inputs[0].data: missing; add it, e.g. "data": "attachment:1"',
        ),
        (
            {"subject": "x", "inputs": [{"data": "attachment:1", "role": "hero"}]},
            "inputs[0].role: unknown role 'hero'; use one of: identity_anchor, reference, style,"
            " edit_target",
        ),
        (
            {"task": 3, "subject": "x"},
            'task: expected a string such as "generate_image", got a number (3);'
            ' put it in quotes ("3"), e.g. "task": "generate_image"',
        ),
    ],
)
def test_wrong_type_at_path(spec: dict[str, Any], message: str) -> None:
    assert problems_of(spec) == [message]


def test_several_type_problems_reported_together() -> None:
    problems = problems_of({"subject": True, "camera": {"lens": []}, "style": False})
    assert [p.split(",")[0] for p in problems] == [  # in document order
        "subject: expected a string or an object",
        "camera.lens: expected a string",
        "style: expected a string or an object",
    ]


def test_numbers_count_as_text_and_unknown_keys_are_kept() -> None:
    prepared = prepare(
        {"subject": "x", "camera": {"lens": 85}, "mood_board": [1, {"a": None}]}, None, PRO
    )
    assert prepared.spec.to_dict()["mood_board"] == [1, {"a": None}]
    assert prepared.spec.to_dict()["camera"] == {"lens": 85}


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": "x"}
    for _ in range(depth - 1):
        node = {"n": node}
    return node


def test_nesting_limit_is_8() -> None:
    # top-level object = level 1; subject holds levels 2..8
    prepare({"subject": nested(7)}, None, PRO)
    problems = problems_of({"subject": nested(8)})
    assert problems == [
        "subject.n.n.n.n.n.n.n: nesting is deeper than 8 levels; flatten the structure"
    ]


def test_input_image_limit_from_capability() -> None:
    inputs = [{"type": "image", "data": f"attachment:{i}"} for i in range(1, 16)]
    assert problems_of({"subject": "x", "inputs": inputs}) == [
        "15 input images, but Nano Banana Pro takes at most 14; remove some"
    ]
    legacy = Defaults(model="legacy", size="1K", aspect="1:1")
    assert problems_of({"subject": "x", "inputs": inputs[:4]}, legacy) == [
        "4 input images, but Nano Banana (legacy) takes at most 3; remove some"
    ]


def test_identity_anchor_limit_from_capability() -> None:
    anchors = [
        {"type": "image", "data": f"anchor:p{i}", "role": "identity_anchor"} for i in range(11)
    ]
    assert problems_of({"subject": "x", "inputs": anchors[:7]}) == [
        "7 identity anchors, but Nano Banana Pro keeps at most 6; use fewer anchors"
    ]
    prepare({"subject": "x", "inputs": anchors[:6]}, None, PRO)
    # Nano Banana 2 keeps up to 10 objects (4 characters: counted once the kinds are known)
    flash = Defaults(model="flash", size="1K", aspect="1:1")
    prepare({"subject": "x", "inputs": anchors[:10]}, None, flash)
    assert problems_of({"subject": "x", "inputs": anchors}, flash) == [
        "11 identity anchors, but Nano Banana 2 keeps at most 10; use fewer anchors"
    ]


def test_unsupported_aspect_names_what_the_model_has() -> None:
    problems = problems_of({"subject": "x", "output_format": {"aspect_ratio": "4:1"}})
    assert problems == [
        "output_format.aspect_ratio: aspect ratio 4:1 is not available on Nano Banana Pro "
        "(nearest: 21:9); it has 1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9, 21:9"
    ]
    flash = Defaults(model="flash", size="1K", aspect="1:1")
    assert prepare({"subject": "x", "aspect_ratio": "4:1"}, None, flash).aspect == "4:1"


def test_unsupported_size_names_what_the_model_has() -> None:
    assert problems_of({"subject": "x", "output_format": {"resolution": "512"}}) == [
        "output_format.resolution: size 512 is not available on Nano Banana Pro; it has 1K, 2K, 4K"
    ]
    assert problems_of({"subject": "x", "output_format": {"resolution": "8k"}}) == [
        "output_format.resolution: size 8k is not available on Nano Banana Pro; it has 1K, 2K, 4K"
    ]


def test_bad_mime_type() -> None:
    assert problems_of({"subject": "x", "output_format": {"mime_type": "image/gif"}}) == [
        "output_format.mime_type: 'image/gif' is not an output type; use image/png or image/jpeg"
    ]


def test_spec_over_32_kb() -> None:
    problems = problems_of({"subject": "x", "notes": "y" * 33_000})
    assert len(problems) == 1
    assert problems[0].startswith("the spec is 32.")
    assert "the limit is 32 KB" in problems[0]


def test_long_prompt_is_a_warning_not_an_error() -> None:
    prepared = prepare({"subject": "word " * 1100}, None, PRO)
    assert len(prepared.warnings) == 1
    assert "about 13" in prepared.warnings[0] and "1280" in prepared.warnings[0]


def test_metadata_and_output_format_do_not_count_towards_tokens() -> None:
    prepared = prepare({"subject": "x", "metadata": {"notes": "n" * 8000}}, None, PRO)
    assert prepared.warnings == []


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("data:image/png;base64,iVBORw0KGgo=", "raw image data is not accepted"),
        (
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
            "raw image data is not accepted",
        ),
        ("https://cdn.discordapp.com/attachments/1/2/cat.png", "image URLs are not accepted"),
        ("<reference_face>", "'<reference_face>' is not an image reference"),
        ("attachment:0", "attachments are numbered from 1"),
        ("anchor:", "give the anchor's name"),
        ("chain:first", 'use "chain:latest" or "chain:step:N"'),
    ],
)
def test_input_data_must_be_a_reference(data: str, fragment: str) -> None:
    problems = problems_of({"subject": "x", "inputs": [{"type": "image", "data": data}]})
    assert len(problems) == 1
    assert problems[0].startswith("inputs[0].data: ")
    assert fragment in problems[0]


def test_only_image_inputs() -> None:
    assert problems_of({"subject": "x", "inputs": [{"type": "video", "data": "attachment:1"}]}) == [
        'inputs[0].type: only "image" inputs are supported'
    ]


def test_task_needs_images() -> None:
    assert (
        "edit_image needs the image to edit"
        in problems_of({"task": "edit_image", "changes": "x"})[0]
    )
    assert problems_of(
        {"task": "blend_images", "inputs": [{"type": "image", "data": "attachment:1"}]}
    ) == ["blend_images needs at least 2 input images (got 1)"]


def test_nothing_to_draw() -> None:
    assert problems_of({"task": "generate_image", "metadata": {"v": 1}}) == [
        'nothing to draw: add a "subject" (text or object) describing the image'
    ]
    assert problems_of({"subject": ""}) == [
        'nothing to draw: add a "subject" (text or object) describing the image'
    ]
    one = [{"type": "image", "data": "attachment:1"}]
    assert problems_of({"task": "edit_image", "inputs": one}) == [
        'say what to change: add "changes", e.g. "make the sky stormy"'
    ]
    two = [*one, {"type": "image", "data": "attachment:2"}]
    prepare({"task": "blend_images", "inputs": two}, None, PRO)  # a blend needs no words


def test_rest_bodies_are_recognised() -> None:
    body = {"contents": [{"parts": [{"text": json.dumps({"subject": "x"})}]}]}
    assert "looks like a Gemini API request" in problems_of(body)[0]


def test_problems_are_collected_across_rules() -> None:
    problems = problems_of(
        {
            "task": "edit_image",
            "changes": "x",
            "inputs": [{"type": "image", "data": "http://x/y.png"}],
            "output_format": {"aspect_ratio": "1:8", "resolution": "512"},
        }
    )
    assert len(problems) == 2  # the aspect and the size; one at a time would be tedious
    problems = problems_of(
        {"task": "edit_image", "changes": "x", "inputs": [{"type": "image", "data": "x"}]}
    )
    assert problems[0].startswith("inputs[0].data:")


def test_validate_checks_specs_built_in_code() -> None:
    spec = Spec(task="paint", subject="x")
    with pytest.raises(SpecError, match="unknown task 'paint'"):
        validate(spec, "pro")
    spec = Spec(subject="x", inputs=[InputRef(data="https://x.com/a.png")])
    with pytest.raises(SpecError, match="URLs are not accepted"):
        validate(spec, "pro")
    with pytest.raises(SpecError, match="unknown model 'dalle'"):
        validate(Spec(subject="x"), "dalle")
    assert validate(Spec(subject="x"), "gemini-3-pro-image-preview") == []


def test_unknown_model_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="unknown model 'sdxl'; choose one of: pro, flash"):
        prepare("a cat", None, Defaults(model="sdxl", size="1K", aspect="1:1"))


def test_non_object_json() -> None:
    with pytest.raises(SpecError, match="must be a JSON object"):
        prepare(["a"], None, PRO)  # type: ignore[arg-type]


def test_problems_are_single_lines_even_with_odd_keys() -> None:
    problems = problems_of({"subject": "x", "bad\nkey " + "k" * 50: float("inf")})
    assert problems == ["bad key " + "k" * 21 + "…: numbers must be finite"]
