"""Describe an image as a spec: a Gemini text model reads the picture and answers with a JSON
spec in the contract's schema, constrained by structured output (`response_mime_type`
application/json plus a `response_json_schema` generated from the spec model).

The answer is validated like any spec (`prepare`). If it is not usable (not JSON, not an
object, or failing validation), the model is asked once more, shown exactly what was wrong;
a second bad answer is a `Failure` of kind BAD_ANSWER with the problems. Both calls' tokens
are counted in the cost.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from google.genai import types

from bot.adapters.gemini import Failure, FailureKind, GeminiClient, TextAnswer, Usage
from bot.adapters.prompts import Defaults, PreparedSpec, SpecError, prepare
from bot.adapters.prompts.schema import DESCRIBE_EXCLUDED, describe_schema
from bot.adapters.prompts.validate import model_capability, nearest_aspect

log = logging.getLogger(__name__)

DETAIL_LEVELS: dict[str, str] = {
    "brief": "Keep it short: one line for each field, only what matters most.",
    "standard": (
        "Be specific and concrete: a short sentence or a small object for each field, "
        "with the colours, materials and shapes that make this picture what it is."
    ),
    "full": (
        "Be exhaustive: objects with several keys for the subject, style, environment, "
        "camera and lighting; every prop with its position; exact colours (names or hex), "
        "materials, textures and any text exactly as written."
    ),
}
DEFAULT_DETAIL = "standard"
MAX_PROBLEMS_SHOWN = 8

INSTRUCTIONS = """\
You write JSON prompts ("specs") for Google's Nano Banana image models.
Look at the attached picture and write the spec that would recreate it as closely as \
possible as a new image: a generate_image request, read by the image model top to bottom.
Describe what is visibly there (subject, style, setting, camera, lighting, layout, props, \
text), concretely, the way a director briefs an illustrator; do not interpret or invent a \
story. If the picture is a grid of separate panels, frames or sprites, set layout.grid to \
rows x columns (such as "3x3") and describe what the panels have in common.
Do not name real people; describe their appearance instead.
{detail}
Answer with the JSON object only."""

RETRY_INSTRUCTIONS = """\
That answer cannot be used as a spec:
{problems}
Answer again with the whole corrected JSON object only."""


@dataclass
class Description:
    """A described image: the spec (as a dict, ready to run) and what it cost."""

    spec: dict[str, Any]
    prepared: PreparedSpec
    text: str  # the model's accepted JSON answer
    model: str
    model_version: str | None
    usage: Usage
    cost: float
    latency: float
    calls: int  # 1, or 2 when the first answer had to be corrected
    first_problems: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return summary_lines(self.spec)


def _text_of(value: object, limit: int) -> str:
    """One line from a string or an object's text leaves."""
    parts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str) and node.strip():
            parts.append(node.strip())
        elif isinstance(node, dict):
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(value)
    text = " ".join(", ".join(parts).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def summary_lines(spec: dict[str, Any]) -> str:
    """Two short lines: what it shows, then how (style · lighting · camera)."""
    first = _text_of(spec.get("subject"), 180) or "An image"
    how = [
        _text_of(spec.get(key), 70)
        for key in ("style", "lighting", "camera", "environment")
        if spec.get(key)
    ]
    grid = spec.get("layout", {}).get("grid") if isinstance(spec.get("layout"), dict) else None
    if grid:
        how.insert(0, f"{grid} grid")
    second = " · ".join(h for h in how if h)[:240] or "No style details."
    return f"{first}\n{second}"


def image_aspect(width: int, height: int, model: str) -> str:
    """The aspect ratio the image model makes that is nearest to the picture's shape."""
    return nearest_aspect(width, height, model_capability(model).aspect_ratios)


def _json_problem(text: str) -> tuple[Any, list[str]]:
    try:
        return json.loads(text), []
    except json.JSONDecodeError as exc:
        return None, [f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"]


def check_answer(
    text: str, *, aspect: str, defaults: Defaults
) -> tuple[dict[str, Any], PreparedSpec] | list[str]:
    """The model's answer as a spec ready to run, or the problems with it.

    Keys only a request has (inputs, chain_id, changes, metadata) are dropped, and the
    aspect ratio is the picture's own, whatever the model guessed."""
    data, problems = _json_problem(text)
    if problems:
        return problems
    if not isinstance(data, dict):
        return ["the answer must be a JSON object with the spec's keys"]
    for key in DESCRIBE_EXCLUDED:
        data.pop(key, None)
    if data.get("task", "generate_image") != "generate_image":
        return [f"task: must be generate_image, not {json.dumps(data['task'])[:40]}"]
    data["task"] = "generate_image"
    subject = data.get("subject")
    if not subject or (isinstance(subject, str) and not subject.strip()):
        return ["subject: missing; say what the picture shows"]
    fmt = data.get("output_format")
    if fmt is not None and not isinstance(fmt, dict):
        return ["output_format: expected an object such as {\"aspect_ratio\": \"1:1\"}"]
    data["output_format"] = {"aspect_ratio": aspect}
    try:
        prepared = prepare(data, None, defaults)
    except SpecError as exc:
        return exc.problems[:MAX_PROBLEMS_SHOWN] or [str(exc)]
    return data, prepared


def describe_config(aspect_ratios: tuple[str, ...]) -> types.GenerateContentConfig:
    """Structured output; temperature and thinking left at the model's defaults (Google
    advises keeping Gemini 3 at its default temperature)."""
    return types.GenerateContentConfig(
        response_mime_type="application/json",
        response_json_schema=describe_schema(aspect_ratios),
    )


def _add(total: Usage, more: Usage) -> Usage:
    return Usage(
        prompt_tokens=total.prompt_tokens + more.prompt_tokens,
        output_tokens=total.output_tokens + more.output_tokens,
        thoughts_tokens=total.thoughts_tokens + more.thoughts_tokens,
        total_tokens=total.total_tokens + more.total_tokens,
    )


async def describe_image(
    gemini: GeminiClient,
    *,
    model: str,
    image: bytes,
    mime_type: str,
    width: int,
    height: int,
    detail: str,
    defaults: Defaults,
    seconds: float,
) -> Description | Failure:
    """Ask `model` for a spec of the image; one correction round if its JSON is unusable."""
    detail_text = DETAIL_LEVELS.get(detail, DETAIL_LEVELS[DEFAULT_DETAIL])
    cap = model_capability(defaults.model)
    aspect = image_aspect(width, height, cap.id)
    config = describe_config(cap.aspect_ratios)
    contents = [
        types.Content(
            role="user",
            parts=[
                types.Part.from_text(text=INSTRUCTIONS.format(detail=detail_text)),
                types.Part.from_bytes(data=image, mime_type=mime_type),
            ],
        )
    ]
    usage = Usage()
    cost = 0.0
    latency = 0.0
    first_problems: list[str] = []
    for call in (1, 2):
        answer = await gemini.generate_text(
            model=model, contents=contents, config=config, seconds=seconds
        )
        if isinstance(answer, Failure):
            answer.latency += latency
            return answer
        usage = _add(usage, answer.usage)
        cost += answer.cost
        latency += answer.latency
        checked = check_answer(answer.text, aspect=aspect, defaults=defaults)
        if not isinstance(checked, list):
            spec, prepared = checked
            return Description(
                spec=spec,
                prepared=prepared,
                text=answer.text,
                model=answer.model,
                model_version=answer.model_version,
                usage=usage,
                cost=round(cost, 6),
                latency=latency,
                calls=call,
                first_problems=first_problems,
            )
        log.info("describe answer %d from %s unusable: %s", call, model, checked[:3])
        if call == 1:
            first_problems = checked
            contents = [*contents, *_correction(answer, checked)]
            continue
        return Failure(
            FailureKind.BAD_ANSWER,
            "Gemini's description was not a usable spec, even after a second try ("
            + checked[0]
            + "). Try again, or try another image.",
            detail="; ".join(checked),
            latency=latency,
            attempts=2,
        )
    raise AssertionError("unreachable")  # pragma: no cover


def _correction(answer: TextAnswer, problems: list[str]) -> list[types.Content]:
    """The model's own answer (unchanged: thought signatures) and what was wrong with it."""
    listed = "\n".join(f"- {p}" for p in problems[:MAX_PROBLEMS_SHOWN])
    return [
        answer.content,
        types.Content(
            role="user",
            parts=[types.Part.from_text(text=RETRY_INSTRUCTIONS.format(problems=listed))],
        ),
    ]
