"""Requests acknowledged but not yet admitted (intake), and jobs past their Gemini call.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

* `intake`: a request is recorded here together with its acknowledgement, before its
  attachments are downloaded; admitting it deletes the row in the same transaction. A row
  whose lease ran out (its process died) is taken over by a live process.
* `batch_sheets`: which batch's contact sheet has been claimed for posting (whichever worker
  ends a batch's last variant posts it, once).
* `jobs.posting`: 1 once the job's Gemini call has returned and its result is being stored
  and uploaded. The global concurrency limit counts calls at Gemini, so such a job no longer
  takes a slot (it keeps its lease and its lane).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME: sa.Double[float] = sa.Double()


def upgrade() -> None:
    op.add_column(
        "jobs", sa.Column("posting", sa.Integer, nullable=False, server_default=sa.text("0"))
    )
    op.create_table(
        "intake",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),  # JSON: the request, where to answer
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_expires_at", TIME),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", TIME, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("intake_lease", "intake", ["lease_expires_at"])
    op.create_table(
        "batch_sheets",
        sa.Column("group_id", sa.Text, primary_key=True),
        sa.Column("worker", sa.Text, nullable=False),
        sa.Column("claimed_at", TIME, nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("forward only: restore a backup to go back")
