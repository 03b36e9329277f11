"""Templates: a JSON spec with {{name}} / {{name|default}} placeholders.

A placeholder inside a JSON string is replaced by the value, JSON-escaped (so a value with
quotes cannot break the document); one outside a string is replaced by a JSON value (a number,
true/false, an array or object as written, anything else as a string) and needs a default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.adapters.prompts.build import Defaults, prepare
from bot.adapters.prompts.errors import SpecError, short
from bot.adapters.prompts.parse import parse_prompt_text
from bot.adapters.prompts.spec import check_structure
from bot.config import CAPABILITIES

SAMPLE_VALUE = "sample"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
_INNER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|(.*))?$", re.DOTALL)
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
_WRAPPER_KEYS = {"description", "spec"}
# Stand-ins while the file is parsed as JSON: private-use characters, legal in JSON strings.
_OPEN, _CLOSE = "\ue000", "\ue001"


@dataclass
class Placeholder:
    name: str
    default: str | None


@dataclass(frozen=True)
class _Occurrence:
    start: int
    end: int
    name: str
    default: str | None
    in_string: bool

    def raw(self, text: str) -> str:
        return text[self.start : self.end]


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _scan(text: str) -> list[_Occurrence]:
    """Every {{…}} with whether it sits inside a JSON string; SpecError for malformed ones."""
    found: list[_Occurrence] = []
    problems: list[str] = []
    in_string = False
    i, n = 0, len(text)
    while i < n:
        if text.startswith("{{", i):
            end = text.find("}}", i + 2)
            newline = text.find("\n", i + 2)
            if end < 0 or (0 <= newline < end):
                problems.append(f"line {_line(text, i)}: '{{{{' is not closed with '}}}}'")
                break
            match = _INNER.match(text[i + 2 : end])
            if not match:
                raw = text[i : end + 2]
                problems.append(
                    f"line {_line(text, i)}: '{short(raw)}' is not a placeholder; "
                    "write {{name}} or {{name|default}} (letters, digits, _)"
                )
            else:
                default = match.group(2)
                found.append(
                    _Occurrence(
                        i,
                        end + 2,
                        match.group(1),
                        default.strip() if default is not None else None,
                        in_string,
                    )
                )
            i = end + 2
            continue
        char = text[i]
        if in_string and char == "\\":
            i += 2
            continue
        if char == '"':
            in_string = not in_string
        i += 1
    if problems:
        raise SpecError(problems)
    return found


def _placeholders(occurrences: list[_Occurrence]) -> list[Placeholder]:
    """Unique names in order of first use; a default anywhere applies to every use."""
    result: dict[str, Placeholder] = {}
    problems: list[str] = []
    for occ in occurrences:
        known = result.get(occ.name)
        if known is None:
            result[occ.name] = Placeholder(occ.name, occ.default)
        elif occ.default is not None:
            if known.default is None:
                known.default = occ.default
            elif known.default != occ.default:
                problems.append(
                    f"placeholder '{occ.name}' has two defaults "
                    f"('{short(known.default)}' and '{short(occ.default)}'); keep one"
                )
    if problems:
        raise SpecError(problems)
    return list(result.values())


def _json_value_text(value: str) -> str:
    """Text for a placeholder outside a string: JSON as written, else a JSON string."""
    stripped = value.strip()
    try:
        json.loads(stripped)
    except ValueError:
        return json.dumps(value, ensure_ascii=False)
    return stripped if stripped else '""'


@dataclass
class Template:
    name: str
    description: str
    body: str  # the spec part as JSON text, placeholders included
    source: str  # "builtin" or "guild"

    def placeholders(self) -> list[Placeholder]:
        return _placeholders(_scan(self.body))

    def missing(self, values: Mapping[str, str]) -> list[str]:
        return [p.name for p in self.placeholders() if p.default is None and p.name not in values]

    def fill(self, values: Mapping[str, str]) -> dict[str, Any]:
        """The spec with every placeholder replaced; SpecError for unknown or missing names."""
        occurrences = _scan(self.body)
        holders = _placeholders(occurrences)
        names = [p.name for p in holders]
        problems: list[str] = []
        unknown = [k for k in values if k not in names]
        if unknown:
            has = f"it has: {', '.join(names)}" if names else "it has no placeholders"
            problems.append(
                f"template '{self.name}' has no placeholder {', '.join(map(repr, unknown))}; {has}"
            )
        missing = self.missing(values)
        if missing:
            example = "; ".join(f"{m}=..." for m in missing)
            problems.append(
                f"template '{self.name}' needs a value for: {', '.join(missing)} "
                f'(vars: "{example}")'
            )
        if problems:
            raise SpecError(problems)
        defaults = {p.name: p.default for p in holders}
        pieces: list[str] = []
        pos = 0
        for occ in occurrences:
            pieces.append(self.body[pos : occ.start])
            given = occ.name in values
            value = str(values[occ.name]) if given else (occ.default or defaults[occ.name] or "")
            if occ.in_string:
                # a user's value is escaped; a default is already JSON text from the file
                pieces.append(json.dumps(value, ensure_ascii=False)[1:-1] if given else value)
            else:
                pieces.append(_json_value_text(value))
            pos = occ.end
        pieces.append(self.body[pos:])
        try:
            data = parse_prompt_text("".join(pieces))
        except SpecError as exc:
            raise exc.prefixed(f"template '{self.name}' after filling") from None
        structural = check_structure(data)
        if structural:
            raise SpecError(structural).prefixed(f"template '{self.name}'")
        return data

    def sample_values(self) -> dict[str, str]:
        """Values for placeholders without a default, so the template can be checked."""
        return {p.name: SAMPLE_VALUE for p in self.placeholders() if p.default is None}


def _sentinel(i: int) -> str:
    return f"{_OPEN}{i}{_CLOSE}"


def _restore(text: str, raw: list[str], *, quoted: list[bool]) -> str:
    """Put the original {{…}} text back where the stand-ins are."""
    for i, original in enumerate(raw):
        token = _sentinel(i)
        text = text.replace(f'"{token}"' if quoted[i] else token, original)
    return text


def _split(text: str) -> tuple[str, str]:
    """(description, body text) from a wrapper {"description", "spec"} or a bare spec."""
    occurrences = _scan(text)
    pieces: list[str] = []
    pos = 0
    for i, occ in enumerate(occurrences):
        pieces.append(text[pos : occ.start])
        pieces.append(_sentinel(i) if occ.in_string else f'"{_sentinel(i)}"')
        pos = occ.end
    pieces.append(text[pos:])
    probe = "".join(pieces)
    if not probe.strip().startswith("{"):
        raise SpecError("a template must be a JSON object")
    value = parse_prompt_text(probe)
    description = ""
    body: object = value
    if isinstance(value.get("spec"), dict):
        extra = set(value) - _WRAPPER_KEYS
        if extra:
            raise SpecError(
                f'unknown key(s) {", ".join(sorted(extra))} beside "spec"; a template file is '
                '{"description": "...", "spec": {...}}'
            )
        given = value.get("description", "")
        if not isinstance(given, str):
            raise SpecError("description: expected one line of text")
        description = given
        body = value["spec"]
    raw = [occ.raw(text) for occ in occurrences]
    quoted = [not occ.in_string for occ in occurrences]
    body_text = _restore(json.dumps(body, ensure_ascii=False, indent=2), raw, quoted=quoted)
    desc_text = _restore(description, raw, quoted=[False] * len(raw))
    return " ".join(desc_text.split()), body_text


def _check_fills(template: Template) -> None:
    """Filled with defaults and samples, the spec must be valid on at least one model."""
    for occ in _scan(template.body):
        if not occ.in_string and occ.default is None:
            holders = {p.name: p for p in template.placeholders()}
            if holders[occ.name].default is None:
                raise SpecError(
                    f"placeholder '{occ.name}' is outside a JSON string, so it needs a default, "
                    "e.g. {{" + occ.name + "|1024}}"
                )
    data = template.fill(template.sample_values())
    first: SpecError | None = None
    for model, cap in CAPABILITIES.items():
        try:
            prepare(data, None, Defaults(model=model, size=cap.default_size, aspect="1:1"))
            return
        except SpecError as exc:
            first = first or exc
    assert first is not None
    raise first.prefixed("filled with defaults/samples")


def parse_template(name: str, text: str, *, source: str = "guild") -> Template:
    """Parse and check a template (syntax, placeholders, the filled spec); SpecError."""
    if not _TEMPLATE_NAME.match(name or ""):
        raise SpecError(
            f"template name '{short(name)}': use 1–40 letters, digits, - or _ "
            "(starting with a letter or digit)"
        )
    description, body = _split(text)
    template = Template(name=name, description=description, body=body, source=source)
    template.placeholders()  # conflicting defaults
    _check_fills(template)
    return template


def load_templates(directory: Path) -> dict[str, Template]:
    """Every *.json in the folder (name = file stem); SpecError naming each bad file."""
    if not directory.is_dir():
        raise SpecError(f"template folder {directory} does not exist")
    templates: dict[str, Template] = {}
    problems: list[str] = []
    for path in sorted(directory.glob("*.json")):
        try:
            text = path.read_text(encoding="utf-8-sig")
            templates[path.stem] = parse_template(path.stem, text, source="builtin")
        except SpecError as exc:
            problems.extend(exc.prefixed(path.name).problems)
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path.name}: cannot read it ({exc.__class__.__name__})")
    if problems:
        raise SpecError(problems)
    return templates


# ---- "key=value; key2=value" -----------------------------------------------------------------


def _split_vars(text: str) -> list[str]:
    """Split on ; or newlines outside double quotes; \\; is a literal semicolon."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in ';"\\':
            current.append(text[i + 1])
            i += 2
            continue
        if char == '"':
            quoted = not quoted
            current.append(char)
        elif char in ";\n" and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    items.append("".join(current))
    return items


def parse_vars(text: str | None) -> dict[str, str]:
    """'color=red; size=large' -> {'color': 'red', 'size': 'large'}; SpecError on bad form."""
    if text is None or not text.strip():
        return {}
    values: dict[str, str] = {}
    problems: list[str] = []
    for item in _split_vars(text):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            problems.append(
                f"'{short(item.strip())}' has no '='; write vars as key=value; key2=value"
            )
            continue
        if not _NAME.match(key):
            problems.append(
                f"'{short(key)}' is not a placeholder name (letters, digits and _; e.g. color=red)"
            )
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key in values:
            problems.append(f"'{key}' is given twice; keep one")
            continue
        values[key] = value
    if problems:
        raise SpecError(problems)
    return values
