"""The tables; each class's docstring says what a row is. Every datetime is aware UTC; every amount
is a Decimal in the deal's currency."""

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Numeric, String, Table, Text, UniqueConstraint, false, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.types import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map = {
        datetime: UTCDateTime,
        Decimal: Numeric(18, 2),
        dict[str, Any]: JSON,
    }


def table_of(model: type[Base]) -> Table:
    """The model's table, for Core statements, where a row's None is NULL (see
    `deal_queries.insert_deal_events`)."""
    return Base.metadata.tables[model.__tablename__]


class LossState(StrEnum):
    AWAITING = "awaiting"
    LOGGED = "logged"
    CANCELLED = "cancelled"
    EXCLUDED = "excluded"
    """Recorded and counted, but no reason is asked for (see `Loss.excluded_because`)."""


class ReasonSource(StrEnum):
    REP = "rep"
    """Logged by the deal's rep in Slack."""
    CRM = "crm"
    """The CRM's own loss reason (or a file's), stored by `closedlost import`: no rep was asked."""


class MessageKind(StrEnum):
    PROMPT = "prompt"
    """The DM asking a rep for the reasons of one or more losses."""
    REMINDER = "reminder"
    """A reply in the prompt's thread listing the rep's losses still without a reason."""
    ESCALATION = "escalation"
    """The day's post in the manager channel about one rep's overdue losses."""
    REVISIT = "revisit"
    """The DM that nudges a rep to revisit a deal on its revisit date (see `Revisit`)."""
    DEBRIEF = "debrief"
    """A card in the manager channel about a large loss whose reason was logged (DEBRIEF_MIN_AMOUNT)."""
    ROUTE = "route"
    """A post in a team's channel about losses logged with a reason routed to it (REASON_ROUTES)."""
    DIGEST = "digest"
    """The weekly digest (see `DigestRun`); it lists no losses of its own."""
    RECODE = "recode"
    """A reply in the rep's prompt thread saying that a manager re-coded a reason (`reason_entry_id`);
    it lists no losses, so later changes to the reason leave it as it was said."""


class OutboxKind(StrEnum):
    POST = "post"
    """`chat.postMessage` of a message."""
    UPDATE = "update"
    """`chat.update` of a posted message, to show its losses' current state."""


