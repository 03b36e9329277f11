"""Text -> dict (JSON with line/column errors, or plain text), and the flat form -> rich form."""

from __future__ import annotations

import json
from typing import Any

from bot.adapters.prompts.errors import SpecError, short

# The raw text cap is looser than the 32 KB spec cap (pretty-printing adds whitespace); it
# only stops us parsing something absurd.
MAX_RAW_BYTES = 256 * 1024
# Keys of the flat "universal" form that belong in output_format in the rich form.
_FLAT_OUTPUT_KEYS = ("width", "height", "aspect_ratio", "resolution", "mime_type")
_SIZE_WORDS = {"512", "1k", "2k", "4k"}


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON; use a number or text")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key '{short(key)}'; keep only one")
        out[key] = value
    return out


def _hint(text: str, pos: int) -> str:
    """A human hint for the commonest ways people write not-quite-JSON."""
    rest = text[pos:].lstrip()
    before = text[:pos].rstrip()
    if rest.startswith(("//", "/*")):
        return "JSON has no comments; remove the // or /* */ parts"
    if rest.startswith("...") or rest.startswith("…"):
        return 'replace "..." with real values'
    if rest.startswith("'"):
        return 'use double quotes (") for keys and text'
    if before.endswith(",") and rest[:1] in ("}", "]"):
        return "remove the comma before the closing bracket"
    return ""


def _syntax_error(text: str, exc: json.JSONDecodeError) -> SpecError:
    msg = exc.msg[0].lower() + exc.msg[1:] if exc.msg else "invalid JSON"
    hint = _hint(text, exc.pos)
    line = f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {msg}"
    return SpecError(f"{line} ({hint})" if hint else line)


def _strip_code_fence(text: str) -> str:
    """Discord users paste ```json … ``` blocks; the fence is not part of the spec."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```") and len(stripped) >= 6:
        inner = stripped[3:-3]
        first, newline, rest = inner.partition("\n")
        if newline and first.strip().lower() in ("", "json", "jsonc", "json5"):
            return rest
        return inner
    return text


def parse_prompt_text(text: str) -> dict[str, Any]:
    """A JSON object if the text starts with "{" (after whitespace), else a plain-text spec."""
    if not isinstance(text, str):
        raise SpecError("the prompt must be text")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_RAW_BYTES:
        raise SpecError(
            f"the prompt is over {MAX_RAW_BYTES // 1024} KB; specs are limited to 32 KB"
        )
    text = _strip_code_fence(text)
    stripped = text.strip()
    if not stripped:
        raise SpecError("the prompt is empty; describe the image or paste a JSON spec")
    # A leading comment before a "{" is JSON with comments, not a plain-text prompt.
    looks_like_json = stripped.startswith("{") or (
        stripped.startswith(("//", "/*")) and "{" in stripped
    )
    if not looks_like_json:
        return {"task": "generate_image", "subject": stripped}
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _syntax_error(text, exc) from None
    except RecursionError:
        raise SpecError("nesting is deeper than 8 levels; flatten the structure") from None
    except ValueError as exc:  # from the hooks above
        raise SpecError(f"JSON problem: {exc}") from None
    if not isinstance(value, dict):
        raise SpecError("a spec must be a JSON object")
    return value


def _size_word(value: object) -> str | None:
    """'2k' / 2048 -> a size name when a flat `quality` or `resolution` plainly names one."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip().lower()
    return text.upper() if text in _SIZE_WORDS else None


def normalise(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Flat universal form -> rich form. Returns (new dict, problems). Input is not modified.

    prompt -> subject (when there is no subject); width/height/aspect_ratio/resolution/
    mime_type at the top level -> output_format; a quality that names a size -> resolution.
    Anything else stays where it is (the model reads unknown keys too).
    """
    out = dict(data)
    problems: list[str] = []
    if "prompt" in out and "subject" not in out and "subjects" not in out:
        out = {("subject" if k == "prompt" else k): v for k, v in out.items()}
    top_level = [k for k in _FLAT_OUTPUT_KEYS if k in out]
    fmt_raw = out.get("output_format")
    # a non-object output_format is reported by the structural check; leave things be
    if top_level and (fmt_raw is None or isinstance(fmt_raw, dict)):
        fmt: dict[str, Any] = dict(fmt_raw or {})
        for key in top_level:
            value = out.pop(key)
            if key in fmt and fmt[key] != value:
                problems.append(
                    f"{key} is given twice ({short(value)} at the top level, "
                    f"{short(fmt[key])} in output_format); keep one"
                )
                continue
            fmt[key] = value
        out["output_format"] = fmt
    if "quality" in out:
        size = _size_word(out["quality"])
        fmt_now = out.get("output_format")
        if size is not None and (fmt_now is None or isinstance(fmt_now, dict)):
            fmt2 = dict(fmt_now or {})
            if "resolution" not in fmt2:
                fmt2["resolution"] = size
                out.pop("quality")
                out["output_format"] = fmt2
    fmt_final = out.get("output_format")
    if isinstance(fmt_final, dict) and "resolution" in fmt_final:
        res = fmt_final["resolution"]
        if isinstance(res, int) and not isinstance(res, bool):
            out["output_format"] = {**fmt_final, "resolution": str(res)}
    return out, problems
