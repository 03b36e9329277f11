"""Configuration: one pydantic-settings `Settings`, plus the model capability and price tables.

Every figure about Google's models lives here (from Google's published model, price and
output-size pages) so that a price change or a new model is a one-line edit, not a hunt through the code.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# --------------------------------------------------------------------------------------------
# Models: capabilities and prices
# --------------------------------------------------------------------------------------------

BASE_ASPECTS: tuple[str, ...] = (
    "1:1",
    "2:3",
    "3:2",
    "3:4",
    "4:3",
    "4:5",
    "5:4",
    "9:16",
    "16:9",
    "21:9",
)
EXTRA_ASPECTS: tuple[str, ...] = ("1:4", "4:1", "1:8", "8:1")
SIZES_ORDER: tuple[str, ...] = ("512", "1K", "2K", "4K")
# Longer side in pixels for each size name (the model's own figures for 1:1).
SIZE_PIXELS: dict[str, int] = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096}


@dataclass(frozen=True)
class ModelCapability:
    """What one Gemini image model accepts. Checked before any paid call."""

    id: str
    name: str
    sizes: tuple[str, ...]
    aspect_ratios: tuple[str, ...]
    max_input_images: int
    # References the model keeps faithful, per kind (Google's model pages): high-fidelity
    # objects, characters (people, faces) and style references; None: no limit of its own
    # (only max_input_images). How inputs map to kinds: bot.adapters.prompts.validate.
    max_objects: int | None
    max_characters: int | None
    max_styles: int | None = None
    default_size: str = "1K"
    supports_thinking_level: bool = False
    supports_search: bool = False
    ids: tuple[str, ...] = field(default=())  # other ids served by the same model

    @property
    def all_ids(self) -> tuple[str, ...]:
        return (self.id, *self.ids)

    @property
    def max_identity_anchors(self) -> int:
        """Identity anchors in one request: the most any one kind allows (Pro: 6)."""
        limits = (self.max_objects, self.max_characters, self.max_styles)
        return max(limit for limit in limits if limit is not None)


@dataclass(frozen=True)
class ModelPrice:
    """Estimated US dollars; third-party quotes of Google's price page (2026)."""

    per_image: dict[str, float]  # by size
    input_per_million_tokens: float
    output_tokens_per_image: dict[str, int]
    # Gemini's Batch API (economy): this fraction of the interactive price, input and output
    # alike (Google: half price, turnaround up to 24 hours).
    batch_factor: float = 0.5

    def image_cost(self, size: str) -> float:
        if size in self.per_image:
            return self.per_image[size]
        return max(self.per_image.values())


CAPABILITIES: dict[str, ModelCapability] = {
    "gemini-3-pro-image": ModelCapability(
        id="gemini-3-pro-image",
        name="Nano Banana Pro",
        sizes=("1K", "2K", "4K"),
        aspect_ratios=BASE_ASPECTS,
        max_input_images=14,
        max_objects=6,
        max_characters=5,
        max_styles=3,
        supports_search=True,
        ids=("gemini-3-pro-image-preview",),
    ),
    "gemini-3.1-flash-image": ModelCapability(
        id="gemini-3.1-flash-image",
        name="Nano Banana 2",
        sizes=("512", "1K", "2K", "4K"),
        aspect_ratios=BASE_ASPECTS + EXTRA_ASPECTS,
        max_input_images=14,
        max_objects=10,
        max_characters=4,
        supports_thinking_level=True,
        supports_search=True,
        ids=("gemini-3.1-flash-image-preview",),
    ),
    "gemini-3.1-flash-lite-image": ModelCapability(
        id="gemini-3.1-flash-lite-image",
        name="Nano Banana 2 Lite",
        sizes=("512", "1K"),
        aspect_ratios=BASE_ASPECTS + EXTRA_ASPECTS,
        max_input_images=14,
        # "objects only": no character/face consistency. Google gives no object count for
        # Lite; Nano Banana 2's 10 is assumed.
        max_objects=10,
        max_characters=0,
        supports_thinking_level=True,
    ),
    "gemini-2.5-flash-image": ModelCapability(
        id="gemini-2.5-flash-image",
        name="Nano Banana (legacy)",
        sizes=("1K",),
        aspect_ratios=BASE_ASPECTS,
        max_input_images=3,  # "best with ≤3"
        max_objects=3,
        max_characters=3,
    ),
}

