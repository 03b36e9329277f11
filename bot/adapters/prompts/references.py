"""Image references in `inputs[].data`, and resolving them to bytes through the caller.

Users never send raw image data in a spec: only references to things the bot already holds
(an attachment of the message, a saved anchor, the chain's current image).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol

from bot.adapters.prompts.errors import SpecError, short
from bot.adapters.prompts.spec import Spec

RefKind = Literal["attachment", "anchor", "chain"]
MAX_ANCHOR_NAME = 64

_HINT = 'use "attachment:N", "anchor:NAME" or "chain:latest"'
_ANCHOR_NAME = re.compile(r"^[^\x00-\x1f:]{1,64}$")
_BASE64ISH = re.compile(r"^[A-Za-z0-9+/_-]{64,}={0,2}$")


@dataclass(frozen=True)
class Reference:
    kind: RefKind
    value: str  # "1" for attachment:1, "alice" for anchor:alice, "latest" or "step:3" for chain

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def parse_reference(data: str) -> Reference:
    """Parse "attachment:N" (N>=1), "anchor:NAME", "chain:latest" or "chain:step:N"."""
    if not isinstance(data, str):
        raise SpecError(f"an image reference must be text; {_HINT}")
    text = data.strip()
    lowered = text.lower()
    if lowered.startswith("data:") or _BASE64ISH.match(text):
        raise SpecError(
            "raw image data is not accepted in a spec; attach the image and refer to it "
            'as "attachment:1", or save it as an anchor and use "anchor:NAME"'
        )
    if re.match(r"^[a-z][a-z0-9+.-]*://", lowered):
        raise SpecError(
            "image URLs are not accepted; attach the image to your message and refer to it "
            'as "attachment:1"'
        )
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower()
    rest = rest.strip()
    if not sep or kind not in ("attachment", "anchor", "chain"):
        raise SpecError(f"'{short(text)}' is not an image reference; {_HINT}")
    if kind == "attachment":
        if not rest.isdigit() or int(rest) < 1:
            raise SpecError(
                f"'{short(text)}': attachments are numbered from 1, e.g. \"attachment:1\""
            )
        return Reference("attachment", str(int(rest)))
    if kind == "anchor":
        if not _ANCHOR_NAME.match(rest):
            raise SpecError(
                f"'{short(text)}': give the anchor's name, e.g. \"anchor:alice\" "
                f"(at most {MAX_ANCHOR_NAME} characters, no colons)"
            )
        return Reference("anchor", rest)
    step = rest.lower()
    if step == "latest":
        return Reference("chain", "latest")
    match = re.fullmatch(r"step\s*:\s*(\d+)", step)
    if match:
        return Reference("chain", f"step:{int(match.group(1))}")
    raise SpecError(f'\'{short(text)}\': use "chain:latest" or "chain:step:N"')


@dataclass
class ResolvedImage:
    data: bytes
    mime_type: str
    description: str  # "identity anchor 'alice' (face)", "reference image (attachment 1)"
    anchor_kind: str | None = None  # face, character, object, product, style


class ImageResolver(Protocol):
    async def resolve(self, ref: Reference, role: str) -> ResolvedImage:
        """Bytes for one reference; raises SpecError when it points at nothing."""
        ...


async def resolve_inputs(spec: Spec, resolver: ImageResolver) -> list[ResolvedImage]:
    """Resolve every input in order; all dangling references reported together."""
    images: list[ResolvedImage] = []
    problems: list[str] = []
    for i, item in enumerate(spec.inputs):
        try:
            ref = parse_reference(item.data)
            images.append(await resolver.resolve(ref, item.role))
        except SpecError as exc:
            problems.extend(f"inputs[{i}].data: {p}" for p in exc.problems)
    if problems:
        raise SpecError(problems)
    return images


ROLE_LABELS: dict[str, str] = {
    "identity_anchor": "identity anchor",
    "reference": "reference image",
    "style": "style reference",
    "edit_target": "image to edit",
}


def describe(role: str, source: str) -> str:
    """describe("style", "attachment 2") -> "style reference (attachment 2)"."""
    return f"{ROLE_LABELS.get(role, role.replace('_', ' '))} ({source})"
