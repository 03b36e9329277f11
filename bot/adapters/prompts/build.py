"""prepare(): any request (text, JSON, options, defaults) -> one validated spec for a model."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.adapters.prompts.errors import SpecError, short
from bot.adapters.prompts.parse import normalise, parse_prompt_text
from bot.adapters.prompts.references import parse_reference
from bot.adapters.prompts.spec import InputRef, Spec, check_json, check_structure
from bot.adapters.prompts.validate import (
    aspect_problem,
    model_capability,
    nearest_aspect,
    normalise_aspect,
    normalise_size,
    size_covering,
    size_problem,
    validate,
)
from bot.config import ModelCapability, UnknownModelError, output_dimensions, resolve_model

SUMMARY_LIMIT = 200


@dataclass
class RequestOptions:
    """What slash-command options contribute; every field optional."""

    model: str | None = None
    size: str | None = None
    aspect: str | None = None
    negative: str | None = None
    style: str | None = None
    task: str | None = None
    changes: str | None = None
    # appended unless the same reference is already in the spec's inputs
    inputs: list[InputRef] = field(default_factory=list)
    # names -> InputRef(data="anchor:NAME", role="identity_anchor"), deduplicated
    anchors: list[str] = field(default_factory=list)


@dataclass
class Defaults:
    """From the user's /settings or the bot's config."""

    model: str
    size: str
    aspect: str


@dataclass
class PreparedSpec:
    spec: Spec
    model: str  # canonical id
    size: str
    aspect: str
    warnings: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One short line of what was asked, for embeds and history."""
        return summarise(self.spec)

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height) in pixels of the image the model will make (OUTPUT_DIMENSIONS)."""
        return output_dimensions(self.model, self.aspect, self.size)


# ---- summary ---------------------------------------------------------------------------------


def _flatten(value: object, out: list[str], budget: int = 12) -> None:
    """Text leaves of a value, in order, for a human summary."""
    if len(out) >= budget:
        return
    if isinstance(value, str):
        if value.strip():
            out.append(value.strip())
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        out.append(str(value))
    elif isinstance(value, dict):
        for child in value.values():
            _flatten(child, out, budget)
    elif isinstance(value, list):
        for child in value:
            _flatten(child, out, budget)


def _clip(text: str, limit: int = SUMMARY_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_NOT_SUBJECT = frozenset({"rules", "consistency_rules", "negative", "quality", "text"})


def summarise(spec: Spec) -> str:
    """changes for an edit, else the subject(s), else the first descriptive text."""
    data = spec.to_dict()
    parts: list[str] = []
    if spec.task == "edit_image" and data.get("changes"):
        _flatten(data["changes"], parts)
        return _clip("Edit: " + "; ".join(parts))
    # the subject, else an author's own key such as "product" (extras carry the subject
    # in many community specs), before the known styling sections
    extras = [k for k in (spec.model_extra or {}) if k not in _NOT_SUBJECT]
    for key in ("subject", "subjects", *extras):
        if data.get(key):
            _flatten(data[key], parts)
            if parts:
                break
    if not parts and data.get("changes"):
        _flatten(data["changes"], parts)
    if not parts:
        skip = {"task", "inputs", "output_format", "metadata", "chain_id", "negative_prompt"}
        for key, value in data.items():
            if key not in skip:
                _flatten(value, parts)
    if not parts:
        words = {"blend_images": "Blend of the input images", "edit_image": "Edit"}
        return words.get(spec.task, spec.task)
    prefix = "Blend: " if spec.task == "blend_images" else ""
    return _clip(prefix + ", ".join(parts))


# ---- merging options -------------------------------------------------------------------------


def _describe_old(label: str, old: object) -> str:
    if isinstance(old, dict | list):
        return f"the {label} {'object' if isinstance(old, dict) else 'list'} in the JSON"
    return f'"{short(old)}" in the JSON'


def _ref_key(data: str) -> str:
    try:
        return str(parse_reference(data))
    except SpecError:
        return data.strip()


def _merge_options(
    data: dict[str, Any], options: RequestOptions, overrides: list[str]
) -> list[str]:
    """Apply the text options and the extra inputs to the dict in place; returns problems."""
    problems: list[str] = []
    for label, key, value in (
        ("task", "task", options.task),
        ("negative prompt", "negative_prompt", options.negative),
        ("style", "style", options.style),
        ("changes", "changes", options.changes),
    ):
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        value = value.strip()
        old = data.get(key)
        if old is not None and old != value:
            if key == "task":
                overrides.append(f"task {value} from the command replaced {short(old)} in the JSON")
            else:
                overrides.append(
                    f'{label} "{short(value)}" from the command replaced '
                    f"{_describe_old(label, old)}"
                )
        data[key] = value
    extra: list[dict[str, Any]] = [i.model_dump(exclude_none=True) for i in options.inputs]
    for name in options.anchors:
        name = name.strip()
        if name:
            extra.append({"type": "image", "data": f"anchor:{name}", "role": "identity_anchor"})
    if extra:
        current = data.get("inputs")
        if current is None:
            current = []
        if not isinstance(current, list):
            problems.append("inputs: expected a list, so the command's images cannot be added")
            return problems
        current = list(current)
        seen = {
            _ref_key(item["data"])
            for item in current
            if isinstance(item, dict) and isinstance(item.get("data"), str)
        }
        for item in extra:
            key = _ref_key(item["data"])
            if key not in seen:
                seen.add(key)
                current.append(item)
        data["inputs"] = current
    return problems


# ---- aspect and size -------------------------------------------------------------------------


def _json_aspect(fmt: dict[str, Any], cap: ModelCapability, warnings: list[str]) -> str | None:
    """The aspect the JSON asks for, explicitly or through width and height."""
    aspect = fmt.get("aspect_ratio")
    width, height = fmt.get("width"), fmt.get("height")
    if aspect is None and width and height:
        aspect = nearest_aspect(width, height, cap.aspect_ratios)
        a, b = (int(x) for x in aspect.split(":"))
        if abs(width / height - a / b) > 0.01 * (a / b):
            warnings.append(
                f"{width}×{height} is not a shape {cap.name} makes; using {aspect}, the nearest"
            )
    return aspect if isinstance(aspect, str) else None


def _json_size(
    fmt: dict[str, Any], cap: ModelCapability, aspect: str, warnings: list[str]
) -> str | None:
    """The size the JSON asks for: `resolution`, else the smallest one whose real output at
    `aspect` covers the requested width/height (the longer side when both are given)."""
    size = fmt.get("resolution")
    width, height = fmt.get("width"), fmt.get("height")
    if size is not None or not (width or height) or aspect not in cap.aspect_ratios:
        return size if isinstance(size, str) else None
    size, covered = size_covering(cap.id, aspect, cap.sizes, width=width, height=height)
    if not covered:
        out_w, out_h = output_dimensions(cap.id, aspect, size)
        asked = f"{width}×{height}" if width and height else f"{width or height} px"
        warnings.append(
            f"{asked} is more than {cap.name} makes at {aspect}; using {size}, its largest "
            f"size ({out_w}×{out_h})"
        )
    return size


@dataclass(frozen=True)
class _Setting:
    """Aspect or size: how to spell it canonically and how to check it against a model."""

    label: str  # as the command option is called
    json_key: str  # inside output_format
    normalise: Callable[[str], str | None]
    problem: Callable[[str, ModelCapability, str], str | None]


_ASPECT = _Setting("aspect", "aspect_ratio", normalise_aspect, aspect_problem)
_SIZE = _Setting("size", "resolution", normalise_size, size_problem)


@dataclass
class _Outcome:
    problems: list[str]
    warnings: list[str]
    overrides: list[str]


def _choose(
    setting: _Setting,
    option: str | None,
    from_json: str | None,
    default: str,
    cap: ModelCapability,
    fallback: str,
    out: _Outcome,
) -> str:
    """options > JSON > defaults. Explicit values must fit the model; a default that does not
    fit falls back to the model's own default with a warning (the user did not ask for it)."""
    label = setting.label
    if option is not None and option.strip():
        problem = setting.problem(option, cap, label)
        if problem:
            out.problems.append(problem)
            return fallback
        value = setting.normalise(option) or fallback
        if from_json is not None and setting.normalise(from_json) != value:
            out.overrides.append(
                f"{label} {value} from the command replaced {short(from_json)} in the JSON"
            )
        return value
    if from_json is not None:
        problem = setting.problem(from_json, cap, f"output_format.{setting.json_key}")
        if problem:
            out.problems.append(problem)
            return fallback
        return setting.normalise(from_json) or fallback
    if setting.problem(default, cap, label) is None:
        return setting.normalise(default) or fallback
    out.warnings.append(
        f"your default {label} {default} is not available on {cap.name}; using {fallback}"
    )
    return fallback


