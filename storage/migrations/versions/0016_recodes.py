"""reason_entry.recoded, message.reason_entry_id: managers' re-codes and the quality figures

A re-code is a revision a manager stored (`recoded`); `confirmed_over` (0014) names the reason the
modal suggested when the rep kept their own pick. A re-code notice (message kind `recode`) names the
revision it tells the rep about. The partial index finds the few flagged entries of a period
without reading the others.

Revision ID: 0016_recodes
Revises: 0015_imports
Create Date: 2026-12-05 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_recodes"
down_revision: str | None = "0015_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FLAGGED = "recoded OR confirmed_over IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("reason_entry") as batch_op:
        batch_op.add_column(sa.Column("recoded", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_index(
        "ix_reason_entry_flagged",
        "reason_entry",
        ["loss_id"],
        postgresql_where=sa.text(FLAGGED),
        sqlite_where=sa.text(FLAGGED),
    )
    with op.batch_alter_table("message") as batch_op:
        batch_op.add_column(sa.Column("reason_entry_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_message_reason_entry_id", "reason_entry", ["reason_entry_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("message") as batch_op:
        batch_op.drop_constraint("fk_message_reason_entry_id", type_="foreignkey")
        batch_op.drop_column("reason_entry_id")
    op.drop_index("ix_reason_entry_flagged", table_name="reason_entry")
    with op.batch_alter_table("reason_entry") as batch_op:
        batch_op.drop_column("recoded")
