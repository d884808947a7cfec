"""drop the index on reason_entry.revisit_on: revisits are read from the revisit table since 0005

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 19:55:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reason_entry") as batch_op:
        batch_op.drop_index("ix_reason_entry_revisit_on")


def downgrade() -> None:
    with op.batch_alter_table("reason_entry") as batch_op:
        batch_op.create_index("ix_reason_entry_revisit_on", ["revisit_on"], unique=False)
