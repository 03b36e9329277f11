"""prepare(): options merged over the JSON, aspect/size resolution, summaries."""

from __future__ import annotations

import pytest

from bot.adapters.prompts import Defaults, InputRef, RequestOptions, SpecError, prepare

PRO = Defaults(model="pro", size="1K", aspect="1:1")


def test_defaults_fill_output_format() -> None:
    prepared = prepare("a lighthouse at dawn", None, PRO)
    assert prepared.model == "gemini-3-pro-image"
    assert (prepared.size, prepared.aspect) == ("1K", "1:1")
    assert prepared.spec.output_format is not None
    assert prepared.spec.output_format.aspect_ratio == "1:1"
    assert prepared.spec.output_format.resolution == "1K"
    assert prepared.overrides == []


def test_json_beats_defaults_and_options_beat_json() -> None:
    raw = {"subject": "x", "output_format": {"aspect_ratio": "1:1", "resolution": "2k"}}
    from_json = prepare(raw, None, Defaults(model="pro", size="4K", aspect="9:16"))
    assert (from_json.aspect, from_json.size) == ("1:1", "2K")
    prepared = prepare(raw, RequestOptions(aspect="16:9", size="4k"), PRO)
    assert (prepared.aspect, prepared.size) == ("16:9", "4K")
    assert prepared.overrides == [
        "aspect 16:9 from the command replaced 1:1 in the JSON",
        "size 4K from the command replaced 2k in the JSON",
    ]


def test_same_value_is_not_an_override() -> None:
    raw = {"subject": "x", "output_format": {"aspect_ratio": "16:9"}}
    assert prepare(raw, RequestOptions(aspect="16x9"), PRO).overrides == []


def test_text_options_override_and_report() -> None:
    raw = {
        "task": "generate_image",
        "subject": "x",
        "style": {"primary": "oil"},
        "negative_prompt": "blur",
    }
    prepared = prepare(
        raw, RequestOptions(style="watercolour", negative="text, logos", model="flash"), PRO
    )
    data = prepared.spec.to_dict()
    assert data["style"] == "watercolour"
    assert data["negative_prompt"] == "text, logos"
    assert prepared.model == "gemini-3.1-flash-image"
    assert prepared.overrides == [
        'negative prompt "text, logos" from the command replaced "blur" in the JSON',
        'style "watercolour" from the command replaced the style object in the JSON',
    ]


def test_task_and_changes_from_edit_command() -> None:
    prepared = prepare(
        {"task": "generate_image", "subject": "a cat"},
        RequestOptions(
            task="edit_image",
            changes="make it night",
            inputs=[InputRef(data="attachment:1", role="edit_target")],
        ),
        PRO,
    )
    assert prepared.spec.task == "edit_image"
    assert prepared.overrides == [
        "task edit_image from the command replaced generate_image in the JSON"
    ]
    assert prepared.summary() == "Edit: make it night"


def test_inputs_and_anchors_are_appended_without_duplicates() -> None:
    raw = {
        "subject": "two friends",
        "inputs": [{"type": "image", "data": "anchor:alice", "role": "identity_anchor"}],
    }
    options = RequestOptions(
        inputs=[InputRef(data="attachment:1"), InputRef(data=" Attachment:1 ")],
        anchors=["alice", "bob", " bob ", ""],
    )
    spec = prepare(raw, options, PRO).spec
    assert [(i.data, i.role) for i in spec.inputs] == [
        ("anchor:alice", "identity_anchor"),
        ("attachment:1", "reference"),
        ("anchor:bob", "identity_anchor"),
    ]


def test_width_height_map_to_nearest_aspect_and_covering_size() -> None:
    prepared = prepare({"subject": "x", "width": 1920, "height": 1080}, None, PRO)
    assert (prepared.aspect, prepared.size) == ("16:9", "2K")
    assert prepared.warnings == []
    odd = prepare({"subject": "x", "output_format": {"width": 1000, "height": 700}}, None, PRO)
    assert (odd.aspect, odd.size) == ("3:2", "1K")
    assert odd.warnings == ["1000×700 is not a shape Nano Banana Pro makes; using 3:2, the nearest"]


