"""What the store hands back: frozen dataclasses (times are epoch seconds, UTC), and its errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
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
JOB_FINAL_STATUSES = ("done", "failed", "cancelled", "interrupted")

# Settings the features use today; the tables accept any identifier-like key.
USER_SETTING_KEYS = ("model", "size", "aspect", "private", "threads", "economy")
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
    guild_id: int | None = None
    lane: str | None = None  # serial lane ("chain:42")
    group_id: str | None = None  # jobs admitted together (a batch)
    lease_owner: str | None = None  # the worker running it
    lease_expires_at: float | None = None
    attempts: int = 0  # times claimed: above 1, a worker died (or let go) running it
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    posting: bool = False  # past its Gemini call: storing and uploading the result
    # Filled by claim_job: the generation as the claim left it (marked running if it was
    # queued), so the worker needs no second round trip to start it.
    generation: GenerationRow | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class IntakeRow:
    """A request acknowledged but not yet admitted (see Store.receive)."""

    id: int
    user_id: int
    payload: dict[str, Any]
    attempts: int
    created_at: float


@dataclass(frozen=True)
class NewJob:
    """One generation and its job, for `Store.admit` (the fields of create_generation, plus the
    job's payload and serial lane)."""

    channel_id: int
    kind: str
    spec: dict[str, Any]
    model: str
    size: str
    aspect: str
    summary: str
    payload: dict[str, Any] = field(default_factory=dict)
    input_images: Sequence[str] = ()
    chain_id: int | None = None
    parent_id: int | None = None
    batch_id: str | None = None
    private: bool = False
    estimated_cost: float = 0.0
    lane: str | None = None


@dataclass(frozen=True)
class AdmitLimits:
    """What `Store.admit` enforces; None = no such limit. The quota figures are today's
    (bot.core.quotas.limits_for: the server's /quota settings, else the configured defaults)."""

    max_queued_per_user: int | None = None  # waiting (not yet running) jobs, across servers
    images_per_user: int | None = None  # per UTC day, in this server
    dollars_per_user: float | None = None  # per UTC day, in this server
    dollars_guild: float | None = None  # per UTC day, everyone in this server together


@dataclass(frozen=True)
class Admitted:
    generation_ids: tuple[int, ...]
    job_ids: tuple[int, ...]  # in the order of the request's jobs
    group_id: str | None


class RefusalKind(StrEnum):
    QUEUED = "queued"  # the user's waiting-jobs limit
    USER_IMAGES = "user_images"
    USER_DOLLARS = "user_dollars"
    GUILD_DOLLARS = "guild_dollars"


@dataclass(frozen=True)
class Refused:
    """Why `Store.admit` said no, with the numbers a message needs. Nothing was recorded."""

    kind: RefusalKind
    limit: float
    used: float  # counted now: jobs waiting, or images/dollars charged today plus in flight
    requested: float  # what the request would add
    pending_images: int = 0  # of `used`, images still queued or running

    @property
    def left(self) -> float:
        return max(0.0, self.limit - self.used)


@dataclass(frozen=True)
class RecoveredJobs:
    """Running jobs whose lease ran out (their worker died or stalled), put back in line."""

    requeued: tuple[int, ...]


@dataclass(frozen=True)
class GeminiSlot:
    """A Gemini call this process may make now; release it when the call ends."""

    id: int
    model: str
    holder: str
    expires_at: float


@dataclass(frozen=True)
class GeminiBusy:
    """No slot now. `reason`: "in_flight" (too many calls running) or "per_minute"."""

    reason: str
    retry_after: float  # seconds until a slot may free (an estimate; at least 0)


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
