"""Storage: SQLAlchemy Core on SQLite (aiosqlite) or PostgreSQL (asyncpg), Alembic migrations.

store = await Store.open(settings.database)   # DATABASE_URL if set, else DATABASE_PATH
...
await store.close()
"""

from bot.adapters.store._economy import (
    EconomyBatchRow,
    EconomyItemRow,
    EconomyUsage,
    Withdrawn,
)
from bot.adapters.store._jobs import ECONOMY_LANE
from bot.adapters.store.files import is_sha256, sha256_hex
from bot.adapters.store.migrations import MigrationError
from bot.adapters.store.rows import (
    FAILED_STATUSES,
    GENERATION_KINDS,
    GENERATION_STATUSES,
    GUILD_SETTING_KEYS,
    JOB_FINAL_STATUSES,
    JOB_STATUSES,
    OPEN_STATUSES,
    USER_SETTING_KEYS,
    AdmitLimits,
    Admitted,
    AnchorExistsError,
    AnchorRow,
    ChainRow,
    ChainStepRow,
    GeminiBusy,
    GeminiSlot,
    GenerationRow,
    GuildTemplateRow,
    ImageMissingError,
    IntakeRow,
    JobRow,
    NewJob,
    QuotaUse,
    RecoveredJobs,
    RefusalKind,
    Refused,
    StoreError,
    UsageRow,
)
from bot.adapters.store.store import Store

__all__ = [
    "ECONOMY_LANE",
    "FAILED_STATUSES",
    "GENERATION_KINDS",
    "GENERATION_STATUSES",
    "GUILD_SETTING_KEYS",
    "JOB_FINAL_STATUSES",
    "JOB_STATUSES",
    "OPEN_STATUSES",
    "USER_SETTING_KEYS",
    "AdmitLimits",
    "Admitted",
    "AnchorExistsError",
    "AnchorRow",
    "ChainRow",
    "ChainStepRow",
    "EconomyBatchRow",
    "EconomyItemRow",
    "EconomyUsage",
    "GeminiBusy",
    "GeminiSlot",
    "GenerationRow",
    "GuildTemplateRow",
    "ImageMissingError",
    "IntakeRow",
    "JobRow",
    "MigrationError",
    "NewJob",
    "QuotaUse",
    "RecoveredJobs",
    "RefusalKind",
    "Refused",
    "Store",
    "StoreError",
    "UsageRow",
    "Withdrawn",
    "is_sha256",
    "sha256_hex",
]
