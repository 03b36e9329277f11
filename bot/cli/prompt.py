"""`python -m bot prompt validate|compile`: the engine for prompt authors and scripts.

`compile` prints the exact REST body on stdout and, on stderr, warnings and the size of the
image it will make ("FILE: output: 848×1264 px (2:3, 1K) from Nano Banana Pro").
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

from bot.adapters.prompts.build import Defaults, PreparedSpec, prepare
from bot.adapters.prompts.compile import compile_request, rest_body
from bot.adapters.prompts.errors import SpecError
from bot.adapters.prompts.references import Reference, ResolvedImage, describe, resolve_inputs
from bot.adapters.prompts.templates import Template, parse_template
from bot.adapters.prompts.validate import check_references
from bot.config import Settings, UnknownModelError, model_display_name, resolve_model


def sniff_image_type(data: bytes) -> str | None:
    """MIME type from the first bytes, for the input types Gemini takes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"):
            return "image/heic"
        if brand in (b"mif1", b"msf1", b"heif"):
            return "image/heif"
    return None


class FileResolver:
    """attachment:N -> the N-th --image file; anchors and chains exist only inside Discord."""

    def __init__(self, images: list[Path]) -> None:
        self.images = images

    async def resolve(self, ref: Reference, role: str) -> ResolvedImage:
        if ref.kind == "anchor":
            raise SpecError(
                f"anchor '{ref.value}' lives in the bot's database and cannot be used offline; "
                'pass the picture with --image and refer to it as "attachment:N"'
            )
        if ref.kind == "chain":
            raise SpecError(
                f"chain:{ref.value} exists only in a Discord thread; pass the picture with "
                '--image and refer to it as "attachment:N"'
            )
        index = int(ref.value)
        if index > len(self.images):
            raise SpecError(
                f"attachment:{index} needs at least {index} --image option(s) "
                f"(got {len(self.images)})"
            )
        path = self.images[index - 1]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SpecError(f"cannot read {path}: {exc.strerror or exc}") from None
        mime = sniff_image_type(data)
        if mime is None:
            raise SpecError(f"{path} is not a PNG, JPEG, WEBP or HEIC image")
        return ResolvedImage(data, mime, describe(role, f"attachment {index}: {path.name}"))


def _template_name(path: Path) -> str:
    return (re.sub(r"[^A-Za-z0-9_-]", "_", path.stem).lstrip("_-") or "template")[:40]


def _is_template(text: str) -> bool:
    """A file with placeholders, or the {"description", "spec"} wrapper."""
    if "{{" in text:
        return True
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(value, dict)
        and isinstance(value.get("spec"), dict)
        and set(value) <= {"description", "spec"}
    )


def defaults_for(model: str | None, settings: Settings) -> Defaults:
    return Defaults(
        model=model or settings.default_model,
        size=settings.default_size,
        aspect=settings.default_aspect,
    )


def load_spec_file(path: Path, defaults: Defaults, *, samples: bool = False) -> PreparedSpec:
    """Read and prepare one file; a template is filled with defaults (and samples if asked)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise SpecError(f"cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SpecError("not UTF-8 text") from None
    raw: str | dict[str, Any] = text
    if path.suffix.lower() == ".json" and not text.lstrip().startswith(("{", "//", "/*", "```")):
        raise SpecError("a .json prompt file must hold a JSON object ({...})")
    if _is_template(text):
        template: Template = parse_template(_template_name(path), text, source="builtin")
        raw = template.fill(template.sample_values() if samples else {})
    return prepare(raw, None, defaults)


def _check_model(model: str | None) -> bool:
    if model is None:
        return True
    try:
        resolve_model(model)
    except UnknownModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def validate_files(paths: list[Path], *, model: str | None, settings: Settings) -> int:
    """One line per problem ("FILE: problem"), "FILE: ok" for clean files; 1 if any problem."""
    if not _check_model(model):
        return 2
    defaults = defaults_for(model, settings)
    failed = False
    for path in paths:
        try:
            prepared = load_spec_file(path, defaults, samples=True)
        except SpecError as exc:
            failed = True
            for problem in exc.problems:
                print(f"{path}: {problem}")
            continue
        for warning in prepared.warnings:
            print(f"{path}: warning: {warning}")
        print(f"{path}: ok")
    return 1 if failed else 0


def compile_file(
    path: Path,
    *,
    model: str | None,
    settings: Settings,
    with_images: bool,
    images: list[Path],
) -> int:
    """Print the exact REST request body for one file; problems go to stderr, exit 1."""
    if not _check_model(model):
        return 2
    try:
        prepared = load_spec_file(path, defaults_for(model, settings), samples=False)
        resolved = asyncio.run(resolve_inputs(prepared.spec, FileResolver(images)))
        check_references(prepared.spec, prepared.model, resolved)
        compiled = compile_request(prepared, resolved)
    except SpecError as exc:
        for problem in exc.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return 1
    for warning in prepared.warnings:
        print(f"{path}: warning: {warning}", file=sys.stderr)
    # stdout stays the exact request body (pipe it to curl); what it makes goes beside it
    print(f"{path}: {output_line(prepared)}", file=sys.stderr)
    body = rest_body(compiled, with_images=with_images)
    print(json.dumps(body, indent=2, ensure_ascii=False))
    return 0


def output_line(prepared: PreparedSpec) -> str:
    """'output: 848×1264 px (2:3, 1K) from Nano Banana Pro' — the real size, from the table."""
    width, height = prepared.dimensions
    name = model_display_name(prepared.model)
    return f"output: {width}×{height} px ({prepared.aspect}, {prepared.size}) from {name}"
