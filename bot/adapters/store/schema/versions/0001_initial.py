"""The initial schema (what schema/0001_initial.sql created before the store moved to Alembic).

Revision ID: 0001
Revises:
Create Date: 2026-03-01

A database made by that SQL file (it has a `schema_migrations` table at version 1) is stamped
at this revision by bot.adapters.store.migrations instead of running it again.

Frozen: later changes go into new revisions, never here. The types are spelled out instead of
imported from bot.adapters.store.tables for the same reason.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DISCORD_ID = sa.BigInteger()
TIME: sa.Double[float] = sa.Double()
# Names, keys and model ids compare byte by byte on both engines (a PostgreSQL server's
# default locale would ignore punctuation: "an_x" would sort, and prefix-match, like "anx").
KEY = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
FLAG = sa.Boolean(create_constraint=False).with_variant(sa.Integer(), "sqlite")


def _id() -> sa.Column[int]:
    return sa.Column("id", ID, primary_key=True, autoincrement=True)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"

    # Image bytes live in files (<data_dir>/images/ab/<sha>); this table is their index.
    op.create_table(
        "images",
        sa.Column("sha256", sa.Text, primary_key=True),
        sa.Column("mime_type", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("last_used_at", TIME, nullable=False),
        sa.Column("purged_at", TIME),
    )
    op.create_index("images_retention", "images", ["purged_at", "last_used_at"])

    # generations.chain_id and chains.root_generation_id refer to each other: SQLite takes the
    # forward reference as is, PostgreSQL gets that foreign key once chains exists.
    chain_fk = [sa.ForeignKeyConstraint(["chain_id"], ["chains.id"])] if sqlite else []
    op.create_table(
        "generations",
        _id(),
        sa.Column("user_id", DISCORD_ID, nullable=False),
        sa.Column("guild_id", DISCORD_ID),
        sa.Column("channel_id", DISCORD_ID, nullable=False),
        sa.Column("message_id", DISCORD_ID),
        sa.Column("public", FLAG, nullable=False, server_default=sa.false()),
        sa.Column("private", FLAG, nullable=False, server_default=sa.false()),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("size", sa.Text, nullable=False),
        sa.Column("aspect", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'queued'")),
        sa.Column("error_kind", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("output_image", sa.Text, sa.ForeignKey("images.sha256")),
        sa.Column("output_mime", sa.Text),
        sa.Column("model_text", sa.Text),
        sa.Column("model_content", sa.Text),
        sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("output_tokens", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("thoughts_tokens", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("estimated_cost", TIME, nullable=False, server_default=sa.text("0")),
        sa.Column("cost", TIME, nullable=False, server_default=sa.text("0")),
        sa.Column("model_version", sa.Text),
        sa.Column("seconds", TIME),
        sa.Column("warnings", sa.Text, nullable=False, server_default=sa.text("'[]'")),
        sa.Column("chain_id", ID),
        sa.Column("parent_id", ID, sa.ForeignKey("generations.id")),
        sa.Column("step", sa.Integer),
        sa.Column("batch_id", sa.Text),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("started_at", TIME),
        sa.Column("finished_at", TIME),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'blocked', 'cancelled')",
            name="generations_status",
        ),
        *chain_fk,
        sqlite_autoincrement=True,
    )
    op.create_index("generations_user", "generations", ["user_id", "created_at"])
    op.create_index("generations_status", "generations", ["status"])
    op.create_index("generations_parent", "generations", ["parent_id"])
    op.create_index("generations_chain", "generations", ["chain_id"])
    op.create_index("generations_batch", "generations", ["batch_id"])
    op.create_index("generations_output", "generations", ["output_image"])

    op.create_table(
        "generation_images",
        sa.Column("generation_id", ID, sa.ForeignKey("generations.id"), primary_key=True),
        sa.Column("role", sa.Text, primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("image_sha", sa.Text, sa.ForeignKey("images.sha256"), nullable=False),
        sa.CheckConstraint("role IN ('input', 'content')", name="generation_images_role"),
    )
    op.create_index("generation_images_sha", "generation_images", ["image_sha"])

    op.create_table(
        "generation_messages",
        sa.Column("message_id", DISCORD_ID, primary_key=True, autoincrement=False),
        sa.Column("generation_id", ID, sa.ForeignKey("generations.id"), nullable=False),
        sa.Column("channel_id", DISCORD_ID, nullable=False),
        sa.Column("public", FLAG, nullable=False, server_default=sa.false()),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_index("generation_messages_generation", "generation_messages", ["generation_id"])

    op.create_table(
        "chains",
        _id(),
        sa.Column(
            "root_generation_id",
            ID,
            sa.ForeignKey("generations.id"),
            nullable=False,
            unique=True,
        ),
        sa.Column("head_generation_id", ID, sa.ForeignKey("generations.id"), nullable=False),
        sa.Column("guild_id", DISCORD_ID),
        sa.Column("channel_id", DISCORD_ID, nullable=False),
        sa.Column("thread_id", DISCORD_ID, unique=True),
        sa.Column("owner_id", DISCORD_ID, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sqlite_autoincrement=True,
    )
    if not sqlite:
        op.create_foreign_key(
            "generations_chain_id_fkey", "generations", "chains", ["chain_id"], ["id"]
        )

    op.create_table(
        "chain_steps",
        _id(),
        sa.Column("chain_id", ID, sa.ForeignKey("chains.id"), nullable=False),
        sa.Column(
            "generation_id", ID, sa.ForeignKey("generations.id"), nullable=False, unique=True
        ),
        sa.Column("parent_step_id", ID, sa.ForeignKey("chain_steps.id")),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("chain_steps_chain", "chain_steps", ["chain_id", "step"])

    op.create_table(
        "anchors",
        _id(),
        sa.Column("owner_id", DISCORD_ID, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("name_key", KEY, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("image_sha", sa.Text, sa.ForeignKey("images.sha256"), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.UniqueConstraint("owner_id", "name_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("anchors_image", "anchors", ["image_sha"])

    op.create_table(
        "guild_templates",
        sa.Column("guild_id", DISCORD_ID, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("name_key", KEY, primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("author_id", DISCORD_ID, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )

    for table, owner in (("user_settings", "user_id"), ("guild_settings", "guild_id")):
        op.create_table(
            table,
            sa.Column(owner, DISCORD_ID, primary_key=True, autoincrement=False),
            sa.Column("key", KEY, primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
            sa.Column("updated_at", TIME, nullable=False),
        )

    op.create_table(
        "usage_daily",
        sa.Column("day", sa.Text, primary_key=True),
        sa.Column("user_id", DISCORD_ID, primary_key=True, autoincrement=False),
        sa.Column("guild_id", DISCORD_ID, primary_key=True, autoincrement=False),
        sa.Column("model", KEY, primary_key=True),
        sa.Column("images", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("cost", TIME, nullable=False, server_default=sa.text("0")),
    )
    op.create_index("usage_daily_guild", "usage_daily", ["guild_id", "day"])
    op.create_index("usage_daily_user", "usage_daily", ["user_id", "day"])

    op.create_table(
        "jobs",
        _id(),
        sa.Column("generation_id", ID, sa.ForeignKey("generations.id"), nullable=False),
        sa.Column("user_id", DISCORD_ID, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'queued'")),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'cancelled', 'interrupted')",
            name="jobs_status",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("jobs_status", "jobs", ["status", "created_at"])
    op.create_index("jobs_generation", "jobs", ["generation_id"])


def downgrade() -> None:
    raise NotImplementedError("forward only: restore a backup to go back")
