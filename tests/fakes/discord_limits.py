"""Discord's documented limits and error shapes, as pure checks the fake Discord runs.

Every check raises :class:`DiscordError` carrying the status, code and JSON body that
production Discord sends for the same mistake, so discord.py raises the same exception
(``HTTPException`` with ``.code``) in tests as it would in production.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

MiB = 1024 * 1024
DEFAULT_UPLOAD_LIMIT = 10 * MiB
MAX_ATTACHMENTS = 10
MAX_EMBEDS = 10
MAX_CONTENT = 2000
EMBED_TITLE = 256
EMBED_DESCRIPTION = 4096
EMBED_FIELDS = 25
EMBED_FIELD_NAME = 256
EMBED_FIELD_VALUE = 1024
EMBED_FOOTER = 2048
EMBED_AUTHOR = 256
EMBED_TOTAL = 6000
MAX_ACTION_ROWS = 5
MAX_ROW_ITEMS = 5
CUSTOM_ID_MAX = 100
BUTTON_LABEL_MAX = 80
# Select menus: options, their texts, the placeholder, how many values may be picked.
SELECT_MAX_OPTIONS = 25
SELECT_OPTION_TEXT_MAX = 100  # label, value, description
SELECT_PLACEHOLDER_MAX = 150
MODAL_TITLE_MAX = 45
MODAL_MAX_COMPONENTS = 5
TEXT_INPUT_LABEL_MAX = 45
TEXT_INPUT_VALUE_MAX = 4000
AUTOCOMPLETE_MAX_CHOICES = 25
COMMAND_MAX_OPTIONS = 25
COMMAND_MAX_CHOICES = 25
MAX_GLOBAL_CHAT_COMMANDS = 100
MAX_CONTEXT_MENUS = 15
THREAD_NAME_MAX = 100
NONCE_MAX_LENGTH = 25
# enforce_nonce de-duplicates "in the past few minutes" (Discord gives no figure).
NONCE_WINDOW_S = 180.0
ACK_DEADLINE_S = 3.0
TOKEN_LIFETIME_S = 15 * 60
# Followups an interaction authorized only by a user install may create (Discord, 2024).
USER_INSTALL_FOLLOWUPS = 5

# Message flags and component types the checks need.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_COMPONENTS_V2 = 1 << 15
COMPONENT_ACTION_ROW = 1
COMPONENT_BUTTON = 2
COMPONENT_TEXT_INPUT = 4
COMPONENT_LABEL = 18
SELECT_TYPES = frozenset({3, 5, 6, 7, 8})

# Discord's rule for chat-input command and option names.
_NAME_RE = re.compile(r"^[-_'\w\u0900-\u097F\u0E00-\u0E7F]{1,32}$")


class DiscordError(Exception):
    """An HTTP error exactly as Discord would answer it."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        errors: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            out["errors"] = self.errors
        return out


# --- error constructors (the codes and texts Discord uses) ------------------------------


def form_error(path: Sequence[str | int], code: str, message: str) -> DiscordError:
    """50035 with one nested field error, e.g. path ("embeds", 0, "title")."""
    return form_errors([(path, code, message)])


def form_errors(items: Iterable[tuple[Sequence[str | int], str, str]]) -> DiscordError:
    tree: dict[str, Any] = {}
    for path, code, message in items:
        node = tree
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})
    return DiscordError(400, 50035, "Invalid Form Body", tree)


def too_large() -> DiscordError:
    return DiscordError(413, 40005, "Request entity too large")


def empty_message() -> DiscordError:
    return DiscordError(400, 50006, "Cannot send an empty message")


def unknown_channel() -> DiscordError:
    return DiscordError(404, 10003, "Unknown Channel")


def unknown_message() -> DiscordError:
    return DiscordError(404, 10008, "Unknown Message")


def unknown_webhook() -> DiscordError:
    return DiscordError(404, 10015, "Unknown Webhook")


def unknown_interaction() -> DiscordError:
    return DiscordError(404, 10062, "Unknown interaction")


def already_acknowledged() -> DiscordError:
    return DiscordError(400, 40060, "Interaction has already been acknowledged.")


def invalid_webhook_token() -> DiscordError:
    return DiscordError(401, 50027, "Invalid Webhook Token")


def missing_permissions() -> DiscordError:
    return DiscordError(403, 50013, "Missing Permissions")


def missing_access() -> DiscordError:
    return DiscordError(403, 50001, "Missing Access")


def too_many_followups() -> DiscordError:
    return DiscordError(
        400, 40094, "This interaction has hit the maximum number of follow up messages"
    )


