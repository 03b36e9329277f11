"""Per-kind reference limits from the capability table (Pro: 6 objects, 5 characters, 3 style;
Nano Banana 2: 10 objects, 4 characters; Lite: objects only), checked before the call: what
the spec says in prepare(), saved anchors' kinds in check_references() once resolved."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.adapters.prompts import (
    Defaults,
    InputRef,
    Reference,
    ResolvedImage,
    Spec,
    SpecError,
    check_references,
    prepare,
    resolve_inputs,
)
from bot.adapters.prompts.validate import reference_kind
from bot.config import CAPABILITIES

PRO = Defaults(model="pro", size="1K", aspect="1:1")
FLASH = Defaults(model="flash", size="1K", aspect="1:1")
LITE = Defaults(model="lite", size="1K", aspect="1:1")


class Anchors:
    """A resolver whose saved anchors have the kind their name starts with (face_1, product_2)."""

    async def resolve(self, ref: Reference, role: str) -> ResolvedImage:
        kind = ref.value.split("_")[0] if ref.kind == "anchor" else None
        return ResolvedImage(b"img", "image/png", f"{role} {ref}", anchor_kind=kind)


def inputs(*items: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"type": "image", "data": data, "role": role} for data, role in items]


def attachments(role: str, n: int) -> list[dict[str, Any]]:
    return inputs(*((f"attachment:{i}", role) for i in range(1, n + 1)))


def anchors(kind: str, n: int, role: str = "identity_anchor") -> list[dict[str, Any]]:
    return inputs(*((f"anchor:{kind}_{i}", role) for i in range(1, n + 1)))


def problems_of(spec_inputs: list[dict[str, Any]], defaults: Defaults = PRO) -> list[str]:
    """prepare(), then resolve and check_references(): the problems of whichever step fails."""
    spec = {"subject": "x", "inputs": spec_inputs}
    try:
        prepared = prepare(spec, None, defaults)
        images = asyncio.run(resolve_inputs(prepared.spec, Anchors()))
        check_references(prepared.spec, prepared.model, images)
    except SpecError as exc:
        return exc.problems
    return []


def test_kinds_of_roles_and_anchor_kinds() -> None:
    assert reference_kind("style", None) == "style"
    assert reference_kind("reference", "style") == "style"
    assert reference_kind("identity_anchor", "style") == "style"
    assert reference_kind("identity_anchor", "product") == "object"
    assert reference_kind("identity_anchor", "Object") == "object"
    assert reference_kind("identity_anchor", "face") == "character"
    assert reference_kind("identity_anchor", "character") == "character"
    assert reference_kind("identity_anchor", None) == "character"  # an attachment
    assert reference_kind("reference", "face") is None  # only the total of 14
    assert reference_kind("edit_target", None) is None


def test_capability_table_has_the_published_limits() -> None:
    pro, flash = CAPABILITIES["gemini-3-pro-image"], CAPABILITIES["gemini-3.1-flash-image"]
    lite = CAPABILITIES["gemini-3.1-flash-lite-image"]
    assert (pro.max_objects, pro.max_characters, pro.max_styles) == (6, 5, 3)
    assert (flash.max_objects, flash.max_characters) == (10, 4)
    assert lite.max_characters == 0 and lite.max_objects
    assert pro.max_identity_anchors == 6 and flash.max_identity_anchors == 10


def test_pro_style_references_at_most_3_known_from_the_spec() -> None:
    assert problems_of(attachments("style", 3)) == []
    spec = {"subject": "x", "inputs": attachments("style", 4)}
    with pytest.raises(SpecError) as info:
        prepare(spec, None, PRO)  # before anything is resolved or sent
    assert info.value.problems == [
        "4 style references (inputs[0], inputs[1], inputs[2], inputs[3]), but Nano Banana Pro "
        "keeps at most 3 consistent; use fewer"
    ]
    # style anchors count too, whatever their role
    mixed = [*attachments("style", 2), *anchors("style", 2, role="reference")]
    assert problems_of(mixed) == [
        "4 style references (inputs[0], inputs[1], inputs[2], inputs[3]), but Nano Banana Pro "
        "keeps at most 3 consistent; use fewer"
    ]


def test_pro_characters_at_most_5() -> None:
    assert problems_of(anchors("face", 5)) == []
    assert problems_of(anchors("face", 6)) == [
        "6 identity anchors are characters or faces (inputs[0], inputs[1], inputs[2], inputs[3], "
        "inputs[4], inputs[5]), but Nano Banana Pro keeps at most 5 consistent; use fewer"
    ]
    # attached identity anchors have no saved kind: counted as characters, in prepare()
    spec = {"subject": "x", "inputs": attachments("identity_anchor", 6)}
    with pytest.raises(SpecError, match=r"^6 identity anchors are characters .* at most 5"):
        prepare(spec, None, PRO)


def test_pro_objects_at_most_6_and_kinds_add_up_to_the_identity_limit() -> None:
    assert problems_of(anchors("product", 6)) == []
    assert problems_of([*anchors("product", 3), *anchors("object", 1), *anchors("face", 2)]) == []
    assert problems_of(anchors("product", 7)) == [
        "7 identity anchors, but Nano Banana Pro keeps at most 6; use fewer anchors"
    ]


def test_nano_banana_2_keeps_10_objects_and_4_characters() -> None:
    assert problems_of(anchors("product", 10), FLASH) == []
    assert problems_of(anchors("character", 4), FLASH) == []
    assert problems_of(anchors("character", 5), FLASH) == [
        "5 identity anchors are characters or faces (inputs[0], inputs[1], inputs[2], inputs[3], "
        "inputs[4]), but Nano Banana 2 keeps at most 4 consistent; use fewer, or choose "
        "Nano Banana Pro (up to 5)"
    ]
    assert problems_of(attachments("style", 5), FLASH) == []  # no style limit of its own


def test_a_roomier_model_is_suggested() -> None:
    # 7 product anchors never get past Pro's identity limit in prepare(); checked directly, the
    # object limit names the model that keeps more objects
    spec = Spec(
        subject="x",
        inputs=[InputRef(data=f"anchor:product_{i}", role="identity_anchor") for i in range(7)],
    )
    images = asyncio.run(resolve_inputs(spec, Anchors()))
    with pytest.raises(SpecError) as info:
        check_references(spec, "pro", images)
    assert info.value.problems == [
        "7 identity anchors are objects or products (inputs[0], inputs[1], inputs[2], inputs[3], "
        "inputs[4], inputs[5], …), but Nano Banana Pro keeps at most 6 consistent; use fewer, "
        "or choose Nano Banana 2 (up to 10)"
    ]


def test_lite_keeps_objects_only() -> None:
    assert problems_of(anchors("product", 3), LITE) == []
    assert problems_of(anchors("face", 1), LITE) == [
        "Nano Banana 2 Lite does not keep identities of characters or faces (inputs[0]): "
        'give them role "reference", or choose Nano Banana Pro (up to 5)'
    ]
    spec = {"subject": "x", "inputs": attachments("identity_anchor", 1)}
    with pytest.raises(SpecError, match="Nano Banana 2 Lite does not keep identities of char"):
        prepare(spec, None, LITE)
    assert problems_of(anchors("face", 2, role="reference"), LITE) == []  # plain references


def test_every_kind_problem_the_spec_shows_at_once() -> None:
    problems = problems_of([*attachments("identity_anchor", 6), *attachments("style", 4)])
    assert [p.split(" (")[0] for p in problems] == [
        "6 identity anchors are characters or faces",
        "4 style references",
    ]