def test_width_height_on_flash_can_use_512_and_extreme_ratios() -> None:
    flash = Defaults(model="flash", size="1K", aspect="1:1")
    prepared = prepare({"subject": "x", "width": 512, "height": 128}, None, flash)
    assert (prepared.aspect, prepared.size) == ("4:1", "512")


def test_width_beyond_largest_size_warns() -> None:
    prepared = prepare({"subject": "x", "width": 8000, "height": 8000}, None, PRO)
    assert prepared.size == "4K"
    assert prepared.warnings == [
        "8000×8000 is more than Nano Banana Pro makes at 1:1; using 4K, its largest size "
        "(4096×4096)"
    ]


@pytest.mark.parametrize(
    ("model", "width", "height", "aspect", "size", "dims"),
    [
        # the contract's case: 2:3 at 1K is really 848×1264, which covers 1200
        ("pro", 800, 1200, "2:3", "1K", (848, 1264)),
        ("pro", 848, 1264, "2:3", "1K", (848, 1264)),
        ("pro", 849, 1265, "2:3", "2K", (1696, 2528)),  # one pixel more: the next size
        ("pro", 1200, 800, "3:2", "1K", (1264, 848)),
        ("pro", 1376, 768, "16:9", "1K", (1376, 768)),
        ("pro", 1400, 788, "16:9", "2K", (2752, 1536)),
        ("pro", 1024, 1024, "1:1", "1K", (1024, 1024)),
        ("pro", 1025, 1025, "1:1", "2K", (2048, 2048)),
        ("pro", 3000, 4000, "3:4", "4K", (3584, 4800)),  # 2K's 2400 is short of 4000
        ("flash", 400, 600, "2:3", "512", (424, 632)),
        ("flash", 425, 633, "2:3", "1K", (848, 1264)),
        ("flash", 300, 2400, "1:8", "1K", (384, 3072)),  # 1:8's 1K is 3072 tall
        ("flash", 1000, 250, "4:1", "512", (1024, 256)),
        ("lite", 1000, 1500, "2:3", "1K", (848, 1264)),
        ("legacy", 800, 1200, "2:3", "1K", (832, 1248)),
    ],
)
def test_width_height_choose_the_smallest_size_whose_real_output_covers_them(
    model: str, width: int, height: int, aspect: str, size: str, dims: tuple[int, int]
) -> None:
    defaults = Defaults(model=model, size="1K", aspect="1:1")
    spec = {"subject": "x", "output_format": {"width": width, "height": height}}
    prepared = prepare(spec, None, defaults)
    assert (prepared.aspect, prepared.size, prepared.dimensions) == (aspect, size, dims)


def test_one_side_alone_is_covered_at_the_chosen_aspect() -> None:
    # 9:16 from the command, width 1000 from the JSON: 1K is 768 wide, 2K 1536
    prepared = prepare({"subject": "x", "width": 1000}, RequestOptions(aspect="9:16"), PRO)
    assert (prepared.aspect, prepared.size, prepared.dimensions) == ("9:16", "2K", (1536, 2752))
    tall = prepare({"subject": "x", "height": 1300}, RequestOptions(aspect="9:16"), PRO)
    assert (tall.size, tall.dimensions) == ("1K", (768, 1376))
    # an explicit aspect in the JSON decides too: 1:1 needs 2K to cover 1920
    square = prepare({"subject": "x", "width": 1920, "height": 1080, "aspect_ratio": "1:1"}, None, PRO)
    assert (square.aspect, square.size) == ("1:1", "2K")


def test_an_explicit_resolution_or_size_option_beats_width_height() -> None:
    spec = {"subject": "x", "output_format": {"width": 800, "height": 1200, "resolution": "4K"}}
    assert prepare(spec, None, PRO).size == "4K"
    spec = {"subject": "x", "output_format": {"width": 800, "height": 1200}}
    prepared = prepare(spec, RequestOptions(size="2K"), PRO)
    assert (prepared.size, prepared.overrides) == ("2K", [])


