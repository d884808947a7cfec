"""message.post_started_at: when a post whose outcome is not known was tried

The next try first looks for the post in Slack instead of posting it twice.

Revision ID: 0011_post_attempts
Revises: 0010_claimed_by
Create Date: 2026-12-05 12:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0011_post_attempts"
down_revision: str | None = "0010_claimed_by"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A post under way during the upgrade has no mark: if its outcome was lost, it is posted again,
    # as before this revision.
    with op.batch_alter_table("message") as batch_op:
        batch_op.add_column(sa.Column("post_started_at", storage.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message") as batch_op:
        batch_op.drop_column("post_started_at")
