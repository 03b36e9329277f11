"""Economy: requests answered through Gemini's Batch API.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-18

* `economy_batches`: one Gemini batch (one user's economy jobs for one model), its Gemini
  name once submitted, the state last seen, when to poll it next, and the lease of the one
  process that submits or polls it.
* `economy_items`: which job (and generation) went into which batch, at which position, and
  what became of it.
* `economy_usage`: per UTC day, what economy images cost and what they would have cost
  interactively (the saving /usage shows).

Economy jobs themselves are ordinary `jobs` rows in the lane "economy" (the interactive
dispatcher never claims them), admitted like any request: quotas and limits hold.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME: sa.Double[float] = sa.Double()
KEY = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "economy_batches",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'forming'")),
        sa.Column("gemini_state", sa.Text),
        sa.Column("name", sa.Text, unique=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("request_keys", sa.Text),
        sa.Column("submit_attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("submitted_at", TIME),
        sa.Column("started_at", TIME),
        sa.Column("ended_at", TIME),
        sa.Column("next_poll_at", TIME, nullable=False),
        sa.Column("polls", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_expires_at", TIME),
        sa.Column("error", sa.Text),
        sa.CheckConstraint(
            "state IN ('forming', 'submitted', 'ended')", name="economy_batches_state"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("economy_batches_due", "economy_batches", ["state", "next_poll_at"])
    op.create_table(
        "economy_items",
        sa.Column(
            "job_id", ID, sa.ForeignKey("jobs.id"), primary_key=True, autoincrement=False
        ),
        sa.Column("batch_id", ID, sa.ForeignKey("economy_batches.id"), nullable=False),
        sa.Column("generation_id", ID, sa.ForeignKey("generations.id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'pending'")),
        sa.Column("ended_at", TIME),
        sa.CheckConstraint(
            "state IN ('pending', 'done', 'failed', 'cancelled')", name="economy_items_state"
        ),
    )
    op.create_index("economy_items_batch", "economy_items", ["batch_id", "position"])
    op.create_index("economy_items_generation", "economy_items", ["generation_id"])
    op.create_table(
        "economy_usage",
        sa.Column("day", sa.Text, primary_key=True),
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("guild_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("model", KEY, primary_key=True),
        sa.Column("images", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("cost", sa.Double, nullable=False, server_default=sa.text("0")),
        sa.Column("full_cost", sa.Double, nullable=False, server_default=sa.text("0")),
    )
    op.create_index("economy_usage_guild", "economy_usage", ["guild_id", "day"])


def downgrade() -> None:
    raise NotImplementedError("forward only: restore a backup to go back")
