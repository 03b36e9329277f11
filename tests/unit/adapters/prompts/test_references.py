"""Image references and resolving them through the caller's resolver."""

from __future__ import annotations

import pytest

from bot.adapters.prompts import (
    Reference,
    ResolvedImage,
    Spec,
    SpecError,
    parse_reference,
    resolve_inputs,
)


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("attachment:1", Reference("attachment", "1")),
        (" Attachment: 03 ", Reference("attachment", "3")),
        ("anchor:alice", Reference("anchor", "alice")),
        ("anchor: Big Bob ", Reference("anchor", "Big Bob")),
        ("chain:latest", Reference("chain", "latest")),
        ("CHAIN:Latest", Reference("chain", "latest")),
        ("chain:step:4", Reference("chain", "step:4")),
        ("chain:step: 0", Reference("chain", "step:0")),
    ],
)
def test_valid_references(text: str, ref: Reference) -> None:
    assert parse_reference(text) == ref


def test_reference_str_round_trips() -> None:
    for text in ("attachment:2", "anchor:alice", "chain:latest", "chain:step:3"):
        assert str(parse_reference(text)) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("attachment:-1", "numbered from 1"),
        ("attachment:one", "numbered from 1"),
        ("anchor:a:b", "give the anchor's name"),
        ("anchor:" + "x" * 65, "at most 64 characters"),
        ("chain:step:x", "chain:step:N"),
        ("file:cat.png", "is not an image reference"),
        ("cat.png", "is not an image reference"),
        ("", "is not an image reference"),
        ("ftp://host/cat.png", "URLs are not accepted"),
        ("data:image/png;base64,AAAA", "raw image data"),
        ("QUJD" * 20, "raw image data"),
        ("a photo of my cat sitting on the mat in the sun near the big window", "not an image"),
    ],
)
def test_bad_references(text: str, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        parse_reference(text)


class DictResolver:
    """Resolves from a dict keyed by str(Reference), like the bot's store would."""

    def __init__(self, images: dict[str, ResolvedImage]) -> None:
        self.images = images
        self.calls: list[tuple[Reference, str]] = []

    async def resolve(self, ref: Reference, role: str) -> ResolvedImage:
        self.calls.append((ref, role))
        try:
            return self.images[str(ref)]
        except KeyError:
            raise SpecError(f"no image for {ref}") from None


async def test_resolve_inputs_in_order_with_roles() -> None:
    alice = ResolvedImage(b"a", "image/png", "identity anchor 'alice' (face)", "face")
    first = ResolvedImage(b"1", "image/jpeg", "reference image (attachment 1)")
    resolver = DictResolver({"anchor:alice": alice, "attachment:1": first})
    spec = Spec.from_dict(
        {
            "subject": "x",
            "inputs": [
                {"data": "attachment:1"},
                {"data": "anchor:alice", "role": "identity_anchor"},
            ],
        }
    )
    assert await resolve_inputs(spec, resolver) == [first, alice]
    assert resolver.calls == [
        (Reference("attachment", "1"), "reference"),
        (Reference("anchor", "alice"), "identity_anchor"),
    ]


async def test_dangling_references_reported_together() -> None:
    spec = Spec.from_dict(
        {"subject": "x", "inputs": [{"data": "anchor:zed"}, {"data": "attachment:9"}]}
    )
    with pytest.raises(SpecError) as info:
        await resolve_inputs(spec, DictResolver({}))
    assert info.value.problems == [
        "inputs[0].data: no image for anchor:zed",
        "inputs[1].data: no image for attachment:9",
    ]
