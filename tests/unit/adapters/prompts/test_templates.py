"""Templates: placeholders, filling, validation, loading; and the vars syntax."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.adapters.prompts import (
    Defaults,
    Placeholder,
    SpecError,
    load_templates,
    parse_template,
    parse_vars,
    prepare,
)
from bot.config import default_templates_dir

REQUIRED = {
    "product_shot",
    "ui_mockup",
    "infographic",
    "character_sheet",
    "sprite_sheet_3x3",
    "comic_panel",
    "storyboard_frame",
}
WRAPPED = json.dumps(
    {
        "description": "A {{thing|mug}} test",
        "spec": {
            "task": "generate_image",
            "subject": {"name": "{{thing|mug}}", "color": "{{color}}"},
            "note": "a {{thing}} in {{color}}",
            "output_format": {"width": "{{w|1024}}"},
        },
    }
).replace('"{{w|1024}}"', "{{w|1024}}")


def test_builtin_templates_load_and_validate_on_every_listed_model() -> None:
    templates = load_templates(default_templates_dir())
    assert set(templates) >= REQUIRED
    for name, template in templates.items():
        assert template.source == "builtin"
        assert template.description and "\n" not in template.description
        assert template.placeholders(), f"{name} has no placeholders"
        assert all(p.default is not None for p in template.placeholders()), name
        spec = template.fill({})
        prepared = prepare(spec, None, Defaults(model="pro", size="1K", aspect="1:1"))
        assert prepared.warnings == [], name  # well under the token budget
        assert len(json.dumps(spec)) > 1200, f"{name} is too thin to be a good prompt"


def test_placeholders_in_order_with_defaults() -> None:
    template = parse_template("t1", WRAPPED)
    assert template.description == "A {{thing|mug}} test"
    assert template.placeholders() == [
        Placeholder("thing", "mug"),
        Placeholder("color", None),
        Placeholder("w", "1024"),
    ]
    assert template.missing({}) == ["color"]
    assert template.missing({"color": "red"}) == []


def test_fill_escapes_values_inside_strings_and_keeps_raw_json_outside() -> None:
    template = parse_template("t1", WRAPPED)
    spec = template.fill({"color": 'deep "navy" \\ blue', "w": "2048"})
    assert spec["subject"] == {"name": "mug", "color": 'deep "navy" \\ blue'}
    assert spec["note"] == 'a mug in deep "navy" \\ blue'
    assert spec["output_format"] == {"width": 2048}


def test_fill_errors_name_unknown_and_missing() -> None:
    template = parse_template("t1", WRAPPED)
    with pytest.raises(SpecError) as info:
        template.fill({"colour": "red"})
    assert info.value.problems == [
        "template 't1' has no placeholder 'colour'; it has: thing, color, w",
        "template 't1' needs a value for: color (vars: \"color=...\")",
    ]


def test_raw_value_that_breaks_the_type_is_reported() -> None:
    template = parse_template("t1", WRAPPED)
    with pytest.raises(SpecError, match=r"output_format\.width: expected a whole number"):
        template.fill({"color": "red", "w": "big"})


def test_bare_spec_is_accepted_for_guild_templates() -> None:
    template = parse_template("mine", '{"subject": "a {{animal|fox}} in snow"}')
    assert template.source == "guild"
    assert template.description == ""
    assert template.fill({"animal": "hare"}) == {"subject": "a hare in snow"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"subject": "{{bad name}}"}', "is not a placeholder"),
        ('{"subject": "{{x"}', "is not closed"),
        ('{"subject": "{{a|1}} {{a|2}}"}', "placeholder 'a' has two defaults"),
        ('{"subject": "x", "output_format": {"width": {{w}}}}', "needs a default"),
        ('{"subject": "x",}', "JSON syntax error at line 1"),
        ('{"spec": {"subject": "x"}, "extra": 1}', "unknown key(s) extra beside"),
        ('{"spec": {"subject": "x"}, "description": 5}', "description: expected"),
        ('{"task": "{{task|paint}}", "subject": "x"}', "unknown task 'paint'"),
        ('{"subject": "x", "output_format": {"aspect_ratio": "{{a|5:2}}"}}', "5:2"),
        ('["not", "an", "object"]', "must be a JSON object"),
    ],
)
def test_bad_templates(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_template("bad", text)
    assert fragment in str(info.value)


def test_template_valid_on_some_model_is_accepted() -> None:
    # 8:1 exists only on Nano Banana 2; the template is fine, /template use picks the model
    parse_template("banner", '{"subject": "x", "output_format": {"aspect_ratio": "8:1"}}')


@pytest.mark.parametrize("name", ["", "has space", "-dash", "x" * 41, "ünï"])
def test_template_names(name: str) -> None:
    with pytest.raises(SpecError, match="template name"):
        parse_template(name, '{"subject": "x"}')


def test_load_templates_names_the_bad_file(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_text('{"description": "d", "spec": {"subject": "{{s|x}}"}}')
    (tmp_path / "broken.json").write_text('{"spec": {"subject": }}')
    (tmp_path / "notes.txt").write_text("ignored")
    with pytest.raises(SpecError) as info:
        load_templates(tmp_path)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("broken.json: JSON syntax error at line 1")
    (tmp_path / "broken.json").unlink()
    assert set(load_templates(tmp_path)) == {"good"}
    with pytest.raises(SpecError, match="does not exist"):
        load_templates(tmp_path / "nope")


def test_template_body_round_trips_through_parse() -> None:
    template = parse_template("t1", WRAPPED)
    again = parse_template("t1", template.body)
    assert again.placeholders() == template.placeholders()
    assert again.fill({"color": "red"}) == template.fill({"color": "red"})


@pytest.mark.parametrize(
    ("text", "values"),
    [
        (None, {}),
        ("   ", {}),
        ("color=red", {"color": "red"}),
        (" color = red ; size=large;", {"color": "red", "size": "large"}),
        ("a=1\nb=2", {"a": "1", "b": "2"}),
        ('text="hello; world"', {"text": "hello; world"}),
        ("text=a\\;b", {"text": "a;b"}),
        ("eq=a=b", {"eq": "a=b"}),
        ("empty=", {"empty": ""}),
    ],
)
def test_parse_vars(text: str | None, values: dict[str, str]) -> None:
    assert parse_vars(text) == values


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("color", "'color' has no '='"),
        ("=red", "is not a placeholder name"),
        ("my color=red", "is not a placeholder name"),
        ("a=1; a=2", "'a' is given twice"),
    ],
)
def test_parse_vars_errors(text: str, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        parse_vars(text)
