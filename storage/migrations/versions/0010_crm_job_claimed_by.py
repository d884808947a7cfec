"""crm_job.claimed_by: which process claimed a CRM job, so that only it records the job's outcome

Revision ID: 0010_claimed_by
Revises: 0009_prompt_by
Create Date: 2026-12-05 12:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_claimed_by"
down_revision: str | None = "0009_prompt_by"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A job claimed before the upgrade keeps its claim until it runs out; then a process claims it
    # again, for itself.
    with op.batch_alter_table("crm_job") as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("crm_job") as batch_op:
        batch_op.drop_column("claimed_by")
