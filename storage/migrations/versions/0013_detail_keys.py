"""reason_entry.detail_key: the key a competitor or missing feature is counted under, one for all its spellings

Existing details get the key of their name by the rules (bot.competitors.competitor_key); the merges
of COMPETITORS_FILE apply to the reasons saved once it is set.

Revision ID: 0013_detail_keys
Revises: 0012_rep_names
Create Date: 2026-12-05 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.competitors import competitor_key

revision: str = "0013_detail_keys"
down_revision: str | None = "0012_rep_names"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

reason_entry = sa.table("reason_entry", sa.column("detail", sa.String), sa.column("detail_key", sa.String))


def upgrade() -> None:
    with op.batch_alter_table("reason_entry") as batch_op:
        batch_op.add_column(sa.Column("detail_key", sa.String(length=200), nullable=True))
    bind = op.get_bind()
    # One update per distinct spelling: a team types a few hundred names, however many reasons it has.
    details = bind.execute(sa.select(reason_entry.c.detail).where(reason_entry.c.detail.is_not(None)).distinct())
    for (detail,) in details.all():
        bind.execute(
            sa.update(reason_entry).where(reason_entry.c.detail == detail).values(detail_key=competitor_key(detail))
        )


def downgrade() -> None:
    with op.batch_alter_table("reason_entry") as batch_op:
        batch_op.drop_column("detail_key")
