"""Semantic checks of a spec against the chosen model, before any paid call."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from bot.adapters.prompts.errors import SpecError, short
from bot.adapters.prompts.references import ResolvedImage, parse_reference
from bot.adapters.prompts.spec import (
    BOT_ONLY_KEYS,
    Spec,
    check_structure,
    compact_json,
    estimate_tokens,
    model_view,
)
from bot.config import (
    BASE_ASPECTS,
    CAPABILITIES,
    EXTRA_ASPECTS,
    SIZE_PIXELS,
    SIZES_ORDER,
    ModelCapability,
    UnknownModelError,
    capability,
    output_dimensions,
)

MAX_SPEC_BYTES = 32 * 1024
TOKEN_WARNING = 1280
OUTPUT_MIME_TYPES: tuple[str, ...] = ("image/png", "image/jpeg")
# Keys that say nothing about the picture itself.
_NON_DESCRIPTIVE = frozenset({"task", "inputs", "chain_id", "negative_prompt", *BOT_ONLY_KEYS})
_RATIO = re.compile(r"^\s*(\d{1,5})\s*[:x×/]\s*(\d{1,5})\s*$", re.IGNORECASE)


def model_capability(model: str) -> ModelCapability:
    try:
        return capability(model)
    except UnknownModelError as exc:
        raise SpecError(str(exc)) from None


# ---- aspect ratios and sizes -----------------------------------------------------------------


def normalise_aspect(value: str) -> str | None:
    """'16x9', ' 16 : 9 ', '32:18' -> '16:9'; None when it is not a ratio of whole numbers."""
    match = _RATIO.match(value) if isinstance(value, str) else None
    if not match:
        return None
    a, b = int(match.group(1)), int(match.group(2))
    if a == 0 or b == 0:
        return None
    # the model's own spelling when the ratio is one it knows ("42:18" -> "21:9", not "7:3")
    for known in (*BASE_ASPECTS, *EXTRA_ASPECTS):
        x, y = (int(v) for v in known.split(":"))
        if a * y == b * x:
            return known
    g = math.gcd(a, b)
    return f"{a // g}:{b // g}"


def normalise_size(value: str) -> str | None:
    """'2k', '2K', '2048' -> '2K'; '512' -> '512'; None for anything else."""
    text = str(value).strip().upper()
    if text in SIZE_PIXELS:
        return text
    for name, pixels in SIZE_PIXELS.items():
        if text == str(pixels):
            return name
    return None


def _ratio(aspect: str) -> float:
    a, b = aspect.split(":")
    return int(a) / int(b)


def nearest_aspect(width: float, height: float, aspects: Sequence[str]) -> str:
    """The supported ratio closest in shape (log distance, so 2:1 and 1:2 are symmetric)."""
    target = math.log(width / height)
    return min(aspects, key=lambda a: abs(math.log(_ratio(a)) - target))


def size_covering(
    model: str,
    aspect: str,
    sizes: Sequence[str],
    *,
    width: int | None = None,
    height: int | None = None,
) -> tuple[str, bool]:
    """The smallest size whose real output (OUTPUT_DIMENSIONS) covers the request at this
    aspect: the longer side when both width and height are given, else the one that is.
    (largest, False) when none does."""
    ordered = [s for s in SIZES_ORDER if s in sizes]
    for name in ordered:
        out_w, out_h = output_dimensions(model, aspect, name)
        if width and height:
            covered = max(out_w, out_h) >= max(width, height)
        else:
            covered = out_w >= (width or 0) and out_h >= (height or 0)
        if covered:
            return name, True
    return ordered[-1], False


def aspect_problem(value: str, cap: ModelCapability, where: str) -> str | None:
    """None if the aspect is available on the model, else the message for it."""
    norm = normalise_aspect(value)
    if norm is None:
        return f"{where}: '{short(value)}' is not an aspect ratio; write it like 16:9"
    if norm in cap.aspect_ratios:
        return None
    a, b = norm.split(":")
    near = nearest_aspect(int(a), int(b), cap.aspect_ratios)
    return (
        f"{where}: aspect ratio {norm} is not available on {cap.name} (nearest: {near}); "
        f"it has {', '.join(cap.aspect_ratios)}"
    )


def size_problem(value: str, cap: ModelCapability, where: str) -> str | None:
    norm = normalise_size(value)
    if norm is not None and norm in cap.sizes:
        return None
    shown = norm or short(value)
    return f"{where}: size {shown} is not available on {cap.name}; it has {', '.join(cap.sizes)}"


# ---- the checks ------------------------------------------------------------------------------


def _describes_something(data: dict[str, object]) -> bool:
    return any(
        key not in _NON_DESCRIPTIVE and value not in (None, "", [], {})
        for key, value in data.items()
    )


def _input_problems(spec: Spec, cap: ModelCapability) -> list[str]:
    problems: list[str] = []
    for i, item in enumerate(spec.inputs):
        if item.type != "image":
            problems.append(f'inputs[{i}].type: only "image" inputs are supported')
        try:
            parse_reference(item.data)
        except SpecError as exc:
            problems.extend(f"inputs[{i}].data: {p}" for p in exc.problems)
    count = len(spec.inputs)
    if count > cap.max_input_images:
        problems.append(
            f"{count} input images, but {cap.name} takes at most {cap.max_input_images}; "
            "remove some"
        )
    anchors = sum(1 for item in spec.inputs if item.role == "identity_anchor")
    if anchors > cap.max_identity_anchors:
        problems.append(
            f"{anchors} identity anchors, but {cap.name} keeps at most "
            f"{cap.max_identity_anchors}; use fewer anchors"
        )
    problems.extend(reference_kind_problems(spec, cap, None))
    if spec.task == "edit_image" and count == 0:
        problems.append(
            "edit_image needs the image to edit: attach it, or add "
            '"inputs": [{"type": "image", "data": "attachment:1", "role": "edit_target"}]'
        )
    if spec.task == "blend_images" and count < 2:
        problems.append(f"blend_images needs at least 2 input images (got {count})")
    return problems


# ---- reference images by kind ----------------------------------------------------------------
#
# Gemini keeps only so many references faithful per kind (the capability table in
# bot.config): high-fidelity objects, characters (people, faces), style references.
# How an input counts:
#   role "style", or a saved anchor of kind "style" whatever its role        -> style
#   role "identity_anchor", anchor kind "object" or "product"                 -> object
#   role "identity_anchor", anchor kind "face" or "character"                 -> character
#   role "identity_anchor" with no kind (an attachment, the chain's image)    -> character
#       (what people anchor without saying so is nearly always a person; an object is
#       counted as one once saved with /anchor save kind:object or kind:product)
#   role "reference" or "edit_target" (not a style anchor)                    -> the total only
# A saved anchor's kind is only known once it is looked up: validate() checks what the spec
# itself says (roles, attachments), check_references() the rest once the images are resolved.

REFERENCE_KINDS: tuple[str, ...] = ("object", "character", "style")
# how messages name each kind: (n of them, none of them)
_KIND_WORDS: dict[str, tuple[str, str]] = {
    "object": ("identity anchors are objects or products", "identities of objects"),
    "character": ("identity anchors are characters or faces", "identities of characters or faces"),
    "style": ("style references", "style references"),
}


def reference_kind(role: str, anchor_kind: str | None) -> str | None:
    """'object', 'character', 'style', or None for inputs that count only towards the total."""
    kind = (anchor_kind or "").strip().lower()
    if role == "style" or kind == "style":
        return "style"
    if role != "identity_anchor":
        return None
    return "object" if kind in ("object", "product") else "character"


def _kind_limit(cap: ModelCapability, kind: str) -> int | None:
    return {"object": cap.max_objects, "character": cap.max_characters, "style": cap.max_styles}[
        kind
    ]


def _paths(indexes: Sequence[int]) -> str:
    shown = ", ".join(f"inputs[{i}]" for i in indexes[:6])
    return shown + (", …" if len(indexes) > 6 else "")


def _roomier_model(cap: ModelCapability, kind: str) -> str:
    """', or choose Nano Banana 2 (up to 10)' when another model keeps more of this kind."""
    mine = _kind_limit(cap, kind) or 0
    roomier = [
        (limit, other.name)
        for other in CAPABILITIES.values()
        if other.id != cap.id and (limit := _kind_limit(other, kind)) is not None and limit > mine
    ]
    if not roomier:
        return ""
    limit, name = max(roomier, key=lambda pair: pair[0])  # the first of the roomiest
    return f", or choose {name} (up to {limit})"


def reference_kind_problems(
    spec: Spec, cap: ModelCapability, anchor_kinds: Sequence[str | None] | None
) -> list[str]:
    """Inputs over the model's per-kind limits. `anchor_kinds` (one per input, None where it
    has none) once resolved; None before, when saved anchors are not counted yet."""
    by_kind: dict[str, list[int]] = {kind: [] for kind in REFERENCE_KINDS}
    for i, item in enumerate(spec.inputs):
        if anchor_kinds is None:
            if item.role != "style" and _is_anchor(item.data):
                continue  # its kind is known once the anchor is looked up
            kind = reference_kind(item.role, None)
        else:
            kind = reference_kind(item.role, anchor_kinds[i] if i < len(anchor_kinds) else None)
        if kind is not None:
            by_kind[kind].append(i)
    problems: list[str] = []
    for kind, indexes in by_kind.items():
        limit = _kind_limit(cap, kind)
        if limit is None or len(indexes) <= limit:
            continue
        some, none = _KIND_WORDS[kind]
        if limit == 0:
            problems.append(
                f"{cap.name} does not keep {none} ({_paths(indexes)}): give them role "
                f'"reference"{_roomier_model(cap, kind)}'
            )
        else:
            problems.append(
                f"{len(indexes)} {some} ({_paths(indexes)}), but {cap.name} keeps at most "
                f"{limit} consistent; use fewer{_roomier_model(cap, kind)}"
            )
    return problems


def _is_anchor(data: str) -> bool:
    try:
        return parse_reference(data).kind == "anchor"
    except SpecError:
        return False


def check_references(spec: Spec, model: str, images: Sequence[ResolvedImage]) -> None:
    """Once the inputs are resolved (saved anchors' kinds known), before the call: the
    per-kind reference limits. SpecError with every problem."""
    cap = model_capability(model)
    problems = reference_kind_problems(spec, cap, [image.anchor_kind for image in images])
    if problems:
        raise SpecError(problems)


def _output_problems(spec: Spec, cap: ModelCapability) -> list[str]:
    fmt = spec.output_format
    if fmt is None:
        return []
    problems = [
        p
        for p in (
            aspect_problem(fmt.aspect_ratio, cap, "output_format.aspect_ratio")
            if fmt.aspect_ratio is not None
            else None,
            size_problem(fmt.resolution, cap, "output_format.resolution")
            if fmt.resolution is not None
            else None,
        )
        if p
    ]
    if fmt.mime_type is not None and fmt.mime_type.lower() not in OUTPUT_MIME_TYPES:
        problems.append(
            f"output_format.mime_type: '{short(fmt.mime_type)}' is not an output type; "
            f"use {' or '.join(OUTPUT_MIME_TYPES)}"
        )
    return problems


def validate(spec: Spec, model: str) -> list[str]:
    """Problems -> SpecError (all of them); returns warnings (e.g. a long prompt)."""
    cap = model_capability(model)
    data = spec.to_dict()
    structural = check_structure(data)
    if structural:
        raise SpecError(structural)
    problems: list[str] = []
    if "contents" in data or "candidates" in data:
        problems.append(
            "this looks like a Gemini API request or response, not a prompt spec; "
            'send the prompt itself, e.g. {"task": "generate_image", "subject": "..."}'
        )
    size = len(compact_json(data).encode("utf-8"))
    if size > MAX_SPEC_BYTES:
        problems.append(
            f"the spec is {size / 1024:.1f} KB; the limit is {MAX_SPEC_BYTES // 1024} KB — "
            "shorten descriptions or split the work into edit steps"
        )
    problems.extend(_input_problems(spec, cap))
    problems.extend(_output_problems(spec, cap))
    if spec.task == "generate_image" and not _describes_something(data):
        problems.append('nothing to draw: add a "subject" (text or object) describing the image')
    elif spec.task == "edit_image" and not _describes_something(data):
        problems.append('say what to change: add "changes", e.g. "make the sky stormy"')
    if problems:
        raise SpecError(problems)
    warnings: list[str] = []
    tokens = estimate_tokens(compact_json(model_view(spec)))
    if tokens > TOKEN_WARNING:
        warnings.append(
            f"the prompt is about {tokens} tokens; past ~{TOKEN_WARNING} the model may "
            "overlook details — trim it"
        )
    return warnings
