"""revisits, digest runs, and the message kinds of issue 4

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 17:40:09.077477
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATETIME = storage.types.UTCDateTime(timezone=True)
# A date begins first at UTC+14. A carried-over revisit is looked at from then on; the nudge job
# then waits for the start of its rep's working hours, in the rep's own time zone.
FIRST_ZONE = timezone(timedelta(hours=14))

loss = sa.table("loss", sa.column("id", sa.Integer), sa.column("state", sa.String))
reason_entry = sa.table(
    "reason_entry",
    sa.column("loss_id", sa.Integer),
    sa.column("revision", sa.Integer),
    sa.column("revisit_on", sa.Date),
)
revisit = sa.table(
    "revisit",
    sa.column("loss_id", sa.Integer),
    sa.column("due_on", sa.Date),
    sa.column("state", sa.String),
    sa.column("nudge_at", DATETIME),
    sa.column("snoozes", sa.Integer),
    sa.column("created_at", DATETIME),
)


def upgrade() -> None:
    op.create_table(
        "digest_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("week_start", sa.Date(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("created_at", DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "week_start"),
        sa.UniqueConstraint("message_id"),
    )
    op.create_table(
        "revisit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("loss_id", sa.Integer(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("nudge_at", DATETIME, nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("nudged_at", DATETIME, nullable=True),
        sa.Column("snoozes", sa.Integer(), nullable=False),
        sa.Column("closed_at", DATETIME, nullable=True),
        sa.Column("closed_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["loss_id"], ["loss.id"]),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("loss_id"),
    )
    op.create_index("ix_revisit_closed_at", "revisit", ["closed_at"])
    op.create_index("ix_revisit_due_on", "revisit", ["due_on"])
    op.create_index("ix_revisit_nudge_at", "revisit", ["nudge_at"])

    with op.batch_alter_table("message") as batch_op:
        batch_op.alter_column("rep_key", existing_type=sa.String(length=320), nullable=True)

    _carry_revisit_dates_over()


def _carry_revisit_dates_over() -> None:
    """Logged losses whose current reason has a revisit date become revisits, due on that date."""
    later = reason_entry.alias("later")
    newest = ~sa.exists().where(later.c.loss_id == reason_entry.c.loss_id, later.c.revision > reason_entry.c.revision)
    rows = op.get_bind().execute(
        sa.select(reason_entry.c.loss_id, reason_entry.c.revisit_on)
        .join(loss, loss.c.id == reason_entry.c.loss_id)
        .where(loss.c.state == "logged", reason_entry.c.revisit_on.is_not(None), newest)
    )
    now = datetime.now(UTC)
    revisits = [
        {"loss_id": loss_id, "due_on": due_on, "state": "due", "nudge_at": _first_moment(due_on), "snoozes": 0}
        | {"created_at": now}
        for loss_id, due_on in rows
    ]
    if revisits:
        op.bulk_insert(revisit, revisits)


def _first_moment(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=FIRST_ZONE).astimezone(UTC)


def downgrade() -> None:
    op.drop_index("ix_revisit_nudge_at", table_name="revisit")
    op.drop_index("ix_revisit_due_on", table_name="revisit")
    op.drop_index("ix_revisit_closed_at", table_name="revisit")
    op.drop_table("revisit")
    op.drop_table("digest_run")
    # Messages of the kinds this revision adds mean nothing to the code before it.
    added = "('revisit', 'debrief', 'route', 'digest')"
    new_messages = f"SELECT id FROM message WHERE kind IN {added}"
    op.execute(f"DELETE FROM outbox WHERE message_id IN ({new_messages})")
    op.execute(f"DELETE FROM message_loss WHERE message_id IN ({new_messages})")
    op.execute(f"DELETE FROM message WHERE kind IN {added}")
    with op.batch_alter_table("message") as batch_op:
        batch_op.alter_column("rep_key", existing_type=sa.String(length=320), nullable=False)
