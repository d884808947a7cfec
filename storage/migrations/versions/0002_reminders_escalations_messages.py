"""messages (prompts, reminders, escalations), reps' time zones, the loss's discipline columns

A prompt used to be one DM per loss (`loss.prompt_channel`, `loss.prompt_ts`); now a message may
list several losses (a bulk closure), and reminders and escalations are messages too. Prompts
already posted become `message` rows; pending outbox rows are carried over.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 16:23:17.926185
"""

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The default REMINDER_AFTER and ESCALATE_AFTER, in plain time: losses prompted before this
# migration get their first reminder and their escalation on this schedule (a reminder still
# waits for the rep's working hours).
FIRST_REMINDER_AFTER = timedelta(hours=8)
ESCALATE_AFTER = timedelta(hours=24)

UTC = storage.types.UTCDateTime(timezone=True)

deal = sa.table(
    "deal",
    sa.column("id", sa.Integer),
    sa.column("owner_email", sa.String),
    sa.column("owner_slack_id", sa.String),
)
loss = sa.table(
    "loss",
    sa.column("id", sa.Integer),
    sa.column("deal_id", sa.Integer),
    sa.column("state", sa.String),
    sa.column("prompt_channel", sa.String),
    sa.column("prompt_ts", sa.String),
    sa.column("prompted_at", UTC),
    sa.column("created_at", UTC),
    sa.column("prompt_after", UTC),
    sa.column("prompt_message_id", sa.Integer),
    sa.column("reminder_due_at", UTC),
    sa.column("escalation_due_at", UTC),
)
message = sa.table(
    "message",
    sa.column("id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("rep_key", sa.String),
    sa.column("rep_slack_id", sa.String),
    sa.column("rep_email", sa.String),
    sa.column("page", sa.Integer),
    sa.column("channel", sa.String),
    sa.column("ts", sa.String),
    sa.column("created_at", UTC),
    sa.column("posted_at", UTC),
)
message_loss = sa.table("message_loss", sa.column("message_id", sa.Integer), sa.column("loss_id", sa.Integer))
old_outbox = sa.table(
    "old_outbox",
    sa.column("kind", sa.String),
    sa.column("loss_id", sa.Integer),
    sa.column("state", sa.String),
    sa.column("due_at", UTC),
    sa.column("attempts", sa.Integer),
    sa.column("created_at", UTC),
)
outbox = sa.table(
    "outbox",
    sa.column("kind", sa.String),
    sa.column("message_id", sa.Integer),
    sa.column("state", sa.String),
    sa.column("due_at", UTC),
    sa.column("attempts", sa.Integer),
    sa.column("created_at", UTC),
)


def upgrade() -> None:
    op.create_table(
        "message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("rep_key", sa.String(length=320), nullable=False),
        sa.Column("rep_slack_id", sa.String(length=32), nullable=True),
        sa.Column("rep_email", sa.String(length=320), nullable=True),
        sa.Column("post_to", sa.String(length=32), nullable=True),
        sa.Column("thread_ts", sa.String(length=32), nullable=True),
        sa.Column("escalation_day", sa.Date(), nullable=True),
        sa.Column("page", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("ts", sa.String(length=32), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("posted_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_message_escalation_per_rep_day",
        "message",
        ["rep_key", "escalation_day"],
        unique=True,
        postgresql_where=sa.text("kind = 'escalation'"),
        sqlite_where=sa.text("kind = 'escalation'"),
    )
    op.create_table(
        "rep",
        sa.Column("slack_id", sa.String(length=32), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=True),
        sa.Column("looked_up_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("slack_id"),
    )
    op.create_table(
        "message_loss",
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("message.id"), nullable=False),
        sa.Column("loss_id", sa.Integer(), sa.ForeignKey("loss.id"), nullable=False),
        sa.PrimaryKeyConstraint("message_id", "loss_id"),
    )
    op.create_index("ix_message_loss_loss_id", "message_loss", ["loss_id"])

    with op.batch_alter_table("loss") as batch_op:
        batch_op.add_column(sa.Column("excluded_because", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("prompt_after", UTC, nullable=True))
        batch_op.add_column(sa.Column("prompt_message_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reminders_sent", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("last_reminded_at", UTC, nullable=True))
        batch_op.add_column(sa.Column("reminder_due_at", UTC, nullable=True))
        batch_op.add_column(sa.Column("escalation_due_at", UTC, nullable=True))
        batch_op.add_column(sa.Column("escalated_at", UTC, nullable=True))
        batch_op.add_column(sa.Column("escalation_message_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_loss_prompt_message_id", ["prompt_message_id"])
        batch_op.create_index("ix_loss_reminder_due_at", ["reminder_due_at"])
        batch_op.create_index("ix_loss_escalation_due_at", ["escalation_due_at"])
        batch_op.create_foreign_key("fk_loss_prompt_message_id", "message", ["prompt_message_id"], ["id"])
        batch_op.create_foreign_key("fk_loss_escalation_message_id", "message", ["escalation_message_id"], ["id"])

    op.rename_table("outbox", "old_outbox")
    op.drop_index("ix_outbox_loss_id", table_name="old_outbox")
    op.drop_index("ix_outbox_state_due_at", table_name="old_outbox")
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("message.id"), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("due_at", UTC, nullable=False),
        sa.Column("claimed_by", sa.String(length=36), nullable=True),
        sa.Column("claimed_until", UTC, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("sent_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outbox_message_id", "outbox", ["message_id"])
    op.create_index("ix_outbox_state_due_at", "outbox", ["state", "due_at"])

    _carry_prompts_over()

    op.drop_table("old_outbox")
    with op.batch_alter_table("loss") as batch_op:
        batch_op.drop_column("prompt_ts")
        batch_op.drop_column("prompt_channel")


def _carry_prompts_over() -> None:
    """Each posted prompt becomes a message; its pending DM updates become outbox updates. Prompts
    not yet posted are left to the scheduler, which prompts every loss without a message."""
    bind = op.get_bind()
    posted = bind.execute(
        sa.select(loss, deal.c.owner_email, deal.c.owner_slack_id)
        .join(deal, deal.c.id == loss.c.deal_id)
        .where(loss.c.prompt_ts.is_not(None))
    ).all()
    refreshes = set(
        bind.scalars(
            sa.select(old_outbox.c.loss_id).where(old_outbox.c.kind == "refresh", old_outbox.c.state == "pending")
        )
    )
    for row in posted:
        message_id = bind.scalar(
            sa.insert(message)
            .values(
                kind="prompt",
                rep_key=row.owner_slack_id or (row.owner_email or "").lower(),
                rep_slack_id=row.owner_slack_id,
                rep_email=row.owner_email,
                page=0,
                channel=row.prompt_channel,
                ts=row.prompt_ts,
                created_at=row.created_at,
                posted_at=row.prompted_at or row.created_at,
            )
            .returning(message.c.id)
        )
        bind.execute(sa.insert(message_loss).values(message_id=message_id, loss_id=row.id))
        prompted_at = row.prompted_at or row.created_at
        due = {}
        if row.state == "awaiting":
            due = {
                "reminder_due_at": prompted_at + FIRST_REMINDER_AFTER,
                "escalation_due_at": prompted_at + ESCALATE_AFTER,
            }
        bind.execute(sa.update(loss).where(loss.c.id == row.id).values(prompt_message_id=message_id, **due))
        if row.id in refreshes:
            bind.execute(
                sa.insert(outbox).values(
                    kind="update",
                    message_id=message_id,
                    state="pending",
                    due_at=row.created_at,
                    attempts=0,
                    created_at=row.created_at,
                )
            )
    bind.execute(sa.update(loss).where(loss.c.prompt_ts.is_(None)).values(prompt_after=loss.c.created_at))


def downgrade() -> None:
    with op.batch_alter_table("loss") as batch_op:
        batch_op.add_column(sa.Column("prompt_channel", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("prompt_ts", sa.String(length=32), nullable=True))
    bind = op.get_bind()
    prompts = bind.execute(
        sa.select(loss.c.id, message.c.channel, message.c.ts).join(message, message.c.id == loss.c.prompt_message_id)
    ).all()
    for row in prompts:
        bind.execute(sa.update(loss).where(loss.c.id == row.id).values(prompt_channel=row.channel, prompt_ts=row.ts))

    op.drop_index("ix_outbox_state_due_at", table_name="outbox")
    op.drop_index("ix_outbox_message_id", table_name="outbox")
    op.drop_table("outbox")
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("loss_id", sa.Integer(), sa.ForeignKey("loss.id"), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("due_at", UTC, nullable=False),
        sa.Column("claimed_until", UTC, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("sent_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outbox_loss_id", "outbox", ["loss_id"])
    op.create_index("ix_outbox_state_due_at", "outbox", ["state", "due_at"])

    with op.batch_alter_table("loss") as batch_op:
        batch_op.drop_constraint("fk_loss_escalation_message_id", type_="foreignkey")
        batch_op.drop_constraint("fk_loss_prompt_message_id", type_="foreignkey")
        batch_op.drop_index("ix_loss_escalation_due_at")
        batch_op.drop_index("ix_loss_reminder_due_at")
        batch_op.drop_index("ix_loss_prompt_message_id")
        for column in (
            "escalation_message_id",
            "escalated_at",
            "escalation_due_at",
            "reminder_due_at",
            "last_reminded_at",
            "reminders_sent",
            "prompt_message_id",
            "prompt_after",
            "excluded_because",
        ):
            batch_op.drop_column(column)
    op.drop_index("ix_message_loss_loss_id", table_name="message_loss")
    op.drop_table("message_loss")
    op.drop_table("rep")
    op.drop_index("uq_message_escalation_per_rep_day", table_name="message")
    op.drop_table("message")
