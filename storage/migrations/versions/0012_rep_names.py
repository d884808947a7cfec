"""rep.name (a rep's display name from Slack) and reason_entry.bulk (a one-click clean-up answer)

The name lets posts name a rep without a ping; bulk answers are counted apart in the digest.

Revision ID: 0012_rep_names
Revises: 0011_post_attempts
Create Date: 2026-12-05 12:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_rep_names"
down_revision: str | None = "0011_post_attempts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A rep looked up before the upgrade has no name: the escalation looks it up once (users.info).
    with op.batch_alter_table("rep") as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=255), nullable=True))
    with op.batch_alter_table("reason_entry") as batch_op:
        batch_op.add_column(sa.Column("bulk", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("reason_entry") as batch_op:
        batch_op.drop_column("bulk")
    with op.batch_alter_table("rep") as batch_op:
        batch_op.drop_column("name")
