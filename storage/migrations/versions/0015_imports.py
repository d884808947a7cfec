"""reason_entry.source and loss.imported: what closedlost import stored, apart from what reps were asked

reason_entry.source says who gave a reason: the rep in Slack (rep) or the CRM's history (crm). Every
stored reason was logged by a rep, and every stored loss came from a webhook or the sweep.

Revision ID: 0015_imports
Revises: 0014_confirmed_over
Create Date: 2026-12-05 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_imports"
down_revision: str | None = "0014_confirmed_over"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reason_entry") as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=16), server_default="rep", nullable=False))
    # loss is altered in place, not through a batch copy: dropping the old table would break, on
    # SQLite, the foreign keys that reason entries, messages and revisits hold to it.
    op.add_column("loss", sa.Column("imported", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    op.drop_column("loss", "imported")
    with op.batch_alter_table("reason_entry") as batch_op:
        batch_op.drop_column("source")
