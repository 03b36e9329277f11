"""Image bytes in PostgreSQL stored as they are, not compressed again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

PNG and JPEG are compressed already: PostgreSQL's default (STORAGE EXTENDED) still tries to
compress every `image_blobs.data` value before moving it out of line, which at 4K (~15 MB)
costs ~0.2 s of the server's CPU per image and saves nothing. EXTERNAL keeps it out of line,
uncompressed (measured here: 0.23 s → 0.06 s per 4K insert). SQLite keeps image bytes in
files: nothing to change there. Existing values stay as they are stored.
"""

from __future__ import annotations

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE image_blobs ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    raise NotImplementedError("forward only: restore a backup to go back")
