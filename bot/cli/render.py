"""`python -m bot render FILE --out DIR`: one generation from a JSON prompt file, without Discord.

Reads the spec (or a template whose placeholders all have defaults), resolves `attachment:N`
to the N-th `--image` file, sends one request and writes into DIR:

- `STEM.png` (or `.jpg`/`.webp`, by the returned type; `STEM-2.png`… when several images), and
- `STEM.render.json`: the spec, the exact JSON text sent, model, model version, size, aspect,
  token usage, estimated cost, seconds, attempts, the model's text, warnings and image files.

Paths written go to stdout, one a line; problems go to stderr as one line each.

Exit statuses (scripts can branch on them):

| status | meaning                                                                 |
|--------|-------------------------------------------------------------------------|
| 0      | image(s) written                                                        |
| 1      | invalid spec, unreadable spec or `--image` file, dangling reference     |
| 2      | configuration or usage error (missing key, unknown `--model`, bad --out)|
| 3      | prompt blocked by Google's safety filters                               |
| 4      | generated image blocked (finish reason such as IMAGE_SAFETY)            |
| 5      | the model answered without an image                                     |
| 6      | rate limited (after retries)                                            |
| 7      | model overloaded (after retries)                                        |
| 8      | timed out                                                               |
| 9      | Gemini rejected the request as invalid                                  |
| 10     | the API key was rejected                                                |
| 11     | Gemini server error (after retries)                                     |
| 12     | network error (after retries)                                           |
| 13     | the result could not be written to DIR                                  |
| 14     | a text model's answer was unusable (`describe`: invalid spec twice)     |
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bot.adapters.gemini import Failure, FailureKind, GeminiClient, Generation
from bot.adapters.prompts import (
    CompiledRequest,
    PreparedSpec,
    SpecError,
    check_references,
    compile_request,
    resolve_inputs,
)
from bot.cli.prompt import FileResolver, defaults_for, load_spec_file
from bot.config import Settings, UnknownModelError, resolve_model

EXIT_OK = 0
EXIT_INVALID_SPEC = 1
EXIT_USAGE = 2
EXIT_WRITE_FAILED = 13
EXIT_FOR_FAILURE: dict[FailureKind, int] = {
    FailureKind.PROMPT_BLOCKED: 3,
    FailureKind.OUTPUT_BLOCKED: 4,
    FailureKind.NO_IMAGE: 5,
    FailureKind.RATE_LIMITED: 6,
    FailureKind.OVERLOADED: 7,
    FailureKind.TIMED_OUT: 8,
    FailureKind.INVALID_REQUEST: 9,
    FailureKind.AUTH: 10,
    FailureKind.SERVER_ERROR: 11,
    FailureKind.NETWORK: 12,
    FailureKind.BAD_ANSWER: 14,
}
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


def render_file(
    path: Path,
    *,
    out: Path,
    model: str | None,
    settings: Settings,
    images: list[Path],
) -> int:
    """Run one generation for `path`, write the results into `out`; the exit status."""
    if model is not None:
        try:
            resolve_model(model)
        except UnknownModelError as exc:
            _err(f"error: {exc}")
            return EXIT_USAGE
    try:
        prepared = _read_spec(path, model=model, settings=settings)
        compiled = asyncio.run(_compile(prepared, images))
    except SpecError as exc:
        for problem in exc.problems:
            _err(f"{path}: {problem}")
        return EXIT_INVALID_SPEC
    for warning in prepared.warnings:
        _err(f"{path}: warning: {warning}")
    try:  # before the paid call: a bad --out should cost nothing
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _err(f"error: cannot create output folder {out}: {exc.strerror or exc}")
        return EXIT_USAGE

    result = asyncio.run(_generate(compiled, settings))
    if isinstance(result, Failure):
        _err(f"error: {result.message}")
        return EXIT_FOR_FAILURE[result.kind]
    try:
        written = _write(path, out, prepared, compiled, result)
    except OSError as exc:
        _err(f"error: cannot write to {out}: {exc.strerror or exc}")
        return EXIT_WRITE_FAILED
    for item in written:
        print(item)
    return EXIT_OK


# ---------------------------------------------------------------------------------------------


def _err(line: str) -> None:
    print(line, file=sys.stderr)


def _read_spec(path: Path, *, model: str | None, settings: Settings) -> PreparedSpec:
    return load_spec_file(path, defaults_for(model, settings))


async def _compile(prepared: PreparedSpec, images: list[Path]) -> CompiledRequest:
    # FileResolver: attachment:N -> the N-th --image; anchors and chains need the bot's database.
    resolved = await resolve_inputs(prepared.spec, FileResolver(list(images)))
    check_references(prepared.spec, prepared.model, resolved)  # per-kind limits, before the call
    return compile_request(prepared, resolved)


async def _generate(compiled: CompiledRequest, settings: Settings) -> Generation | Failure:
    async with GeminiClient(settings) as client:
        return await client.generate(
            model=compiled.model,
            contents=[compiled.user_content()],
            config=compiled.config,
            size=compiled.size,
        )


def _write(
    path: Path,
    out: Path,
    prepared: PreparedSpec,
    compiled: CompiledRequest,
    result: Generation,
) -> list[Path]:
    stem = path.stem or "render"
    names: list[Path] = []
    for index, image in enumerate(result.images, start=1):
        suffix = "" if len(result.images) == 1 else f"-{index}"
        target = out / f"{stem}{suffix}{_EXTENSIONS.get(image.mime_type, '.png')}"
        if target.resolve() == path.resolve():  # never overwrite the input
            target = target.with_stem(f"{target.stem}-out")
        target.write_bytes(image.data)
        names.append(target)
    record = {
        "source": str(path),
        "spec": prepared.spec.to_dict(),
        "prompt_text": compiled.text,  # the JSON text part exactly as sent
        "model": result.model,
        "model_version": result.model_version,
        "size": compiled.size,
        "aspect": compiled.aspect,
        "output_dimensions": list(prepared.dimensions),  # what the model makes (config table)
        "usage": asdict(result.usage),
        "cost": result.cost,
        "seconds": round(result.latency, 3),
        "attempts": result.attempts,
        "text": result.text,
        "warnings": prepared.warnings,
        "images": [
            {"file": name.name, "mime_type": image.mime_type, "bytes": len(image.data)}
            for name, image in zip(names, result.images, strict=True)
        ],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    record_path = out / f"{stem}.render.json"
    record_path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return [*names, record_path]