def not_author() -> DiscordError:
    return DiscordError(403, 50005, "Cannot edit a message authored by another user")


def thread_exists() -> DiscordError:
    return DiscordError(400, 160004, "A thread has already been created for this message")


def wrong_channel_type() -> DiscordError:
    return DiscordError(400, 50024, "Cannot execute action on this channel type")


def cannot_message_user(status: int = 403) -> DiscordError:
    """A user whose DMs are closed (or a bot): 403 on a message; 400 opening a DM with oneself."""
    return DiscordError(status, 50007, "Cannot send messages to this user")


def invalid_recipients() -> DiscordError:
    return DiscordError(400, 50033, "Invalid Recipient(s)")


def dm_action() -> DiscordError:
    return DiscordError(403, 50003, "Cannot execute action on a DM channel")


def unauthorized() -> DiscordError:
    return DiscordError(401, 0, "401: Unauthorized")


def not_found() -> DiscordError:
    return DiscordError(404, 0, "404: Not Found")


def _max_len(n: int) -> tuple[str, str]:
    return "BASE_TYPE_MAX_LENGTH", f"Must be {n} or fewer in length."


def _between(lo: int, hi: int) -> tuple[str, str]:
    return "BASE_TYPE_BAD_LENGTH", f"Must be between {lo} and {hi} in length."


# --- messages ---------------------------------------------------------------------------


def check_file_sizes(sizes: Iterable[int], limit: int) -> None:
    if any(size > limit for size in sizes):
        raise too_large()


