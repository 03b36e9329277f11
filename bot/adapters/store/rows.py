"""What the store hands back: frozen dataclasses (times are epoch seconds, UTC), and its errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GENERATION_KINDS = frozenset(
    {
        "imagine",
        "prompt",
        "edit",
        "blend",
        "reroll",
        "upscale",
        "refine",
        "batch",
        "template",
        "describe",  # /describe: a text model's spec of an image (no output image)
        "tile",  # one tile Split cut from a grid result (recorded, never generated)
    }
)
OPEN_STATUSES = ("queued", "running")
FAILED_STATUSES = ("failed", "blocked", "cancelled")
GENERATION_STATUSES = (*OPEN_STATUSES, "done", *FAILED_STATUSES)
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")

# Settings the features use today; the tables accept any identifier-like key.
USER_SETTING_KEYS = ("model", "size", "aspect", "private", "threads")
GUILD_SETTING_KEYS = (
    "model",
    "size",
    "aspect",
    "daily_images_per_user",
    "daily_dollars_per_user",
    "daily_dollars_guild",
)


class StoreError(Exception):
    """Base class for the store's own errors."""


class AnchorExistsError(StoreError):
    """The owner already has an anchor with that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"you already have an anchor called '{name}'")
        self.name = name


class ImageMissingError(StoreError):
    """An operation needs image bytes that are not stored (never put, or purged)."""


@dataclass(frozen=True)
class GenerationRow:
    id: int
    user_id: int
    guild_id: int | None
    channel_id: int
    message_id: int | None
    kind: str
    spec: dict[str, Any]
    model: str
    size: str
    aspect: str
    summary: str
    status: str
    error_kind: str | None
    error: str | None
    input_images: list[str]
    output_image: str | None
    output_mime: str | None
    model_text: str | None
    # The model's turn as stored: inline image bytes replaced by sha references (see
    # bot.adapters.store.content); `Store.hydrate_model_content` turns it back into sendable JSON.
    model_content: dict[str, Any] | None
    prompt_tokens: int
    output_tokens: int
    thoughts_tokens: int
    cost: float
    model_version: str | None
    seconds: float | None
    warnings: list[str]
    chain_id: int | None
    parent_id: int | None
    step: int | None
    batch_id: str | None
    private: bool
    public: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    estimated_cost: float = 0.0

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True)
class JobRow:
    id: int
    generation_id: int
    user_id: int
    status: str
    payload: dict[str, Any]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ChainRow:
    id: int
    root_generation_id: int
    head_generation_id: int
    guild_id: int | None
    channel_id: int
    thread_id: int | None
    owner_id: int
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ChainStepRow:
    id: int
    chain_id: int
    generation_id: int
    parent_step_id: int | None
    parent_generation_id: int | None
    step: int
    created_at: float


@dataclass(frozen=True)
class AnchorRow:
    id: int
    owner_id: int
    name: str
    kind: str
    note: str | None
    image_sha: str
    width: int
    height: int
    created_at: float


@dataclass(frozen=True)
class GuildTemplateRow:
    guild_id: int
    name: str
    description: str
    body: str
    author_id: int
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class UsageRow:
    model: str
    images: int
    cost: float


@dataclass(frozen=True)
class QuotaUse:
    """One day's consumption for a quota check: charged so far plus what is still in flight."""

    images: int  # successful images charged today
    cost: float  # dollars charged today
    pending_images: int  # queued or running generations (not yet charged)
    pending_cost: float  # their estimated cost

    @property
    def total_images(self) -> int:
        return self.images + self.pending_images

    @property
    def total_cost(self) -> float:
        return self.cost + self.pending_cost
