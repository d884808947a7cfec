"""reason_entry.confirmed_over: the reason the modal suggested when the rep kept their pick instead

Answers stored before have none: nothing was suggested then.

Revision ID: 0014_confirmed_over
Revises: 0013_detail_keys
Create Date: 2026-12-05 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_confirmed_over"
down_revision: str | None = "0013_detail_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reason_entry") as batch_op:
        batch_op.add_column(sa.Column("confirmed_over", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reason_entry") as batch_op:
        batch_op.drop_column("confirmed_over")
