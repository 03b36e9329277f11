"""The JSON prompt engine: spec model, normalisation, validation, compile, templates, batches.

Every request becomes one spec (`prepare`), is checked before any paid call (`validate`), and
compiles to google-genai contents plus config (`compile_request`) or the REST body
(`rest_body`).
"""

from bot.adapters.prompts.batch import BatchVariant, expand_batch, parse_batch_values
from bot.adapters.prompts.build import Defaults, PreparedSpec, RequestOptions, prepare
from bot.adapters.prompts.compile import CompiledRequest, compile_request, rest_body
from bot.adapters.prompts.errors import SpecError
from bot.adapters.prompts.parse import parse_prompt_text
from bot.adapters.prompts.references import (
    ImageResolver,
    Reference,
    ResolvedImage,
    parse_reference,
    resolve_inputs,
)
from bot.adapters.prompts.spec import ROLES, TASKS, InputRef, OutputFormat, Spec
from bot.adapters.prompts.templates import (
    Placeholder,
    Template,
    load_templates,
    parse_template,
    parse_vars,
)
from bot.adapters.prompts.validate import check_references, validate

__all__ = [
    "ROLES",
    "TASKS",
    "BatchVariant",
    "CompiledRequest",
    "Defaults",
    "ImageResolver",
    "InputRef",
    "OutputFormat",
    "Placeholder",
    "PreparedSpec",
    "Reference",
    "RequestOptions",
    "ResolvedImage",
    "Spec",
    "SpecError",
    "Template",
    "check_references",
    "compile_request",
    "expand_batch",
    "load_templates",
    "parse_batch_values",
    "parse_prompt_text",
    "parse_reference",
    "parse_template",
    "parse_vars",
    "prepare",
    "resolve_inputs",
    "rest_body",
    "validate",
]
