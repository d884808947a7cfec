"""indexes that let stats and App Home read deals' figures and a rep's awaiting losses from indexes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deal", schema=None) as batch_op:
        batch_op.create_index("ix_deal_figures", ["id", "owner_slack_id", "currency", "amount"], unique=False)
        batch_op.create_index("ix_deal_owner_figures", ["owner_slack_id", "id", "currency", "amount"], unique=False)

    with op.batch_alter_table("loss", schema=None) as batch_op:
        batch_op.create_index(
            "ix_loss_awaiting_by_deal",
            ["deal_id", "lost_at", "id"],
            unique=False,
            postgresql_where=sa.text("state = 'awaiting'"),
            sqlite_where=sa.text("state = 'awaiting'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("loss", schema=None) as batch_op:
        batch_op.drop_index("ix_loss_awaiting_by_deal")

    with op.batch_alter_table("deal", schema=None) as batch_op:
        batch_op.drop_index("ix_deal_owner_figures")
        batch_op.drop_index("ix_deal_figures")
