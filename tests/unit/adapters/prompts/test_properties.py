"""Property tests: no input makes validation raise anything but SpecError; every valid spec
compiles; compiling is deterministic; batches and templates keep their promises."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.adapters.prompts import (
    Defaults,
    RequestOptions,
    ResolvedImage,
    Spec,
    SpecError,
    compile_request,
    expand_batch,
    parse_prompt_text,
    parse_template,
    prepare,
    rest_body,
    validate,
)
from bot.adapters.prompts.spec import SHAPES
from bot.config import CAPABILITIES

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PRO = Defaults(model="pro", size="1K", aspect="1:1")
KNOWN_KEYS = [*SHAPES, "prompt", "width", "height", "aspect_ratio", "quality", "resolution"]
SAFE_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=40,
)
# Objects whose keys are mostly the known ones, so the type checks are exercised.
spec_like = st.dictionaries(
    st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), json_values, max_size=8
)
option_text = (
    st.none() | st.sampled_from(["16:9", "1:1", "8:1", "2K", "512", "4k", ""]) | st.text(max_size=8)
)
options = st.builds(
    RequestOptions,
    model=st.none() | st.sampled_from(["pro", "flash", "lite", "legacy", "nope"]),
    size=option_text,
    aspect=option_text,
    negative=st.none() | st.text(max_size=10),
    style=st.none() | st.text(max_size=10),
    task=st.none() | st.sampled_from(["generate_image", "edit_image", "blend_images", "x"]),
    changes=st.none() | st.text(max_size=10),
    anchors=st.lists(st.text(max_size=10), max_size=3),
)


def only_spec_errors(raw: Any, opts: RequestOptions | None = None) -> None:
    try:
        prepared = prepare(raw, opts, PRO)
    except SpecError as exc:
        assert exc.problems and all(p.strip() and "\n" not in p for p in exc.problems)
        return
    # whatever passed validation must compile to JSON-ready output
    images = [ResolvedImage(b"x", "image/png", "test image") for _ in prepared.spec.inputs]
    json.dumps(rest_body(compile_request(prepared, images), with_images=True))


@FAST
@given(json_values)
def test_any_json_value_gives_spec_error_or_a_valid_spec(value: Any) -> None:
    only_spec_errors(value)


@FAST
@given(spec_like, options)
def test_any_object_with_any_options(value: dict[str, Any], opts: RequestOptions) -> None:
    only_spec_errors(value, opts)


@FAST
@given(json_values)
def test_any_json_text(value: Any) -> None:
    text = json.dumps(value, allow_nan=True, indent=1)
    only_spec_errors(text)
    only_spec_errors("{" + text)  # broken JSON


@FAST
@given(st.text(max_size=200))
def test_any_text(text: str) -> None:
    only_spec_errors(text)
    with contextlib.suppress(SpecError):
        parse_prompt_text("{" + text)


@FAST
@given(spec_like)
def test_validate_only_raises_spec_error(value: dict[str, Any]) -> None:
    try:
        spec = Spec.from_dict(value)
    except SpecError:
        return
    for model in CAPABILITIES:
        with contextlib.suppress(SpecError):
            validate(spec, model)


# ---- valid specs -----------------------------------------------------------------------------

words = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1, max_size=30)
text_or_object = words | st.dictionaries(
    st.sampled_from(["angle", "lens", "type", "color", "mood", "notes"]),
    words,
    min_size=1,
    max_size=3,
)
anchor_names = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
refs = (
    st.integers(min_value=1, max_value=14).map(lambda n: f"attachment:{n}")
    | anchor_names.map(lambda n: f"anchor:{n}")
    | st.sampled_from(["chain:latest", "chain:step:2"])
)
inputs = st.lists(
    st.fixed_dictionaries(
        {"type": st.just("image"), "data": refs},
        optional={
            "role": st.sampled_from(["identity_anchor", "reference", "style", "edit_target"])
        },
    ),
    max_size=8,
).filter(
    # within Nano Banana Pro's limits: 6 identity anchors, 5 characters (an identity anchor
    # that is not a saved anchor counts as one), 3 style references
    lambda items: sum(i.get("role") == "identity_anchor" for i in items) <= 6
    and sum(
        i.get("role") == "identity_anchor" and not i["data"].startswith("anchor:") for i in items
    )
    <= 5
    and sum(i.get("role") == "style" for i in items) <= 3
)


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    items = draw(inputs)
    tasks = ["generate_image"]
    if items:
        tasks.append("edit_image")
    if len(items) >= 2:
        tasks.append("blend_images")
    spec: dict[str, Any] = {"task": draw(st.sampled_from(tasks)), "subject": draw(text_or_object)}
    for key in ("style", "environment", "camera", "lighting"):
        if draw(st.booleans()):
            spec[key] = draw(text_or_object)
    if draw(st.booleans()):
        spec["layout"] = draw(st.dictionaries(st.sampled_from(["grid", "panel"]), words))
    if draw(st.booleans()):
        spec["props"] = draw(
            st.lists(st.fixed_dictionaries({"item": words, "position": words}), max_size=3)
        )
    if draw(st.booleans()):
        spec["negative_prompt"] = draw(words | st.lists(words, max_size=3))
    if spec["task"] == "edit_image" or draw(st.booleans()):
        spec["changes"] = draw(words)
    if items:
        spec["inputs"] = items
    if draw(st.booleans()):
        spec["output_format"] = {
            "aspect_ratio": draw(st.sampled_from(CAPABILITIES["gemini-3-pro-image"].aspect_ratios)),
            "resolution": draw(st.sampled_from(["1K", "2K", "4K"])),
        }
    if draw(st.booleans()):
        spec["metadata"] = {"version": "1.0", "notes": draw(words)}
    if draw(st.booleans()):
        spec[draw(st.sampled_from(["product", "mood_board", "scene"]))] = draw(text_or_object)
    return spec


def fake_images(prepared: Any) -> list[ResolvedImage]:
    kinds = ["face", "product", "style", None]
    return [
        ResolvedImage(bytes([i]) * (i + 1), "image/png", f"image {i}", kinds[i % 4])
        for i in range(len(prepared.spec.inputs))
    ]


@FAST
@given(valid_specs())
def test_every_valid_spec_compiles(spec: dict[str, Any]) -> None:
    prepared = prepare(spec, None, PRO)
    compiled = compile_request(prepared, fake_images(prepared))
    sent = json.loads(compiled.text)
    assert "output_format" not in sent and "metadata" not in sent
    assert len(compiled.parts) == 1 + 2 * len(prepared.spec.inputs)
    for n, item in enumerate(sent.get("inputs", []), start=1):
        assert item["data"] == f"image {n}"
    anchors = [i for i in spec.get("inputs", []) if i.get("role") == "identity_anchor"]
    assert len(sent.get("consistency_rules", [])) == len(anchors)
    body = rest_body(compiled)
    assert body["generationConfig"]["imageConfig"]["aspectRatio"] == prepared.aspect


@FAST
@given(valid_specs())
def test_compile_is_deterministic(spec: dict[str, Any]) -> None:
    first = prepare(json.dumps(spec), None, PRO)
    second = prepare(json.loads(json.dumps(spec)), None, PRO)
    a = compile_request(first, fake_images(first))
    b = compile_request(second, fake_images(second))
    assert a.text == b.text
    assert rest_body(a, with_images=True) == rest_body(b, with_images=True)
    assert json.dumps(rest_body(a)) == json.dumps(rest_body(b))


@FAST
@given(
    valid_specs(),
    st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), min_size=1, max_size=3),
    st.lists(words, min_size=2, max_size=10, unique_by=lambda w: w.strip().casefold()),
)
def test_batch_variants_differ_only_at_the_path(
    spec: dict[str, Any], path: list[str], values: list[str]
) -> None:
    if any(not v.strip() for v in values):
        return
    try:
        variants = expand_batch(spec, ".".join(path), values)
    except SpecError:
        return
    assert len(variants) == len(values)
    stripped = []
    for variant in variants:
        node: Any = variant.spec
        for part in path[:-1]:
            node = node[part]
        assert node[path[-1]] == variant.label
        del node[path[-1]]
        stripped.append(json.dumps(variant.spec, sort_keys=True))
    assert len(set(stripped)) == 1


@FAST
@given(SAFE_TEXT)
def test_template_values_are_escaped_whatever_they_contain(value: str) -> None:
    template = parse_template("t", '{"subject": "a {{thing|cup}}", "note": "{{thing}}!"}')
    filled = template.fill({"thing": value})
    assert filled == {"subject": f"a {value}", "note": f"{value}!"}
