"""reason_entry.source: who gave a reason, the rep in Slack (rep) or the CRM's history (crm, closedlost import)

Every stored reason was logged by a rep in Slack.

Revision ID: 0014_reason_sources
Revises: 0013_detail_keys
Create Date: 2026-12-05 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_reason_sources"
down_revision: str | None = "0013_detail_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reason_entry") as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=16), server_default="rep", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("reason_entry") as batch_op:
        batch_op.drop_column("source")
