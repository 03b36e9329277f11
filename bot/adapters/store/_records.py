"""Generations recorded after the fact: calls that never wait in the queue (/describe) and
images derived from a result (Split tiles). One insert with their final status, so no row is
ever left open for recovery or for the quota's "still being made" count."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.adapters.store._base import StoreBase, to_json
from bot.adapters.store.rows import GENERATION_KINDS

FINAL_STATUSES = ("done", "failed", "blocked")


class RecordsMixin(StoreBase):
    async def record_generation(
        self,
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        kind: str,
        spec: dict[str, Any],
        model: str,
        size: str,
        aspect: str,
        summary: str,
        status: str = "done",
        input_images: Sequence[str] = (),
        output_image: str | None = None,
        output_mime: str | None = None,
        model_text: str | None = None,
        prompt_tokens: int = 0,
        output_tokens: int = 0,
        thoughts_tokens: int = 0,
        cost: float = 0.0,
        model_version: str | None = None,
        seconds: float | None = None,
        error_kind: str | None = None,
        error: str | None = None,
        batch_id: str | None = None,
        private: bool = False,
        warnings: Sequence[str] = (),
    ) -> int:
        """Insert a finished generation (done, failed or blocked) and its input images (shas
        already stored with put_image); returns its id."""
        if kind not in GENERATION_KINDS:
            raise ValueError(f"unknown generation kind {kind!r}")
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {FINAL_STATUSES}, not {status!r}")
        if not isinstance(spec, dict):
            raise TypeError("spec must be a dict")
        now = self._now()
        async with self._db.transaction() as tx:
            generation_id = await tx.insert(
                "INSERT INTO generations (user_id, guild_id, channel_id, kind, spec, model, size,"
                " aspect, summary, status, error_kind, error, output_image, output_mime,"
                " model_text, prompt_tokens, output_tokens, thoughts_tokens, cost,"
                " model_version, seconds, warnings, batch_id, private, created_at, started_at,"
                " finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " ?, ?, ?)",
                (
                    user_id,
                    guild_id,
                    channel_id,
                    kind,
                    to_json(spec),
                    model,
                    size,
                    aspect,
                    summary,
                    status,
                    error_kind,
                    error,
                    output_image,
                    output_mime,
                    model_text,
                    int(prompt_tokens),
                    int(output_tokens),
                    int(thoughts_tokens),
                    float(cost),
                    model_version,
                    seconds,
                    to_json(list(warnings)),
                    batch_id,
                    int(private),
                    now,
                    now,
                    now,
                ),
            )
            for position, sha in enumerate(input_images):
                await tx.execute(
                    "INSERT INTO generation_images (generation_id, role, position, image_sha)"
                    " VALUES (?, 'input', ?, ?)",
                    (generation_id, position, sha),
                )
        return generation_id
