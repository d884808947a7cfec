"""indexes for /closedlost stats, App Home and the digest

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 16:22:38.338243
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deal", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deal_owner_stage_changed", ["owner_slack_id", "stage", "stage_changed_at"], unique=False
        )
        batch_op.create_index("ix_deal_stage_changed", ["stage", "stage_changed_at"], unique=False)

    with op.batch_alter_table("loss", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_loss_lost_at"), ["lost_at"], unique=False)

    with op.batch_alter_table("reason_entry", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reason_entry_revisit_on"), ["revisit_on"], unique=False)
        batch_op.create_index("ix_reason_entry_current", ["loss_id", "revision", "reason_code"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reason_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_reason_entry_current")
        batch_op.drop_index(batch_op.f("ix_reason_entry_revisit_on"))

    with op.batch_alter_table("loss", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loss_lost_at"))

    with op.batch_alter_table("deal", schema=None) as batch_op:
        batch_op.drop_index("ix_deal_stage_changed")
        batch_op.drop_index("ix_deal_owner_stage_changed")
