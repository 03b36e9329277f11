"""parse_prompt_text and the flat-form normalisation."""

from __future__ import annotations

import pytest

from bot.adapters.prompts import SpecError, parse_prompt_text
from bot.adapters.prompts.parse import normalise


def test_plain_text_becomes_generate_spec() -> None:
    assert parse_prompt_text("  a red shoe on snow \n") == {
        "task": "generate_image",
        "subject": "a red shoe on snow",
    }


def test_json_object_is_parsed() -> None:
    assert parse_prompt_text('\n  {"subject": "cat", "camera": {"angle": "low"}}') == {
        "subject": "cat",
        "camera": {"angle": "low"},
    }


def test_code_fence_is_stripped() -> None:
    assert parse_prompt_text('```json\n{"subject": "cat"}\n```') == {"subject": "cat"}


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_prompt(text: str) -> None:
    with pytest.raises(SpecError, match="empty"):
        parse_prompt_text(text)


def test_syntax_error_has_line_and_column() -> None:
    with pytest.raises(SpecError) as info:
        parse_prompt_text('{\n  "subject": "cat"\n  "style": "ink"\n}')
    assert info.value.problems == ["JSON syntax error at line 3, column 3: expecting ',' delimiter"]


def test_syntax_error_hints_comments_and_trailing_commas() -> None:
    with pytest.raises(SpecError, match=r"line 2, column 3.*no comments"):
        parse_prompt_text('{"subject": "cat",\n  // a comment\n}')
    with pytest.raises(SpecError, match="remove the comma"):
        parse_prompt_text('{"subject": "cat",}')
    with pytest.raises(SpecError, match="double quotes"):
        parse_prompt_text("{'subject': 'cat'}")


def test_leading_comment_is_json_not_plain_text() -> None:
    with pytest.raises(SpecError, match="no comments"):
        parse_prompt_text('// base\n{"subject": "cat"}')


def test_duplicate_keys_and_nan_rejected() -> None:
    with pytest.raises(SpecError, match="duplicate key 'subject'"):
        parse_prompt_text('{"subject": "a", "subject": "b"}')
    with pytest.raises(SpecError, match="NaN is not valid JSON"):
        parse_prompt_text('{"subject": NaN}')


def test_huge_nesting_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="deeper than 8"):
        parse_prompt_text('{"a":' + "[" * 20_000 + "]" * 20_000 + "}")


def test_oversized_text_rejected_before_parsing() -> None:
    with pytest.raises(SpecError, match="KB"):
        parse_prompt_text('{"subject": "' + "x" * 300_000 + '"}')


def test_flat_form_is_normalised() -> None:
    data, problems = normalise(
        {
            "prompt": "Main description",
            "negative_prompt": "blur",
            "width": 1024,
            "height": 768,
            "aspect_ratio": "4:3",
            "quality": "high",
            "style": "photorealistic",
        }
    )
    assert problems == []
    assert data == {
        "subject": "Main description",
        "negative_prompt": "blur",
        "quality": "high",  # not a size: kept for the model to read
        "style": "photorealistic",
        "output_format": {"width": 1024, "height": 768, "aspect_ratio": "4:3"},
    }
    assert next(iter(data)) == "subject"  # the prompt keeps its place


def test_quality_naming_a_size_becomes_resolution() -> None:
    data, _ = normalise({"prompt": "x", "quality": "4k"})
    assert data["output_format"] == {"resolution": "4K"}
    assert "quality" not in data


def test_prompt_kept_when_subject_exists() -> None:
    data, _ = normalise({"prompt": "p", "subject": "s"})
    assert data == {"prompt": "p", "subject": "s"}


def test_conflicting_flat_and_rich_sizes() -> None:
    _, problems = normalise({"width": 512, "output_format": {"width": 1024}})
    assert problems == [
        "width is given twice (512 at the top level, 1024 in output_format); keep one"
    ]


def test_numeric_resolution_becomes_text() -> None:
    data, _ = normalise({"subject": "x", "output_format": {"resolution": 512}})
    assert data["output_format"]["resolution"] == "512"