class OutboxState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Deal(Base):
    """One CRM deal as last reported; `stage_changed_at` orders the events that update it."""

    __tablename__ = "deal"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        # Stats and App Home: a rep's deals, and deals won in a period (overall and per rep).
        Index("ix_deal_owner_stage_changed", "owner_slack_id", "stage", "stage_changed_at"),
        Index("ix_deal_stage_changed", "stage", "stage_changed_at"),
        # A deal's owner and figures without reading the table: stats and the digest look them up for
        # every loss of a period (or every loss awaiting a reason), and for one rep's deals, which
        # the second index lists. Without them PostgreSQL reads the whole table for a month's losses.
        Index("ix_deal_figures", "id", "owner_slack_id", "currency", "amount"),
        Index("ix_deal_owner_figures", "owner_slack_id", "id", "currency", "amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(500))
    account: Mapped[str | None] = mapped_column(String(500))
    amount: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    owner_email: Mapped[str | None] = mapped_column(String(320))
    owner_slack_id: Mapped[str | None] = mapped_column(String(32))
    stage: Mapped[str] = mapped_column(String(100))
    stage_changed_at: Mapped[datetime]
    url: Mapped[str | None] = mapped_column(String(2000))
    crm_reason: Mapped[str | None] = mapped_column(Text)
    """The loss reason as the CRM last reported it, to pre-select a reason in the modal."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class DealEventRecord(Base):
    """The audit trail: every accepted event, applied or not (an older event is kept, unapplied)."""

    __tablename__ = "deal_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(600), unique=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("deal.id"), index=True)
    stage: Mapped[str] = mapped_column(String(100))
    changed_at: Mapped[datetime]
    received_at: Mapped[datetime]
    applied: Mapped[bool]
    payload: Mapped[dict[str, Any]]
    via: Mapped[str] = mapped_column(String(16), server_default="webhook")
    """How the event first reached the bot: `webhook`, `sweep` or `import`."""


class Loss(Base):
    """One time a deal entered closed-lost, and the state of its reason."""

    __tablename__ = "loss"
    # A deal has at most one loss awaiting a reason.
    __table_args__ = (
        Index(
            "uq_loss_awaiting_per_deal",
            "deal_id",
            unique=True,
            postgresql_where=text("state = 'awaiting'"),
            sqlite_where=text("state = 'awaiting'"),
        ),
        # A rep's losses awaiting a reason (App Home, /closedlost pending) from indexes alone,
        # joined to ix_deal_owner_figures.
        Index(
            "ix_loss_awaiting_by_deal",
            "deal_id",
            "lost_at",
            "id",
            postgresql_where=text("state = 'awaiting'"),
            sqlite_where=text("state = 'awaiting'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("deal.id"), index=True)
    lost_at: Mapped[datetime] = mapped_column(index=True)
    state: Mapped[LossState] = mapped_column(String(16), index=True)
    excluded_because: Mapped[str | None] = mapped_column(String(200))
    prompt_after: Mapped[datetime | None]
    """BULK_WINDOW after the loss began waiting for its prompt. A rep's prompt goes out once every
    loss it lists is past this (BULK_WINDOW without a new loss), or once one is past `prompt_by`:
    so a burst, however long it takes, makes one DM."""
    prompt_by: Mapped[datetime | None]
    """BULK_MAX after the loss began waiting: the latest its prompt waits for the rep's other
    losses. Set with `prompt_after`."""
    prompt_message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"), index=True)
    prompted_at: Mapped[datetime | None]
    delivery_error: Mapped[str | None] = mapped_column(Text)
    reminders_sent: Mapped[int] = mapped_column(default=0)
    last_reminded_at: Mapped[datetime | None]
    reminder_due_at: Mapped[datetime | None] = mapped_column(index=True)
    escalation_due_at: Mapped[datetime | None] = mapped_column(index=True)
    escalated_at: Mapped[datetime | None]
    escalation_message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"))
    logged_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    imported: Mapped[bool] = mapped_column(default=False, server_default=false())
    """Opened by `closedlost import` (history), not by a webhook or the sweep."""


FLAGGED_ENTRIES = "recoded OR confirmed_over IS NOT NULL"
"""The reason entries a manager re-coded or a rep kept over a suggestion: the partial index
ix_reason_entry_flagged holds them, and a query finds them through it by this very condition
(SQLite uses a partial index only for a WHERE term written as the index's)."""


class ReasonEntry(Base):
    """A rep's answer for a loss. An edit adds the next revision; earlier ones stay as history.

    `(loss_id, revision)` is unique, so two submissions made against the same revision (a double
    click, a modal submitted twice) can never both be stored.
    """

    __tablename__ = "reason_entry"
    __table_args__ = (
        UniqueConstraint("loss_id", "revision"),
        # Finding a loss's current reason (its highest revision) from the index alone: stats read it
        # for every loss of a period.
        Index("ix_reason_entry_current", "loss_id", "revision", "reason_code"),
        # The quality figures read the few re-coded or confirmed entries of a period from it alone.
        Index(
            "ix_reason_entry_flagged",
            "loss_id",
            postgresql_where=text(FLAGGED_ENTRIES),
            sqlite_where=text(FLAGGED_ENTRIES),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    loss_id: Mapped[int] = mapped_column(ForeignKey("loss.id"), index=True)
    revision: Mapped[int]
    reason_code: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[str | None] = mapped_column(String(200))
    detail_key: Mapped[str | None] = mapped_column(String(200))
    """The key `detail` is counted under (bot.competitors.detail_key): one for all its spellings."""
    explanation: Mapped[str] = mapped_column(Text)
    revisit_on: Mapped[date | None]
    logged_by: Mapped[str] = mapped_column(String(32))
    logged_at: Mapped[datetime]
    view_id: Mapped[str | None] = mapped_column(String(64))
    bulk: Mapped[bool] = mapped_column(default=False, server_default=false())
    """Given for a whole bulk clean-up with one click (README.md, "Bulk clean-ups"): the digest
    counts these apart."""
    confirmed_over: Mapped[str | None] = mapped_column(String(64))
    """The reason code the modal suggested when the rep kept this reason instead (README.md, "A second
    look at the pick"); None when nothing was suggested or the rep switched."""
    source: Mapped[ReasonSource] = mapped_column(String(16), default=ReasonSource.REP, server_default="rep")
    """Who gave the reason: the rep, or the CRM's history (then `logged_by` is the deal's source)."""
    recoded: Mapped[bool] = mapped_column(default=False, server_default=false())
    """Stored by a manager over the rep's answer (README.md, "Re-coding a reason"): `logged_by` is
    the manager."""


class Message(Base):
    """A Slack message the bot posts about losses, and updates as they change.

    Its content is built from its losses (`message_loss`) whenever it is posted or updated. A
    prompt or a reminder goes to the rep (`rep_slack_id`, or found by `rep_email` when it is sent);
    an escalation goes to the manager channel, one per rep and day.
    """

    __tablename__ = "message"
    __table_args__ = (
        Index(
            "uq_message_escalation_per_rep_day",
            "rep_key",
            "escalation_day",
            unique=True,
            postgresql_where=text("kind = 'escalation'"),
            sqlite_where=text("kind = 'escalation'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[MessageKind] = mapped_column(String(16))
    rep_key: Mapped[str | None] = mapped_column(String(320))
    """The rep as the CRM names them: their Slack id, or else their email (lower case); None for a digest."""
    rep_slack_id: Mapped[str | None] = mapped_column(String(32))
    rep_email: Mapped[str | None] = mapped_column(String(320))
    post_to: Mapped[str | None] = mapped_column(String(32))
    """A channel id; None for a DM to the rep."""
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    escalation_day: Mapped[date | None]
    page: Mapped[int] = mapped_column(default=0)
    channel: Mapped[str | None] = mapped_column(String(32))
    ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
    posted_at: Mapped[datetime | None]
    post_started_at: Mapped[datetime | None]
    """When a try to post the message began whose outcome is not known (set before the call, cleared
    when Slack answers that it failed): the next try looks for the post in Slack first."""
    reason_entry_id: Mapped[int | None] = mapped_column(ForeignKey("reason_entry.id"))
    """The re-code a RECODE notice tells of."""


class MessageLoss(Base):
    """The losses a message is about, in the order it lists them."""

    __tablename__ = "message_loss"

    message_id: Mapped[int] = mapped_column(ForeignKey("message.id"), primary_key=True)
    loss_id: Mapped[int] = mapped_column(ForeignKey("loss.id"), primary_key=True, index=True)


class Rep(Base):
    """What the bot knows of a rep from Slack: the time zone their working hours are counted in,
    and the name posts call them by without pinging them."""

    __tablename__ = "rep"

    slack_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tz: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255))
    """`profile.display_name` from `users.info`, else `real_name`; None until looked up."""
    looked_up_at: Mapped[datetime]


class SlackUser(Base):
    """Cache of `users.lookupByEmail`: CRM owner email (lower case) to Slack user id."""

    __tablename__ = "slack_user"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32))
    looked_up_at: Mapped[datetime]


class OutboxMessage(Base):
    """A Slack call the bot owes, recorded before it is made.

    A row names what to do (`kind`) with which message; the content is built from the message's
    losses when it is sent, so a late message never shows stale data. `claimed_by` and
    `claimed_until` let one process at a time work on a row; the process renews its claims while
    it runs, so the claims of a process that died run out within a few scheduler ticks.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_state_due_at", "state", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[OutboxKind] = mapped_column(String(32))
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id"), index=True)
    state: Mapped[OutboxState] = mapped_column(String(16))
    due_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(36))
    claimed_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class CrmJobKind(StrEnum):
    FETCH = "fetch"
    """A CRM event that names a deal without describing it: fetch the deal, then record the event."""
    WRITE_BACK = "write_back"
    """Write a loss's newest reason to its deal in the CRM."""


class CrmJobState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class CrmJob(Base):
    """Work against a CRM's API that must survive an outage of that API, and a restart of the bot.

    A fetch carries the CRM's own event (`payload`) and its idempotency key (`event_key`, unique, so a
    redelivered event is stored once); a write-back names its loss and reads the newest reason when
    it runs. `claimed_by` and `claimed_until` let one process at a time work on a row, as in the
    outbox.
    """

    __tablename__ = "crm_job"
    __table_args__ = (Index("ix_crm_job_state_due_at", "state", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[CrmJobKind] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))
    event_key: Mapped[str | None] = mapped_column(String(600), unique=True)
    payload: Mapped[dict[str, Any] | None]
    loss_id: Mapped[int | None] = mapped_column(ForeignKey("loss.id"), index=True)
    state: Mapped[CrmJobState] = mapped_column(String(16))
    due_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(36))
    claimed_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]


class RevisitState(StrEnum):
    DUE = "due"
    """Waiting for its date, or for the rep's answer to its nudge."""
    SNOOZED = "snoozed"
    """The rep put it off: due again on its new date."""
    DONE = "done"
    """No longer asked for: the reason was edited to have no revisit date."""
    DROPPED = "dropped"
    """The rep judged the deal not worth another try."""
    REOPENED = "reopened"
    """The deal came back, a win-back: the rep reopened it, or the CRM reports it open or won again."""


class Revisit(Base):
    """A logged loss to look at again on a date: the rep's revisit date, or the reason's default delay.

    `nudge_at` is when the nudge DM is due (the start of the rep's working hours on `due_on`, in their
    time zone); the job that sends it clears it in the transaction that queues the DM, so a nudge goes
    out once however many processes run. A snooze moves `due_on` and sets `nudge_at` again.
    """

    __tablename__ = "revisit"

    id: Mapped[int] = mapped_column(primary_key=True)
    loss_id: Mapped[int] = mapped_column(ForeignKey("loss.id"), unique=True)
    due_on: Mapped[date] = mapped_column(index=True)
    state: Mapped[RevisitState] = mapped_column(String(16))
    nudge_at: Mapped[datetime | None] = mapped_column(index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"))
    """The latest nudge."""
    nudged_at: Mapped[datetime | None]
    snoozes: Mapped[int] = mapped_column(default=0)
    closed_at: Mapped[datetime | None] = mapped_column(index=True)
    """When it became done, dropped or reopened."""
    closed_by: Mapped[str | None] = mapped_column(String(32))
    """The Slack user who answered the nudge, or the deal's CRM source when the CRM reopened it."""
    created_at: Mapped[datetime]


class DigestRun(Base):
    """One weekly digest for one channel: the unique key makes it posted once, whatever the number
    of processes or restarts. Its message goes through the outbox like any other."""

    __tablename__ = "digest_run"
    __table_args__ = (UniqueConstraint("channel", "week_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    week_start: Mapped[date]
    """The Monday, in TIMEZONE, of the week the digest covers."""
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id"), unique=True)
    created_at: Mapped[datetime]


class SweepCursor(Base):
    """How far the sweep of one CRM has read, and which process is sweeping it (README.md, "The sweep:
    what the webhooks missed").

    `cursor` is the newest modification time read whose events are committed; the next sweep reads
    from a little before it. A process takes the sweep when it is due and no one holds it, by an
    UPDATE that sets `claimed_by` and `claimed_until` (renewed after each page), so one process at a
    time sweeps a CRM, and one sweep runs per SWEEP_EVERY however many processes run.
    """

    __tablename__ = "sweep_cursor"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    cursor: Mapped[datetime]
    due_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(36))
    claimed_until: Mapped[datetime | None]
    swept_at: Mapped[datetime | None]
    """When the last sweep ended, whole or cut short."""
    last_error: Mapped[str | None] = mapped_column(Text)
    """Why the last sweep was cut short; None when it read everything."""
    created_at: Mapped[datetime]


class WebhookMiss(Base):
    """Stage changes that a page of a sweep found first although the CRM's webhook is configured:
    changes the webhook did not deliver. The weekly digest counts them per CRM."""

    __tablename__ = "webhook_miss"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    found_at: Mapped[datetime] = mapped_column(index=True)
    stage_changes: Mapped[int]


class ClosedSummary(Base):
    """Closed deals of one calendar month (UTC) counted and added up as `/closedlost stats` groups
    them: losses by state, current reason and currency, wins by currency. Kept so that the figures
    of long periods are read from a few hundred rows rather than from every deal. A month is
    recomputed from the deals, losses and reason entries whenever it changes (see
    `ClosedSummaryChange`), never patched."""

    __tablename__ = "closed_summary"

    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[date] = mapped_column(index=True)
    """The first day of the month."""
    outcome: Mapped[str] = mapped_column(String(4))
    """`lost` or `won` (storage.stats_queries.LOST and WON)."""
    state: Mapped[str | None] = mapped_column(String(16))
    """The losses' state; None for wins."""
    reason_code: Mapped[str | None] = mapped_column(String(64))
    imported_from: Mapped[str | None] = mapped_column(String(32))
    """For reasons the CRM's history gave (`closedlost import`), the deals' source."""
    currency: Mapped[str | None] = mapped_column(String(3))
    deals: Mapped[int]
    amount: Mapped[Decimal | None] = mapped_column(Numeric(24, 2))


class ClosedSummaryChange(Base):
    """A month whose closed deals changed since its `ClosedSummary` rows were computed: until the
    row is gone, stats read that month from the deals themselves.

    Written by database triggers on `deal`, `loss` and `reason_entry` (migration 0017), in the
    transaction that changes them, so that no write path can forget it. `tx` is the writing
    transaction's id on PostgreSQL (one row per month and transaction, so that writers never wait
    on each other's row) and 0 on SQLite, which has one writer at a time."""

    __tablename__ = "closed_summary_change"

    month: Mapped[date] = mapped_column(primary_key=True)
    tx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