def test_explicit_aspect_beats_width_height() -> None:
    prepared = prepare(
        {"subject": "x", "width": 1920, "height": 1080, "aspect_ratio": "1:1"}, None, PRO
    )
    assert prepared.aspect == "1:1"


def test_default_the_model_lacks_falls_back_with_warning() -> None:
    prepared = prepare("x", None, Defaults(model="pro", size="512", aspect="8:1"))
    assert (prepared.size, prepared.aspect) == ("1K", "1:1")
    assert prepared.warnings == [
        "your default aspect 8:1 is not available on Nano Banana Pro; using 1:1",
        "your default size 512 is not available on Nano Banana Pro; using 1K",
    ]


def test_explicit_option_the_model_lacks_is_an_error() -> None:
    with pytest.raises(SpecError) as info:
        prepare("x", RequestOptions(aspect="8:1", size="512"), PRO)
    assert info.value.problems == [
        "aspect: aspect ratio 8:1 is not available on Nano Banana Pro (nearest: 21:9); "
        "it has 1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9, 21:9",
        "size: size 512 is not available on Nano Banana Pro; it has 1K, 2K, 4K",
    ]
    with pytest.raises(SpecError, match="'wide' is not an aspect ratio; write it like 16:9"):
        prepare("x", RequestOptions(aspect="wide"), PRO)


def test_legacy_model_is_fixed_size() -> None:
    prepared = prepare("x", RequestOptions(model="legacy"), Defaults("pro", "2K", "1:1"))
    assert prepared.size == "1K"


def test_plain_text_and_json_problems_collected_with_option_problems() -> None:
    with pytest.raises(SpecError) as info:
        prepare({"subject": True, "camera": []}, RequestOptions(aspect="3:1"), PRO)
    assert info.value.problems == [
        'subject: expected a string or an object, got a boolean (true); '
        'e.g. "subject": "a red kite over the sea"',
        'camera: expected a string or an object, got a list ([]); '
        'e.g. "camera": {"angle": "low", "lens": "35mm"}',
        "aspect: aspect ratio 3:1 is not available on Nano Banana Pro (nearest: 21:9); "
        "it has 1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9, 21:9",
    ]


def test_prepare_does_not_modify_the_callers_dict() -> None:
    raw = {"prompt": "x", "width": 1024, "height": 1024}
    prepare(raw, RequestOptions(anchors=["a"]), PRO)
    assert raw == {"prompt": "x", "width": 1024, "height": 1024}


@pytest.mark.parametrize(
    ("raw", "summary"),
    [
        ("a  red\nshoe", "a red shoe"),
        ({"subject": {"type": "shoe", "color": "red"}}, "shoe, red"),
        ({"product": {"name": "mug", "color": "teal"}, "lighting": "soft"}, "mug, teal"),
        ({"subjects": [{"id": "a", "description": "a fox"}, "an owl"]}, "a, a fox, an owl"),
        ({"subject": "z" * 500}, "z" * 199 + "…"),
    ],
)
def test_summary(raw: str | dict[str, object], summary: str) -> None:
    assert prepare(raw, None, PRO).summary() == summary


def test_summary_of_blend() -> None:
    inputs = [{"type": "image", "data": "attachment:1"}, {"type": "image", "data": "attachment:2"}]
    prepared = prepare({"task": "blend_images", "inputs": inputs}, None, PRO)
    assert prepared.summary() == "Blend of the input images"


@pytest.mark.parametrize(
    ("given", "aspect"),
    [("21:9", "21:9"), ("42:18", "21:9"), ("32x18", "16:9"), (" 1 / 1 ", "1:1")],
)
def test_aspect_spellings(given: str, aspect: str) -> None:
    assert prepare("x", RequestOptions(aspect=given), PRO).aspect == aspect
