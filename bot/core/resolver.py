"""Turns a spec's input references into images: attachments, the caller's anchors, chain images.

Anchor lookups always pass the caller's id: another user's anchor simply does not exist here,
and the error reads the same whether or not someone else has an anchor of that name.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.adapters import imaging
from bot.adapters.prompts import (
    Reference,
    ResolvedImage,
    Spec,
    SpecError,
    check_references,
    parse_reference,
)
from bot.adapters.prompts.references import ROLE_LABELS
from bot.core.submission import InputImage
from bot.errors import UserError

if TYPE_CHECKING:
    from bot.adapters.store import Store
    from bot.config import Settings

ANCHOR_KINDS: tuple[str, ...] = ("face", "character", "object", "product", "style")
ANCHOR_NAME_RULE = re.compile(r"^[a-z0-9_-]{1,32}$")
# "anchor:kestrel" written in free text (a chain step); the name rule above, any case.
_MENTION = re.compile(r"(?<![\w:/])anchor:([A-Za-z0-9_-]{1,32})(?![\w-])", re.IGNORECASE)


def check_anchor_name(name: str) -> str:
    """The name as stored (lower case), or UserError saying what a name may be."""
    clean = name.strip().lower()
    if not ANCHOR_NAME_RULE.match(clean):
        shown = name.strip()[:40] or name[:40]
        raise UserError(
            f"'{shown}' is not a valid anchor name: use 1–32 characters, "
            "lowercase letters, digits, - or _ (for example kestrel or logo_2)."
        )
    return clean


def check_anchor_kind(kind: str | None) -> str:
    value = (kind or "face").strip().lower()
    if value not in ANCHOR_KINDS:
        raise UserError(
            f"'{(kind or '')[:20]}' is not a kind of anchor; choose one of: "
            f"{', '.join(ANCHOR_KINDS)}."
        )
    return value


def anchor_mentions(text: str, *, first_image: int) -> tuple[str, list[str]]:
    """Pull "anchor:NAME" mentions out of free text (a chain step).

    Returns the text with each mention replaced by "the subject of image N" and the names in
    order, where N counts from `first_image` (the number the first added anchor will have
    among the request's images). The name itself never stays in the text: the text becomes
    the step's summary, which is public.
    """
    names: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).lower()
        if name not in names:
            names.append(name)
        return f"the subject of image {first_image + names.index(name)}"

    return _MENTION.sub(replace, text), names


@dataclass
class Upload:
    """An inbound image already checked and normalised."""

    image: imaging.InboundImage
    filename: str


async def normalise_upload(data: bytes, filename: str, settings: Settings) -> Upload:
    try:
        image = await asyncio.to_thread(
            imaging.normalise_inbound,
            data,
            filename=filename,
            max_side=settings.inbound_max_side,
            max_pixels=settings.max_image_pixels,
        )
    except imaging.ImageError as exc:
        raise UserError(str(exc)) from None
    return Upload(image=image, filename=filename)


class RequestResolver:
    """Resolves references for one request by one user."""

    def __init__(
        self,
        store: Store,
        *,
        user_id: int,
        uploads: list[Upload] | None = None,
        chain_image: tuple[str, int | None] | None = None,
    ) -> None:
        self.store = store
        self.user_id = user_id
        self.uploads = uploads or []
        # (sha of the chain's current image, its step number)
        self.chain_image = chain_image

    async def resolve(self, ref: Reference, role: str) -> ResolvedImage:
        item = await self.resolve_input(ref, role)
        return item.image

    async def resolve_input(self, ref: Reference, role: str) -> InputImage:
        if ref.kind == "attachment":
            index = int(ref.value)
            if not 1 <= index <= len(self.uploads):
                have = len(self.uploads)
                raise SpecError(
                    f"attachment:{index} refers to an image you did not attach "
                    f"(this request has {have} attachment{'s' if have != 1 else ''})"
                )
            upload = self.uploads[index - 1]
            sha = await self.store.put_image(upload.image.data, upload.image.mime_type)
            what = "image to edit" if role == "edit_target" else f"{role.replace('_', ' ')} image"
            return InputImage(
                ResolvedImage(
                    data=upload.image.data,
                    mime_type=upload.image.mime_type,
                    description=f"{what} (attachment {index})",
                ),
                sha,
            )
        if ref.kind == "anchor":
            return await self._anchor(ref.value, role)
        # chain:latest
        if self.chain_image is None:
            raise SpecError("chain:latest only works when refining a result (reply to it)")
        sha, step = self.chain_image
        stored = await self.store.get_image(sha)
        if stored is None:
            raise SpecError(
                "this image is past the retention period and no longer stored; "
                "start a new image with /imagine"
            )
        data, mime = stored
        label = f"the current image (step {step})" if step is not None else "the current image"
        return InputImage(ResolvedImage(data=data, mime_type=mime, description=label), sha)

    async def _anchor(self, name: str, role: str) -> InputImage:
        anchor = await self.store.get_anchor(self.user_id, name)
        if anchor is None:
            raise SpecError(
                f"you have no anchor called '{name}' — see /anchor list, "
                "or save one with /anchor save"
            )
        stored = await self.store.get_image(anchor.image_sha)
        if stored is None:
            raise SpecError(f"the image of anchor '{anchor.name}' is missing; save it again")
        data, mime = stored
        if role == "identity_anchor":
            label = f"identity anchor '{anchor.name}' ({anchor.kind})"
        else:
            what = ROLE_LABELS.get(role, role.replace("_", " "))
            label = f"{what}: saved anchor '{anchor.name}' ({anchor.kind})"
        return InputImage(
            ResolvedImage(data=data, mime_type=mime, description=label, anchor_kind=anchor.kind),
            anchor.image_sha,
        )

    async def resolve_all(self, spec: Spec, *, model: str | None = None) -> list[InputImage]:
        """Every input of the spec, in order; SpecError with every problem. With `model`,
        also the per-kind reference limits, which need the saved anchors' kinds."""
        out: list[InputImage] = []
        problems: list[str] = []
        for item in spec.inputs:
            try:
                ref = parse_reference(item.data)
                out.append(await self.resolve_input(ref, item.role))
            except SpecError as exc:
                problems.extend(exc.problems)
        if problems:
            raise SpecError(problems)
        if model is not None:
            check_references(spec, model, [item.image for item in out])
        return out
