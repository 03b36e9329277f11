"""Durable jobs: leases, lanes and groups on jobs, round-robin turns, the shared Gemini limiter,
and image bytes in the database (used by PostgreSQL, where no disk is shared).

Revision ID: 0002
Revises: 0001
Create Date: 2026-03-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME: sa.Double[float] = sa.Double()


def upgrade() -> None:
    # Existing rows keep working: every new column is nullable or has a default. SQLite's
    # ALTER TABLE ADD COLUMN takes each of these as is (no table rebuild).
    op.add_column("jobs", sa.Column("guild_id", sa.BigInteger))
    op.add_column("jobs", sa.Column("lane", sa.Text))
    op.add_column("jobs", sa.Column("group_id", sa.Text))
    op.add_column("jobs", sa.Column("lease_owner", sa.Text))
    op.add_column("jobs", sa.Column("lease_expires_at", TIME))
    op.add_column(
        "jobs", sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0"))
    )
    op.add_column("jobs", sa.Column("started_at", TIME))
    op.add_column("jobs", sa.Column("finished_at", TIME))
    op.add_column("jobs", sa.Column("error", sa.Text))
    op.create_index("jobs_user_queue", "jobs", ["status", "user_id", "id"])
    op.create_index("jobs_lane_queue", "jobs", ["lane", "status", "id"])
    op.create_index("jobs_lease", "jobs", ["status", "lease_expires_at"])
    op.create_index("jobs_group", "jobs", ["group_id"])

    op.create_table(
        "job_turns",
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("served", sa.BigInteger, nullable=False),
        sa.Column("served_at", TIME, nullable=False),
    )

    op.create_table(
        "gemini_slots",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("acquired_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("gemini_slots_model", "gemini_slots", ["model", "expires_at"])

    op.create_table(
        "gemini_calls",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("gemini_calls_model", "gemini_calls", ["model", "at"])

    op.create_table(
        "image_blobs",
        sa.Column("sha256", sa.Text, sa.ForeignKey("images.sha256"), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("forward only: restore a backup to go back")