# Real output pixel sizes, (width, height) by aspect ratio and size, from Google's
# image-generation docs ("Aspect ratios and image size" tables, ai.google.dev, 2026), which
# list the same figures for Nano Banana Pro and Nano Banana 2 at 1K/2K/4K. 2K is exactly twice
# 1K and 4K four times; 512 is half of 1K. Uncertain figures:
# - 21:9 at 512: Google's table says 792×168, which is not 21:9 (a typo, surely); we use
#   792×336, half of 1K's 1584×672 like every other 512 entry.
# - Nano Banana 2 Lite: no table published; assumed to make Nano Banana 2's 512/1K sizes.
_GEMINI_3_DIMENSIONS: dict[str, dict[str, tuple[int, int]]] = {
    "1:1": {"512": (512, 512), "1K": (1024, 1024), "2K": (2048, 2048), "4K": (4096, 4096)},
    "2:3": {"512": (424, 632), "1K": (848, 1264), "2K": (1696, 2528), "4K": (3392, 5056)},
    "3:2": {"512": (632, 424), "1K": (1264, 848), "2K": (2528, 1696), "4K": (5056, 3392)},
    "3:4": {"512": (448, 600), "1K": (896, 1200), "2K": (1792, 2400), "4K": (3584, 4800)},
    "4:3": {"512": (600, 448), "1K": (1200, 896), "2K": (2400, 1792), "4K": (4800, 3584)},
    "4:5": {"512": (464, 576), "1K": (928, 1152), "2K": (1856, 2304), "4K": (3712, 4608)},
    "5:4": {"512": (576, 464), "1K": (1152, 928), "2K": (2304, 1856), "4K": (4608, 3712)},
    "9:16": {"512": (384, 688), "1K": (768, 1376), "2K": (1536, 2752), "4K": (3072, 5504)},
    "16:9": {"512": (688, 384), "1K": (1376, 768), "2K": (2752, 1536), "4K": (5504, 3072)},
    "21:9": {"512": (792, 336), "1K": (1584, 672), "2K": (3168, 1344), "4K": (6336, 2688)},
    # Nano Banana 2 (and Lite) only
    "1:4": {"512": (256, 1024), "1K": (512, 2048), "2K": (1024, 4096), "4K": (2048, 8192)},
    "4:1": {"512": (1024, 256), "1K": (2048, 512), "2K": (4096, 1024), "4K": (8192, 2048)},
    "1:8": {"512": (192, 1536), "1K": (384, 3072), "2K": (768, 6144), "4K": (1536, 12288)},
    "8:1": {"512": (1536, 192), "1K": (3072, 384), "2K": (6144, 768), "4K": (12288, 1536)},
}
# Nano Banana (legacy, gemini-2.5-flash-image): one fixed size per aspect ratio.
_LEGACY_DIMENSIONS: dict[str, dict[str, tuple[int, int]]] = {
    aspect: {"1K": dims}
    for aspect, dims in {
        "1:1": (1024, 1024),
        "2:3": (832, 1248),
        "3:2": (1248, 832),
        "3:4": (864, 1184),
        "4:3": (1184, 864),
        "4:5": (896, 1152),
        "5:4": (1152, 896),
        "9:16": (768, 1344),
        "16:9": (1344, 768),
        "21:9": (1536, 672),
    }.items()
}


def _dimensions_for(cap: ModelCapability) -> dict[str, dict[str, tuple[int, int]]]:
    source = _LEGACY_DIMENSIONS if cap.id == "gemini-2.5-flash-image" else _GEMINI_3_DIMENSIONS
    return {a: {s: source[a][s] for s in cap.sizes} for a in cap.aspect_ratios}


# model id -> aspect ratio -> size -> (width, height): exactly the model's aspects and sizes.
OUTPUT_DIMENSIONS: dict[str, dict[str, dict[str, tuple[int, int]]]] = {
    model: _dimensions_for(cap) for model, cap in CAPABILITIES.items()
}


def output_dimensions(model: str, aspect: str, size: str) -> tuple[int, int]:
    """(width, height) in pixels the model really makes; KeyError for a pair it lacks."""
    return OUTPUT_DIMENSIONS[resolve_model(model)][aspect][size]