def _text_len(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0


def embed_errors(embeds: Sequence[Mapping[str, Any]]) -> list[tuple[list[str | int], str, str]]:
    """Every limit an embed list breaks, in Discord's path/code/message form."""
    out: list[tuple[list[str | int], str, str]] = []
    if len(embeds) > MAX_EMBEDS:
        out.append((["embeds"], *_max_len(MAX_EMBEDS)))
    total = 0
    for i, embed in enumerate(embeds):
        if not isinstance(embed, Mapping):
            out.append(
                (["embeds", i], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            )
            continue
        base: list[str | int] = ["embeds", i]
        for key, limit in (("title", EMBED_TITLE), ("description", EMBED_DESCRIPTION)):
            n = _text_len(embed.get(key))
            total += n
            if n > limit:
                out.append(([*base, key], *_max_len(limit)))
        footer = embed.get("footer") or {}
        n = _text_len(footer.get("text"))
        total += n
        if n > EMBED_FOOTER:
            out.append(([*base, "footer", "text"], *_max_len(EMBED_FOOTER)))
        author = embed.get("author") or {}
        n = _text_len(author.get("name"))
        total += n
        if n > EMBED_AUTHOR:
            out.append(([*base, "author", "name"], *_max_len(EMBED_AUTHOR)))
        fields = embed.get("fields") or []
        if len(fields) > EMBED_FIELDS:
            out.append(([*base, "fields"], *_max_len(EMBED_FIELDS)))
        for j, field in enumerate(fields):
            name_len, value_len = _text_len(field.get("name")), _text_len(field.get("value"))
            total += name_len + value_len
            if name_len > EMBED_FIELD_NAME:
                out.append(([*base, "fields", j, "name"], *_max_len(EMBED_FIELD_NAME)))
            if value_len > EMBED_FIELD_VALUE:
                out.append(([*base, "fields", j, "value"], *_max_len(EMBED_FIELD_VALUE)))
    if total > EMBED_TOTAL:
        out.append(
            (
                ["embeds"],
                "MAX_EMBED_SIZE_EXCEEDED",
                f"Embed size exceeds maximum size of {EMBED_TOTAL}",
            )
        )
    return out


def walk_components(components: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Every component, depth first (rows, containers, sections, labels included)."""
    for comp in components:
        if not isinstance(comp, Mapping):
            continue
        yield comp
        yield from walk_components(comp.get("components") or [])
        for key in ("accessory", "component"):
            child = comp.get(key)
            if isinstance(child, Mapping):
                yield from walk_components([child])


def component_errors(
    components: Sequence[Mapping[str, Any]], flags: int
) -> list[tuple[list[str | int], str, str]]:
    out: list[tuple[list[str | int], str, str]] = []
    if not flags & FLAG_COMPONENTS_V2:
        if len(components) > MAX_ACTION_ROWS:
            out.append((["components"], *_max_len(MAX_ACTION_ROWS)))
        for i, row in enumerate(components):
            if row.get("type") != COMPONENT_ACTION_ROW:
                out.append(
                    (
                        ["components", i, "type"],
                        "UNION_TYPE_CHOICES",
                        'Value of field "type" must be one of (1,).',
                    )
                )
                continue
            items = row.get("components") or []
            if not items:
                out.append((["components", i, "components"], *_between(1, MAX_ROW_ITEMS)))
            if len(items) > MAX_ROW_ITEMS:
                out.append((["components", i, "components"], *_max_len(MAX_ROW_ITEMS)))
            if len(items) > 1 and any(item.get("type") in SELECT_TYPES for item in items):
                # a select menu takes a whole row (width 5)
                out.append(
                    (
                        ["components", i, "components"],
                        "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                        "The specified component exceeds the maximum width",
                    )
                )
    seen: set[str] = set()
    for comp in walk_components(components):
        custom_id = comp.get("custom_id")
        if isinstance(custom_id, str):
            if not 1 <= len(custom_id) <= CUSTOM_ID_MAX:
                out.append((["components", "custom_id"], *_between(1, CUSTOM_ID_MAX)))
            if custom_id in seen:
                out.append(
                    (
                        ["components", "custom_id"],
                        "COMPONENT_CUSTOM_ID_DUPLICATED",
                        "Component custom id cannot be duplicated",
                    )
                )
            seen.add(custom_id)
        if comp.get("type") == COMPONENT_BUTTON:
            if _text_len(comp.get("label")) > BUTTON_LABEL_MAX:
                out.append((["components", "label"], *_max_len(BUTTON_LABEL_MAX)))
            if comp.get("style") == 5 and not comp.get("url"):
                out.append((["components", "url"], "BASE_TYPE_REQUIRED", "This field is required"))
            if comp.get("style") not in (5, 6) and not custom_id:
                out.append(
                    (["components", "custom_id"], "BASE_TYPE_REQUIRED", "This field is required")
                )
        if comp.get("type") in SELECT_TYPES:
            out += _select_errors(comp)
    return out


def _select_errors(comp: Mapping[str, Any]) -> list[tuple[list[str | int], str, str]]:
    """What Discord refuses in a select menu: 1-25 options for a string select, option
    texts over 100, a placeholder over 150, min/max values outside 0-25 (max at least 1 and
    at most the options), min over max, more than one default for a single pick."""
    out: list[tuple[list[str | int], str, str]] = []
    options = comp.get("options") or []
    if comp.get("type") == 3 and not 1 <= len(options) <= SELECT_MAX_OPTIONS:
        out.append((["components", "options"], *_between(1, SELECT_MAX_OPTIONS)))
    elif len(options) > SELECT_MAX_OPTIONS:
        out.append((["components", "options"], *_max_len(SELECT_MAX_OPTIONS)))
    values: set[str] = set()
    for option in options:
        for key in ("label", "value", "description"):
            if _text_len(option.get(key)) > SELECT_OPTION_TEXT_MAX:
                out.append((["components", "options", key], *_max_len(SELECT_OPTION_TEXT_MAX)))
        for key in ("label", "value"):
            if not _text_len(option.get(key)):
                out.append(
                    (["components", "options", key], "BASE_TYPE_REQUIRED", "This field is required")
                )
        value = str(option.get("value"))
        if value in values:
            out.append(
                (
                    ["components", "options", "value"],
                    "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
                    "Select component option values must be unique",
                )
            )
        values.add(value)
    if _text_len(comp.get("placeholder")) > SELECT_PLACEHOLDER_MAX:
        out.append((["components", "placeholder"], *_max_len(SELECT_PLACEHOLDER_MAX)))
    low = comp.get("min_values", 1)
    high = comp.get("max_values", 1)
    if not (isinstance(low, int) and 0 <= low <= SELECT_MAX_OPTIONS):
        out.append((["components", "min_values"], *_between(0, SELECT_MAX_OPTIONS)))
    if not (isinstance(high, int) and 1 <= high <= SELECT_MAX_OPTIONS):
        out.append((["components", "max_values"], *_between(1, SELECT_MAX_OPTIONS)))
    elif comp.get("type") == 3 and options and high > len(options):
        out.append((["components", "max_values"], *_between(1, len(options))))
    if isinstance(low, int) and isinstance(high, int) and low > high:
        out.append((["components", "min_values"], *_between(0, high)))
    defaults = sum(1 for option in options if option.get("default"))
    if isinstance(high, int) and defaults > high:
        out.append((["components", "options", "default"], *_max_len(high)))
    return out


def check_message(
    payload: Mapping[str, Any],
    *,
    file_count: int,
    creating: bool,
    keeps_attachments: bool = False,
) -> None:
    """Raise what Discord raises for this message body (create or edit)."""
    errors: list[tuple[list[str | int], str, str]] = []
    content = payload.get("content")
    flags = int(payload.get("flags") or 0)
    if content is not None and not isinstance(content, str):
        errors.append((["content"], "BASE_TYPE_STRING", "Must be a string."))
    elif isinstance(content, str) and len(content) > MAX_CONTENT:
        errors.append((["content"], *_max_len(MAX_CONTENT)))
    embeds = payload.get("embeds") or []
    errors.extend(embed_errors(embeds))
    attachments = payload.get("attachments") or []
    if len(attachments) > MAX_ATTACHMENTS:
        errors.append((["attachments"], *_max_len(MAX_ATTACHMENTS)))
    elif file_count > MAX_ATTACHMENTS:
        errors.append((["files"], *_max_len(MAX_ATTACHMENTS)))
    components = payload.get("components") or []
    errors.extend(component_errors(components, flags))
    errors.extend(nonce_errors(payload.get("nonce")))
    if flags & FLAG_COMPONENTS_V2 and (content or embeds):
        errors.append(
            (
                ["content"],
                "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                "The 'content' and 'embeds' fields cannot be used when using "
                "MessageFlags.IS_COMPONENTS_V2",
            )
        )
    if errors:
        raise form_errors(errors)
    if creating and not (
        content
        or embeds
        or file_count
        or components
        or payload.get("sticker_ids")
        or payload.get("poll")
        or keeps_attachments
    ):
        raise empty_message()


def nonce_errors(nonce: Any) -> list[tuple[list[str | int], str, str]]:
    """A message nonce is an int64 or a string of at most 25 characters."""
    if nonce is None:
        return []
    if isinstance(nonce, str):
        if len(nonce) > NONCE_MAX_LENGTH:
            return [(["nonce"], *_max_len(NONCE_MAX_LENGTH))]
        return []
    if isinstance(nonce, bool) or not isinstance(nonce, int):
        return [(["nonce"], "NONCE_TYPE_INVALID", "Nonce must be an integer or a string.")]
    if not -(2**63) <= nonce < 2**63:
        return [(["nonce"], "NUMBER_TYPE_MAX", "int value is too large")]
    return []


# --- interactions -----------------------------------------------------------------------


def check_modal(data: Mapping[str, Any]) -> None:
    errors: list[tuple[list[str | int], str, str]] = []
    title = data.get("title")
    if not isinstance(title, str) or not 1 <= len(title) <= MODAL_TITLE_MAX:
        errors.append((["data", "title"], *_between(1, MODAL_TITLE_MAX)))
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= CUSTOM_ID_MAX:
        errors.append((["data", "custom_id"], *_between(1, CUSTOM_ID_MAX)))
    components = data.get("components") or []
    if not 1 <= len(components) <= MODAL_MAX_COMPONENTS:
        errors.append((["data", "components"], *_between(1, MODAL_MAX_COMPONENTS)))
    for comp in walk_components(components):
        if (
            comp.get("type") == COMPONENT_LABEL
            and _text_len(comp.get("label")) > TEXT_INPUT_LABEL_MAX
        ):
            errors.append((["data", "components", "label"], *_max_len(TEXT_INPUT_LABEL_MAX)))
        if comp.get("type") == COMPONENT_TEXT_INPUT:
            if _text_len(comp.get("label")) > TEXT_INPUT_LABEL_MAX:
                errors.append((["data", "components", "label"], *_max_len(TEXT_INPUT_LABEL_MAX)))
            if _text_len(comp.get("value")) > TEXT_INPUT_VALUE_MAX:
                errors.append((["data", "components", "value"], *_max_len(TEXT_INPUT_VALUE_MAX)))
            max_length = comp.get("max_length")
            if isinstance(max_length, int) and max_length > TEXT_INPUT_VALUE_MAX:
                errors.append(
                    (
                        ["data", "components", "max_length"],
                        "NUMBER_TYPE_MAX",
                        f"int value should be less than or equal to {TEXT_INPUT_VALUE_MAX}.",
                    )
                )
    if errors:
        raise form_errors(errors)


def check_choices(choices: Any) -> None:
    if not isinstance(choices, list):
        raise form_error(["data", "choices"], "BASE_TYPE_REQUIRED", "This field is required")
    errors: list[tuple[list[str | int], str, str]] = []
    if len(choices) > AUTOCOMPLETE_MAX_CHOICES:
        errors.append((["data", "choices"], *_max_len(AUTOCOMPLETE_MAX_CHOICES)))
    for i, choice in enumerate(choices):
        name = choice.get("name") if isinstance(choice, Mapping) else None
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            errors.append((["data", "choices", i, "name"], *_between(1, 100)))
        value = choice.get("value") if isinstance(choice, Mapping) else None
        if isinstance(value, str) and len(value) > 100:
            errors.append((["data", "choices", i, "value"], *_max_len(100)))
    if errors:
        raise form_errors(errors)


# --- application commands ---------------------------------------------------------------


def _option_errors(
    options: Sequence[Mapping[str, Any]], base: list[str | int]
) -> list[tuple[list[str | int], str, str]]:
    out: list[tuple[list[str | int], str, str]] = []
    if len(options) > COMMAND_MAX_OPTIONS:
        out.append(([*base, "options"], *_max_len(COMMAND_MAX_OPTIONS)))
    seen_optional = False
    names: set[str] = set()
    for i, opt in enumerate(options):
        path: list[str | int] = [*base, "options", i]
        name = opt.get("name", "")
        if not isinstance(name, str) or not _NAME_RE.match(name) or name != name.lower():
            out.append(
                ([*path, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            )
        if name in names:
            out.append(
                (
                    [*path, "name"],
                    "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                    "Option name already exists",
                )
            )
        names.add(name)
        desc = opt.get("description", "")
        if not isinstance(desc, str) or not 1 <= len(desc) <= 100:
            out.append(([*path, "description"], *_between(1, 100)))
        choices = opt.get("choices") or []
        if len(choices) > COMMAND_MAX_CHOICES:
            out.append(([*path, "choices"], *_max_len(COMMAND_MAX_CHOICES)))
        if choices and opt.get("autocomplete"):
            out.append(
                (
                    [*path, "autocomplete"],
                    "APPLICATION_COMMAND_OPTION_CHOICES_AUTOCOMPLETE",
                    "Autocomplete cannot be set for options with choices",
                )
            )
        if opt.get("type") in (1, 2):
            out.extend(_option_errors(opt.get("options") or [], path))
            continue
        if opt.get("required"):
            if seen_optional:
                out.append(
                    (
                        [*base, "options"],
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
                )
        else:
            seen_optional = True
    return out


def check_commands(commands: Any, *, global_: bool) -> None:
    """What Discord rejects on a bulk overwrite (PUT .../commands)."""
    if not isinstance(commands, list):
        raise form_error([], "BASE_TYPE_ARRAY", "Must be an array.")
    errors: list[tuple[list[str | int], str, str]] = []
    seen: set[tuple[int, str]] = set()
    counts = {1: 0, 2: 0, 3: 0}
    for i, cmd in enumerate(commands):
        if not isinstance(cmd, Mapping):
            errors.append(([i], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"))
            continue
        ctype = int(cmd.get("type") or 1)
        counts[ctype] = counts.get(ctype, 0) + 1
        name = cmd.get("name", "")
        key = (ctype, name)
        if key in seen:
            errors.append(
                (
                    [i, "name"],
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    f"Application command names must be unique: {name}",
                )
            )
        seen.add(key)
        if ctype == 1:
            if not isinstance(name, str) or not _NAME_RE.match(name) or name != name.lower():
                errors.append(
                    ([i, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
                )
            desc = cmd.get("description", "")
            if not isinstance(desc, str) or not 1 <= len(desc) <= 100:
                errors.append(([i, "description"], *_between(1, 100)))
            errors.extend(_option_errors(cmd.get("options") or [], [i]))
        elif not isinstance(name, str) or not 1 <= len(name) <= 32:
            errors.append(([i, "name"], *_between(1, 32)))
    if counts[1] > MAX_GLOBAL_CHAT_COMMANDS:
        errors.append(
            (
                [],
                "APPLICATION_COMMANDS_TOO_MANY",
                "Maximum number of application commands reached (100)",
            )
        )
    for ctype in (2, 3):
        if counts.get(ctype, 0) > MAX_CONTEXT_MENUS:
            errors.append(
                (
                    [],
                    "APPLICATION_COMMANDS_TOO_MANY_CONTEXT_MENUS",
                    f"Maximum number of context menu commands reached ({MAX_CONTEXT_MENUS})",
                )
            )
    if errors:
        raise form_errors(errors)


def check_thread_name(name: Any) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= THREAD_NAME_MAX:
        raise form_error(["name"], *_between(1, THREAD_NAME_MAX))