# ---- prepare ---------------------------------------------------------------------------------


def _resolve_model_name(name: str) -> str:
    try:
        return resolve_model(name)
    except UnknownModelError as exc:
        raise SpecError(str(exc)) from None


def prepare(
    raw: str | dict[str, Any], options: RequestOptions | None, defaults: Defaults
) -> PreparedSpec:
    """parse -> normalise -> merge options -> aspect/size -> validate; SpecError on problems."""
    options = options or RequestOptions()
    if isinstance(raw, str):
        data = parse_prompt_text(raw)
    elif isinstance(raw, dict):
        structural = check_json(raw)  # depth and JSON-ness before copying anything
        if structural:
            raise SpecError(structural)
        data = copy.deepcopy(raw)
    else:
        raise SpecError("a spec must be a JSON object or text")
    model = _resolve_model_name(options.model or defaults.model)
    cap = model_capability(model)
    data, problems = normalise(data)
    overrides: list[str] = []
    warnings: list[str] = []
    problems += _merge_options(data, options, overrides)
    problems += check_structure(data)
    if problems:
        # the command's own options are still worth checking: one round trip fixes all
        for value, check, label in (
            (options.aspect, aspect_problem, "aspect"),
            (options.size, size_problem, "size"),
        ):
            option_problem = check(value, cap, label) if value and value.strip() else None
            if option_problem:
                problems.append(option_problem)
        raise SpecError(problems)

    fmt: dict[str, Any] = dict(data.get("output_format") or {})
    fallback_size = cap.default_size if cap.default_size in cap.sizes else cap.sizes[0]
    out = _Outcome(problems, warnings, overrides)
    json_aspect = _json_aspect(fmt, cap, warnings)
    aspect = _choose(_ASPECT, options.aspect, json_aspect, defaults.aspect, cap, "1:1", out)
    # the size follows the aspect: width/height are covered by that aspect's real output
    # (unless the command names a size; it wins over the JSON anyway)
    if options.size is not None and options.size.strip():
        json_size = fmt.get("resolution") if isinstance(fmt.get("resolution"), str) else None
    else:
        json_size = _json_size(fmt, cap, aspect, warnings)
    size = _choose(_SIZE, options.size, json_size, defaults.size, cap, fallback_size, out)
    if problems:
        raise SpecError(problems)
    fmt["aspect_ratio"] = aspect
    fmt["resolution"] = size
    data["output_format"] = fmt
    spec = Spec.from_dict(data)
    warnings += validate(spec, model)
    return PreparedSpec(
        spec=spec, model=model, size=size, aspect=aspect, warnings=warnings, overrides=overrides
    )