PRICES: dict[str, ModelPrice] = {
    "gemini-3-pro-image": ModelPrice(
        per_image={"1K": 0.134, "2K": 0.134, "4K": 0.24},
        input_per_million_tokens=2.0,
        output_tokens_per_image={"1K": 1120, "2K": 1120, "4K": 2000},
    ),
    "gemini-3.1-flash-image": ModelPrice(
        per_image={"512": 0.045, "1K": 0.067, "2K": 0.101, "4K": 0.151},
        input_per_million_tokens=0.5,
        output_tokens_per_image={"512": 1120, "1K": 1120, "2K": 1680, "4K": 2520},
    ),
    "gemini-3.1-flash-lite-image": ModelPrice(
        per_image={"512": 0.03, "1K": 0.045},
        input_per_million_tokens=0.25,
        output_tokens_per_image={"512": 1120, "1K": 1120},
    ),
    "gemini-2.5-flash-image": ModelPrice(
        per_image={"1K": 0.039},
        input_per_million_tokens=0.3,
        output_tokens_per_image={"1K": 1290},
    ),
}

# Tokens one input image costs (Pro figure; used for estimates only).
TOKENS_PER_INPUT_IMAGE = 560


@dataclass(frozen=True)
class TextPrice:
    """Estimated US dollars per million tokens for a text model (/describe). Output includes
    thinking tokens, which Google bills as output."""

    input_per_million_tokens: float
    output_per_million_tokens: float
    # What one /describe call is assumed to use before it is made (the quota pre-check).
    typical_input_tokens: int = 1_600
    typical_output_tokens: int = 2_000


# Text models /describe may use (DESCRIBE_MODEL). Gemini 3.8 Flash: Google's current GA Flash
# text model (Gemini API model page and pricing page, autumn 2026; $0.75 input is the price
# Google lists "through December 31, 2026"). 2.5 Flash: the long-standing GA Flash.
TEXT_PRICES: dict[str, TextPrice] = {
    "gemini-3.8-flash": TextPrice(input_per_million_tokens=0.75, output_per_million_tokens=3.75),
    "gemini-2.5-flash": TextPrice(input_per_million_tokens=0.30, output_per_million_tokens=2.50),
}
DEFAULT_DESCRIBE_MODEL = "gemini-3.8-flash"


def text_price(model: str) -> TextPrice | None:
    """The price of a text model, or None for one the table does not know (charged as $0)."""
    return TEXT_PRICES.get(model.strip().lower())


def text_cost(model: str, *, input_tokens: int, output_tokens: int) -> float:
    """Estimated dollars for text-model tokens (thinking tokens count as output)."""
    p = text_price(model)
    if p is None:
        return 0.0
    return round(
        input_tokens * p.input_per_million_tokens / 1e6
        + output_tokens * p.output_per_million_tokens / 1e6,
        6,
    )


def estimate_text_cost(model: str) -> float:
    """What one /describe call is expected to cost, for the quota pre-check."""
    p = text_price(model)
    if p is None:
        return 0.0
    return text_cost(
        model, input_tokens=p.typical_input_tokens, output_tokens=p.typical_output_tokens
    )

MODEL_ALIASES: dict[str, str] = {
    "pro": "gemini-3-pro-image",
    "flash": "gemini-3.1-flash-image",
    "lite": "gemini-3.1-flash-lite-image",
    "legacy": "gemini-2.5-flash-image",
}


class UnknownModelError(ValueError):
    pass


def resolve_model(name: str) -> str:
    """Alias or id (preview ids too) -> canonical model id. Raises UnknownModelError."""
    key = name.strip().lower()
    if key in MODEL_ALIASES:
        return MODEL_ALIASES[key]
    for cap in CAPABILITIES.values():
        if key in cap.all_ids:
            return cap.id
    choices = ", ".join([*MODEL_ALIASES, *CAPABILITIES])
    raise UnknownModelError(f"unknown model '{name}'; choose one of: {choices}")


def capability(model: str) -> ModelCapability:
    return CAPABILITIES[resolve_model(model)]


def price(model: str) -> ModelPrice:
    return PRICES[resolve_model(model)]


