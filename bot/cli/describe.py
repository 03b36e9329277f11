"""`python -m bot describe IMAGE [--detail D] [--model M] [--out FILE]`: what /describe does,
without Discord.

The image is checked and normalised like an attachment (size, type sniffed from the bytes),
then DESCRIBE_MODEL writes a spec of it with structured output, validated like any spec (one
corrected retry if its JSON is unusable). The spec goes to stdout (or to FILE with --out, the
path then printed), ready for `python -m bot render`; the two-line summary, model, tokens and
estimated cost go to stderr.

Exit statuses: those of `render` (bot.cli.render): 0 written; 1 the image cannot be used;
2 configuration or usage; 3 request blocked; 4 answer blocked; 6-12 Gemini's failures;
13 FILE cannot be written; 14 the model's answer was not a usable spec, twice.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from bot.adapters import imaging
from bot.adapters.describe import DEFAULT_DETAIL, Description, describe_image
from bot.adapters.gemini import Failure, GeminiClient
from bot.cli.prompt import defaults_for
from bot.cli.render import (
    EXIT_FOR_FAILURE,
    EXIT_INVALID_SPEC,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_WRITE_FAILED,
)
from bot.config import Settings, UnknownModelError, resolve_model


def _err(line: str) -> None:
    print(line, file=sys.stderr)


def describe_file(
    path: Path,
    *,
    settings: Settings,
    detail: str = DEFAULT_DETAIL,
    model: str | None = None,
    out: Path | None = None,
) -> int:
    """Describe one image file; the exit status."""
    if model is not None:
        try:
            resolve_model(model)
        except UnknownModelError as exc:
            _err(f"error: {exc}")
            return EXIT_USAGE
    try:
        size = path.stat().st_size
        imaging.check_declared_size(
            size, max_bytes=settings.max_attachment_bytes, filename=path.name
        )
        image = imaging.normalise_inbound(
            path.read_bytes(),
            filename=path.name,
            max_side=settings.inbound_max_side,
            max_pixels=settings.max_image_pixels,
        )
    except OSError as exc:
        _err(f"{path}: cannot read it: {exc.strerror or exc}")
        return EXIT_INVALID_SPEC
    except imaging.ImageError as exc:
        _err(f"{path}: {exc}")
        return EXIT_INVALID_SPEC
    result = asyncio.run(_describe(image, settings, detail=detail, model=model))
    if isinstance(result, Failure):
        _err(f"error: {result.message}")
        return EXIT_FOR_FAILURE[result.kind]
    text = json.dumps(result.spec, indent=2, ensure_ascii=False) + "\n"
    if out is not None:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            _err(f"error: cannot write {out}: {exc.strerror or exc}")
            return EXIT_WRITE_FAILED
        print(out)
    else:
        sys.stdout.write(text)
    for line in result.summary.splitlines():
        _err(line)
    usage = result.usage
    _err(
        f"{result.model}: {usage.prompt_tokens} in, {usage.output_tokens + usage.thoughts_tokens} "
        f"out (thinking included), ~${result.cost:.4f}, {result.calls} call(s), "
        f"{result.latency:.1f} s"
    )
    return EXIT_OK


async def _describe(
    image: imaging.InboundImage, settings: Settings, *, detail: str, model: str | None
) -> Description | Failure:
    async with GeminiClient(settings) as client:
        return await describe_image(
            client,
            model=settings.describe_model,
            image=image.data,
            mime_type=image.mime_type,
            width=image.width,
            height=image.height,
            detail=detail,
            defaults=defaults_for(model, settings),
            seconds=settings.describe_timeout_seconds,
        )
