"""What a generation request is once prepared: the submission, and its stored spec.

The stored spec is what was sent plus which stored image each input resolved to, so that any
result can be reproduced; `public_spec` is what people may see of it (anchors are private).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from google.genai import types

from bot.adapters.prompts import PreparedSpec, ResolvedImage
from bot.adapters.store import Store


@dataclass(frozen=True)
class Requester:
    """Who asked, and where: what every request carries from its interaction or message."""

    user_id: int
    guild_id: int | None
    channel_id: int


@dataclass
class InputImage:
    """A resolved input image plus its content address in the store."""

    image: ResolvedImage
    sha: str


@dataclass
class Submission:
    user_id: int
    guild_id: int | None
    channel_id: int
    kind: str
    prepared: PreparedSpec
    inputs: list[InputImage] = field(default_factory=list)
    history: list[types.Content] = field(default_factory=list)
    chain_id: int | None = None
    parent_id: int | None = None
    batch_id: str | None = None
    private: bool = False

    @classmethod
    def build(
        cls,
        requester: Requester,
        *,
        kind: str,
        prepared: PreparedSpec,
        inputs: list[InputImage] | None = None,
        private: bool = False,
        history: list[types.Content] | None = None,
        chain_id: int | None = None,
        parent_id: int | None = None,
        batch_id: str | None = None,
    ) -> Submission:
        """The one way a request becomes a submission (commands, buttons, chains, batches,
        recovery)."""
        return cls(
            user_id=requester.user_id,
            guild_id=requester.guild_id,
            channel_id=requester.channel_id,
            kind=kind,
            prepared=prepared,
            inputs=list(inputs or []),
            history=list(history or []),
            chain_id=chain_id,
            parent_id=parent_id,
            batch_id=batch_id,
            private=private,
        )


def stored_spec(prepared: PreparedSpec, inputs: list[InputImage]) -> dict[str, Any]:
    """The spec as recorded: what was sent, plus which stored image each input resolved to."""
    spec = prepared.spec.to_dict()
    if inputs:
        metadata = dict(spec.get("metadata") or {})
        metadata["resolved_inputs"] = [
            {
                "sha": item.sha,
                "mime_type": item.image.mime_type,
                "description": item.image.description,
                "anchor_kind": item.image.anchor_kind,
            }
            for item in inputs
        ]
        spec["metadata"] = metadata
    return spec


def split_stored_spec(spec: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A stored spec as (the spec to prepare again, the stored images its inputs resolved to)."""
    out = dict(spec)
    metadata = dict(out.get("metadata") or {})
    resolved: list[dict[str, Any]] = metadata.pop("resolved_inputs", [])
    if metadata:
        out["metadata"] = metadata
    else:
        out.pop("metadata", None)
    return out, resolved


async def load_inputs(store: Store, resolved: list[dict[str, Any]]) -> list[InputImage] | None:
    """The stored input images of a spec, in order; None if one is gone (retention)."""
    inputs: list[InputImage] = []
    for item in resolved:
        stored = await store.get_image(item["sha"])
        if stored is None:
            return None
        data, mime = stored
        image = ResolvedImage(
            data=data,
            mime_type=mime,
            description=item["description"],
            anchor_kind=item.get("anchor_kind"),
        )
        inputs.append(InputImage(image, item["sha"]))
    return inputs


def uses_anchors(spec: dict[str, Any]) -> bool:
    """Whether a stored spec sent any saved anchor (someone's personal data) to the model."""
    return any(
        isinstance(item, dict) and str(item.get("data", "")).startswith("anchor:")
        for item in spec.get("inputs") or []
    )


def public_spec(spec: dict[str, Any], *, owner_view: bool) -> dict[str, Any]:
    """The spec as shown to people: internal bookkeeping dropped, anchor names hidden
    from anyone but their owner (anchors are personal data)."""
    out = json.loads(json.dumps(spec))
    metadata = out.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("resolved_inputs", None)
        if not metadata:
            out.pop("metadata")
    return out if owner_view else _hide_anchor_refs(out)


def _hide_anchor_refs(value: Any) -> Any:
    """Every "anchor:NAME" reference, in inputs or wherever an author put one, as
    "anchor:(private)"."""
    if isinstance(value, str):
        return "anchor:(private)" if value.strip().lower().startswith("anchor:") else value
    if isinstance(value, list):
        return [_hide_anchor_refs(v) for v in value]
    if isinstance(value, dict):
        return {k: _hide_anchor_refs(v) for k, v in value.items()}
    return value
