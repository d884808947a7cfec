"""loss.prompt_by: the latest a loss's prompt waits for the rep's other losses (BULK_MAX)

A rep's prompt used to go out BULK_WINDOW after their first loss; now it waits until BULK_WINDOW
passes with no new loss, and at most until `prompt_by`. A loss already waiting keeps the moment it
was given: its `prompt_by` is its `prompt_after`.

Revision ID: 0009_prompt_by
Revises: 0008_sweep
Create Date: 2026-12-05 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0009_prompt_by"
down_revision: str | None = "0008_sweep"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = storage.types.UTCDateTime(timezone=True)
loss = sa.table("loss", sa.column("prompt_after", UTC), sa.column("prompt_by", UTC))


def upgrade() -> None:
    with op.batch_alter_table("loss") as batch_op:
        batch_op.add_column(sa.Column("prompt_by", UTC, nullable=True))
    op.get_bind().execute(sa.update(loss).values(prompt_by=loss.c.prompt_after))


def downgrade() -> None:
    with op.batch_alter_table("loss") as batch_op:
        batch_op.drop_column("prompt_by")
