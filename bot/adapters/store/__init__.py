"""Storage: SQLite via aiosqlite with numbered migrations, image bytes as files.

store = await Store.open(settings.database_path)
...
await store.close()
"""

from bot.adapters.store.files import is_sha256, sha256_hex
from bot.adapters.store.migrations import MigrationError
from bot.adapters.store.rows import (
    FAILED_STATUSES,
    GENERATION_KINDS,
    GENERATION_STATUSES,
    GUILD_SETTING_KEYS,
    JOB_STATUSES,
    OPEN_STATUSES,
    USER_SETTING_KEYS,
    AnchorExistsError,
    AnchorRow,
    ChainRow,
    ChainStepRow,
    GenerationRow,
    GuildTemplateRow,
    ImageMissingError,
    JobRow,
    QuotaUse,
    StoreError,
    UsageRow,
)
from bot.adapters.store.store import Store

__all__ = [
    "FAILED_STATUSES",
    "GENERATION_KINDS",
    "GENERATION_STATUSES",
    "GUILD_SETTING_KEYS",
    "JOB_STATUSES",
    "OPEN_STATUSES",
    "USER_SETTING_KEYS",
    "AnchorExistsError",
    "AnchorRow",
    "ChainRow",
    "ChainStepRow",
    "GenerationRow",
    "GuildTemplateRow",
    "ImageMissingError",
    "JobRow",
    "MigrationError",
    "QuotaUse",
    "Store",
    "StoreError",
    "UsageRow",
    "is_sha256",
    "sha256_hex",
]