def model_display_name(model: str) -> str:
    try:
        return capability(model).name
    except UnknownModelError:
        return model


def estimate_cost(
    model: str, size: str, *, images_out: int = 1, input_tokens: int = 0, economy: bool = False
) -> float:
    """Estimated dollars for one call: output images at the size's price plus input tokens;
    `economy`: through the Batch API, at its `batch_factor` of that."""
    p = price(model)
    full = p.image_cost(size) * images_out + input_tokens * p.input_per_million_tokens / 1e6
    return round(full * p.batch_factor if economy else full, 6)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def default_templates_dir() -> Path:
    """templates/ beside the package in a checkout, or the wheel's shared data folder."""
    here = Path(__file__).resolve().parent.parent / "templates"
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "nano-banana-bot" / "templates"


class Settings(BaseSettings):
    """Everything configurable, from the environment or a `.env` file."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # The documented environment variables (README, Configuration)
    discord_token: SecretStr | None = None
    gemini_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("GEMINI_API_KEY", "GOOGLE_API_KEY")
    )
    database_path: Path = Path("data/bot.db")
    # product.md §9: unset = the SQLite file at DATABASE_PATH; postgresql://user:pass@host/db =
    # a PostgreSQL server shared by several bot processes (image bytes included).
    database_url: SecretStr | None = None
    discord_guild_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    discord_api_base: str | None = None
    discord_gateway_url: str | None = None
    gemini_base_url: str | None = None
    gemini_api_version: str = "v1beta"

    log_level: str = "INFO"
    templates_dir: Path = Field(default_factory=default_templates_dir)

    # Defaults for requests that leave options out (a user's /settings override these).
    default_model: str = "pro"
    default_size: str = "1K"
    default_aspect: str = "1:1"

    # /describe: the Gemini text model that reads an image and writes a spec.
    describe_model: str = DEFAULT_DESCRIBE_MODEL
    describe_timeout_seconds: float = Field(default=90.0, gt=0)

    # Queue and fairness
    max_concurrent_jobs: int = Field(default=4, ge=1, le=64)
    max_running_per_user: int = Field(default=2, ge=1)
    max_queued_per_user: int = Field(default=10, ge=1)
    progress_interval_seconds: float = Field(default=3.0, gt=0)
    # A worker renews its jobs' leases every third of this; a job whose process died goes
    # back in line once its lease runs out, and any live process resumes it.
    job_lease_seconds: float = Field(default=20.0, ge=1)
    # How often a process looks for work other processes queued (its own wakes it at once).
    job_poll_seconds: float = Field(default=0.5, gt=0, le=10)

    # Gemini client
    gemini_max_in_flight: int = Field(default=8, ge=1)
    gemini_requests_per_minute: int | None = Field(default=None, ge=1)
    gemini_max_attempts: int = Field(default=4, ge=1, le=10)
    gemini_retry_budget_seconds: float = Field(default=90.0, gt=0)
    timeout_512_seconds: float = 60.0
    timeout_1k_seconds: float = 120.0
    timeout_2k_seconds: float = 240.0
    timeout_4k_seconds: float = 480.0

    # Chains
    chain_history_steps: int = Field(default=3, ge=0, le=20)

    # Economy (Gemini's Batch API): requests wait this long to be grouped with the same
    # user's others into one batch; batches are polled after economy_poll_initial_seconds,
    # then ever less often (x1.5 each time) up to economy_poll_max_seconds.
    economy_gather_seconds: float = Field(default=5.0, ge=0)
    economy_batch_max_requests: int = Field(default=50, ge=1, le=1000)
    # Inline requests up to this many bytes in all (Google: 20 MB); a bigger batch goes as a
    # JSONL file through the Files API.
    economy_inline_max_bytes: int = Field(default=19_000_000, ge=1)
    economy_poll_initial_seconds: float = Field(default=30.0, gt=0)
    economy_poll_max_seconds: float = Field(default=600.0, gt=0)
    # How often each process looks for batches to form or poll.
    economy_tick_seconds: float = Field(default=2.0, gt=0, le=60)
    # Google's turnaround target, shown as "expected by".
    economy_turnaround_hours: float = Field(default=24.0, gt=0)

    # Storage
    image_retention_days: int = Field(default=30, ge=1)

    # Inbound images
    max_attachment_bytes: int = Field(default=20_000_000, ge=1)
    max_image_pixels: int = Field(default=64_000_000, ge=1)
    inbound_max_side: int = Field(default=2048, ge=64)

    # Quotas (None = unlimited); admins override per server.
    default_daily_images_per_user: int | None = None
    default_daily_dollars_per_user: float | None = None

    # Operations: /healthz and /metrics on this port (unset: no HTTP server).
    health_port: int | None = Field(default=None, ge=1, le=65535)
    health_host: str = "0.0.0.0"
    # Sharding: this process runs SHARD_IDS of SHARD_COUNT gateway shards (unset: Discord's
    # recommended count, all in this process).
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)

    @field_validator("discord_guild_ids", "shard_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            for p in parts:
                if not p.isdigit():
                    raise ValueError(f"'{p}' is not an id (digits only)")
            return [int(p) for p in parts]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        scheme = value.get_secret_value().strip().split("://", 1)[0].lower()
        if scheme not in {"postgresql", "postgres", "postgresql+asyncpg"}:
            raise ValueError(
                "use postgresql://user:password@host:5432/database "
                "(or leave it unset for the SQLite file at DATABASE_PATH)"
            )
        return SecretStr(value.get_secret_value().strip())

    @field_validator("default_model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        return resolve_model(value)

    @field_validator("describe_model")
    @classmethod
    def _text_model(cls, value: str) -> str:
        name = value.strip()
        if not name or "/" in name or " " in name:
            raise ValueError("give a Gemini model id such as gemini-3.8-flash")
        return name

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("use DEBUG, INFO, WARNING or ERROR")
        return level

    @model_validator(mode="after")
    def _shards_fit(self) -> Settings:
        if self.shard_ids and self.shard_count is None:
            raise ValueError("SHARD_IDS needs SHARD_COUNT (the total number of shards)")
        bad = [i for i in self.shard_ids if self.shard_count is not None and i >= self.shard_count]
        if bad:
            raise ValueError(f"SHARD_IDS {bad} are not below SHARD_COUNT ({self.shard_count})")
        return self

    @property
    def data_dir(self) -> Path:
        return self.database_path.parent

    def timeout_for(self, size: str) -> float:
        """Per-call timeout in seconds for an output size (4K often takes minutes)."""
        return {
            "512": self.timeout_512_seconds,
            "1K": self.timeout_1k_seconds,
            "2K": self.timeout_2k_seconds,
            "4K": self.timeout_4k_seconds,
        }.get(size, self.timeout_1k_seconds)

    @property
    def database(self) -> str | Path:
        """What Store.open takes: the DATABASE_URL if set, else the SQLite DATABASE_PATH."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return self.database_path

    def secrets(self) -> list[str]:
        """Secret values, for the log redactor."""
        out = []
        for s in (self.discord_token, self.gemini_api_key, self.database_url):
            if s is not None and s.get_secret_value():
                out.append(s.get_secret_value())
        if self.database_url is not None:
            password = _url_password(self.database_url.get_secret_value())
            if password:
                out.append(password)
        return out


def _url_password(url: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line naming it and the fix."""


_FIXES: dict[str, str] = {
    "DISCORD_TOKEN": (
        "DISCORD_TOKEN is not set: create a bot at https://discord.com/developers/applications "
        "(Bot > Reset Token) and put DISCORD_TOKEN=... in .env"
    ),
    "GEMINI_API_KEY": (
        "GEMINI_API_KEY is not set: get a key at https://aistudio.google.com/apikey "
        "and put GEMINI_API_KEY=... in .env (GOOGLE_API_KEY also works)"
    ),
}


def load_settings(**overrides: Any) -> Settings:
    """Build Settings or raise ConfigError with one friendly line (never a value)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err.get("loc") or ("?",)
        name = str(loc[0]).upper()
        reason = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        raise ConfigError(
            f"{name} is invalid: {reason}. Fix it in the environment or .env"
        ) from None


def require(settings: Settings, *names: str) -> None:
    """Raise ConfigError for the first required secret that is missing."""
    for name in names:
        value = getattr(settings, name.lower())
        if value is None or not value.get_secret_value().strip():
            raise ConfigError(_FIXES.get(name, f"{name} is not set: put {name}=... in .env"))
