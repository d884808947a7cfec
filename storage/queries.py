"""Query functions. They never commit: the calling service owns the transaction."""

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, RowMapping, exists, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import (
    CrmJob,
    CrmJobKind,
    CrmJobState,
    Deal,
    DealEventRecord,
    DigestRun,
    Loss,
    LossState,
    Message,
    MessageKind,
    MessageLoss,
    OutboxKind,
    OutboxMessage,
    OutboxState,
    ReasonEntry,
    Rep,
    SlackUser,
)


async def existing_event_keys(session: AsyncSession, keys: Iterable[str]) -> set[str]:
    rows = await session.scalars(
        select(DealEventRecord.idempotency_key).where(DealEventRecord.idempotency_key.in_(set(keys)))
    )
    return set(rows)


async def lock_deals(session: AsyncSession, keys: Iterable[tuple[str, str]]) -> None:
    """Makes transactions that write the same deals wait for each other, across processes.

    PostgreSQL only (SQLite runs one writing transaction at a time): a transaction-scoped advisory
    lock per deal, taken in sorted order so that two batches never deadlock, and before the deals
    are read so that the second transaction sees what the first committed.
    """
    bind = session.bind
    if bind is None or bind.dialect.name != "postgresql":
        return
    names = sorted({f"{source}:{external_id}" for source, external_id in keys})
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(name, 0)) FROM unnest(CAST(:names AS text[])) AS name"),
        {"names": names},
    )


async def insert_deals(session: AsyncSession, rows: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """Inserts deals in one statement; returns (id, source, external_id) of each."""
    result = await session.execute(insert(Deal).returning(Deal.id, Deal.source, Deal.external_id), rows)
    return [(row.id, row.source, row.external_id) for row in result]


async def update_deals(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Updates deals by primary key (`id` in each row), in one executemany."""
    await session.execute(update(Deal), rows)


async def insert_losses(session: AsyncSession, rows: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """Inserts losses in one statement; returns (id, state) of each."""
    result = await session.execute(insert(Loss).returning(Loss.id, Loss.state), rows)
    return [(row.id, row.state) for row in result]


async def cancel_losses(session: AsyncSession, loss_ids: list[int], now: datetime) -> None:
    await session.execute(update(Loss).where(Loss.id.in_(loss_ids)).values(state=LossState.CANCELLED, cancelled_at=now))


async def restart_losses(session: AsyncSession, loss_ids: list[int], *, prompt_after: datetime) -> None:
    """Starts these losses over, as if they had just arrived: no prompt, reminder or escalation
    yet (their deal has a new owner)."""
    await session.execute(
        update(Loss)
        .where(Loss.id.in_(loss_ids))
        .values(
            prompt_after=prompt_after,
            prompt_message_id=None,
            prompted_at=None,
            delivery_error=None,
            reminders_sent=0,
            last_reminded_at=None,
            reminder_due_at=None,
            escalation_due_at=None,
            escalated_at=None,
            escalation_message_id=None,
        )
    )


async def message_ids_about(session: AsyncSession, loss_ids: list[int]) -> list[int]:
    """The prompts and escalations that list these losses."""
    if not loss_ids:
        return []
    rows = await session.scalars(
        select(MessageLoss.message_id)
        .distinct()
        .join(Message, Message.id == MessageLoss.message_id)
        .where(MessageLoss.loss_id.in_(loss_ids), Message.kind != MessageKind.REMINDER)
    )
    return sorted(rows)


async def insert_deal_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(insert(DealEventRecord), rows)


async def insert_outbox_messages(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(insert(OutboxMessage), rows)


async def ping(session: AsyncSession) -> None:
    await session.execute(text("SELECT 1"))


async def deal_rows(session: AsyncSession, source: str, external_ids: Iterable[str]) -> list[RowMapping]:
    """Every column of the deals of `source` with these CRM ids, as plain rows."""
    rows = await session.execute(
        select(*Deal.__table__.columns).where(Deal.source == source, Deal.external_id.in_(set(external_ids)))
    )
    return list(rows.mappings())


async def awaiting_loss_ids(session: AsyncSession, deal_ids: list[int]) -> dict[int, int]:
    """Deal id to the id of its loss awaiting a reason (a deal has at most one), locked on
    PostgreSQL against a concurrent prompt send."""
    if not deal_ids:
        return {}
    rows = await session.execute(
        select(Loss.deal_id, Loss.id)
        .where(Loss.deal_id.in_(deal_ids), Loss.state == LossState.AWAITING)
        .with_for_update()
    )
    return {row.deal_id: row.id for row in rows}


async def loss_with_deal(session: AsyncSession, loss_id: int, *, for_update: bool = False) -> tuple[Loss, Deal] | None:
    """The loss and its deal; `for_update` locks the loss (PostgreSQL) until the transaction ends."""
    query = select(Loss, Deal).join(Deal, Loss.deal_id == Deal.id).where(Loss.id == loss_id)
    row = (await session.execute(query.with_for_update(of=Loss) if for_update else query)).first()
    return (row[0], row[1]) if row is not None else None


async def latest_entry(session: AsyncSession, loss_id: int) -> ReasonEntry | None:
    return await session.scalar(
        select(ReasonEntry).where(ReasonEntry.loss_id == loss_id).order_by(ReasonEntry.revision.desc()).limit(1)
    )


async def stored_reason_codes(session: AsyncSession) -> set[str]:
    return set(await session.scalars(select(ReasonEntry.reason_code).distinct()))


async def slack_user_id(session: AsyncSession, email: str) -> str | None:
    return await session.scalar(select(SlackUser.user_id).where(SlackUser.email == email))


async def bring_forward_waiting_calls(session: AsyncSession, message_ids: list[int], now: datetime) -> set[int]:
    """Makes the calls queued for these messages that no process has picked up yet due now (one may
    be waiting out a backoff), and returns the messages that had one: such a call reads the
    message's state when it is made, so no other is needed. The rows stay locked until commit, so a
    process claiming one meanwhile waits and then reads the new state."""
    rows = await session.scalars(
        update(OutboxMessage)
        .where(
            OutboxMessage.message_id.in_(message_ids),
            OutboxMessage.state == OutboxState.PENDING,
            OutboxMessage.claimed_until.is_(None),
        )
        .values(due_at=now)
        .returning(OutboxMessage.message_id)
    )
    return set(rows)


class ClaimedMessage(NamedTuple):
    id: int
    kind: str
    message_id: int


async def claim_due_messages(
    session: AsyncSession, *, now: datetime, process_id: str, until: datetime, limit: int, message_id: int | None = None
) -> list[ClaimedMessage]:
    """Claims up to `limit` due calls that no other process holds, for `process_id` until `until`;
    only the calls of `message_id` when given.

    On PostgreSQL the candidates are locked with SKIP LOCKED, so processes claiming at the same
    moment take different rows; SQLite runs one writing transaction at a time.
    """
    claimable = (
        OutboxMessage.state == OutboxState.PENDING,
        OutboxMessage.due_at <= now,
        or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
        *([OutboxMessage.message_id == message_id] if message_id is not None else []),
    )
    # Two statements: inside `UPDATE … WHERE id IN (SELECT … LIMIT … FOR UPDATE SKIP LOCKED)`
    # PostgreSQL may run the subquery more than once and claim far more than `limit` rows.
    candidates = await session.scalars(
        select(OutboxMessage.id)
        .where(*claimable)
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(list(candidates)), *claimable)
        .values(claimed_by=process_id, claimed_until=until)
        .returning(OutboxMessage.id, OutboxMessage.kind, OutboxMessage.message_id)
    )
    return sorted(ClaimedMessage(*row) for row in rows)


async def renew_claims(session: AsyncSession, *, process_id: str, until: datetime) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.claimed_by == process_id, OutboxMessage.state == OutboxState.PENDING)
        .values(claimed_until=until)
    )


async def release_claims(session: AsyncSession, *, process_id: str) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.claimed_by == process_id, OutboxMessage.state == OutboxState.PENDING)
        .values(claimed_by=None, claimed_until=None)
    )


async def mark_sent(session: AsyncSession, outbox_id: int, now: datetime) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id)
        .values(state=OutboxState.SENT, sent_at=now, attempts=OutboxMessage.attempts + 1)
    )


async def mark_failed(session: AsyncSession, outbox_id: int, reason: str) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id)
        .values(state=OutboxState.FAILED, last_error=reason, attempts=OutboxMessage.attempts + 1)
    )


async def post_pending(session: AsyncSession, message_id: int) -> bool:
    """Whether the message's `chat.postMessage` is still to be made."""
    return bool(
        await session.scalar(
            select(
                exists().where(
                    OutboxMessage.message_id == message_id,
                    OutboxMessage.kind == OutboxKind.POST,
                    OutboxMessage.state == OutboxState.PENDING,
                )
            )
        )
    )


async def set_owner_slack_id(session: AsyncSession, deal_ids: list[int], *, email: str, user_id: str) -> None:
    """Records the Slack id of the owner with this email on these deals, in one statement; a deal
    whose owner the CRM changed meanwhile keeps the new one."""
    await session.execute(
        update(Deal).where(Deal.id.in_(deal_ids), Deal.owner_email == email).values(owner_slack_id=user_id)
    )


async def next_message_due_at(session: AsyncSession, now: datetime) -> datetime | None:
    """When a process can next claim a pending call: the earliest due time of those no process
    holds, or the earliest end of a claim (a process that died leaves its claims to run out)."""
    unclaimed = await session.scalar(
        select(func.min(OutboxMessage.due_at)).where(
            OutboxMessage.state == OutboxState.PENDING,
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
        )
    )
    claim_ends = await session.scalar(
        select(func.min(OutboxMessage.claimed_until)).where(
            OutboxMessage.state == OutboxState.PENDING, OutboxMessage.claimed_until >= now
        )
    )
    return min(filter(None, (unclaimed, claim_ends)), default=None)


class LossToPrompt(NamedTuple):
    loss_id: int
    rep_key: str
    rep_slack_id: str | None
    rep_email: str | None
    prompt_after: datetime | None


async def losses_to_prompt(session: AsyncSession) -> list[LossToPrompt]:
    """Every loss awaiting a prompt that no other process is working on, oldest first, with the rep
    it goes to (their Slack id, or else their email)."""
    rep_key = func.coalesce(Deal.owner_slack_id, Deal.owner_email)
    rows = await session.execute(
        select(Loss.id, rep_key, Deal.owner_slack_id, Deal.owner_email, Loss.prompt_after)
        .join(Deal, Deal.id == Loss.deal_id)
        .where(
            Loss.state == LossState.AWAITING,
            Loss.prompt_message_id.is_(None),
            Loss.prompt_after.is_not(None),
            Loss.delivery_error.is_(None),
        )
        .order_by(Loss.lost_at, Loss.id)
        .with_for_update(of=Loss, skip_locked=True)
    )
    return [LossToPrompt(*row) for row in rows]


class LossToChase(NamedTuple):
    """A loss due a reminder or an escalation, with what is needed to send it."""

    loss_id: int
    rep_slack_id: str
    rep_email: str | None
    tz: str | None
    prompted_at: datetime
    reminders_sent: int
    prompt_channel: str | None
    prompt_ts: str | None


def _chase_query() -> Any:
    return (
        select(
            Loss.id,
            Message.rep_slack_id,
            Deal.owner_email,
            Rep.tz,
            Loss.prompted_at,
            Loss.reminders_sent,
            Message.channel,
            Message.ts,
        )
        .join(Deal, Deal.id == Loss.deal_id)
        .join(Message, Message.id == Loss.prompt_message_id)
        .outerjoin(Rep, Rep.slack_id == Message.rep_slack_id)
        .where(Loss.state == LossState.AWAITING, Loss.prompted_at.is_not(None), Message.rep_slack_id.is_not(None))
        .order_by(Loss.lost_at, Loss.id)
        .with_for_update(of=Loss, skip_locked=True)
    )


async def losses_to_remind(session: AsyncSession, now: datetime) -> list[LossToChase]:
    rows = await session.execute(_chase_query().where(Loss.reminder_due_at <= now))
    return [LossToChase(*row) for row in rows]


async def losses_to_escalate(session: AsyncSession, now: datetime) -> list[LossToChase]:
    rows = await session.execute(_chase_query().where(Loss.escalation_due_at <= now, Loss.escalated_at.is_(None)))
    return [LossToChase(*row) for row in rows]


async def insert_messages(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    """Inserts messages in one statement; returns their ids in the order given."""
    result = await session.scalars(
        insert(Message).returning(Message.id, sort_by_parameter_order=True), [{"page": 0, **row} for row in rows]
    )
    return list(result)


async def link_losses(session: AsyncSession, message_id: int, loss_ids: list[int]) -> None:
    await session.execute(insert(MessageLoss), [{"message_id": message_id, "loss_id": loss_id} for loss_id in loss_ids])


async def update_losses(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Updates losses by primary key (`id` in each row), in one executemany."""
    await session.execute(update(Loss), rows)


async def escalation_message_id(session: AsyncSession, rep_key: str, day: date) -> int | None:
    return await session.scalar(
        select(Message.id).where(
            Message.kind == MessageKind.ESCALATION, Message.rep_key == rep_key, Message.escalation_day == day
        )
    )


def is_current_entry() -> ColumnElement[bool]:
    """True for a loss's newest reason entry, and for the NULL row of a loss with none (outer join).
    Written as NOT EXISTS in WHERE so that PostgreSQL plans it as one anti-join."""
    later = aliased(ReasonEntry)
    return ~exists().where(later.loss_id == ReasonEntry.loss_id, later.revision > ReasonEntry.revision)


class MessageItem(NamedTuple):
    loss: Loss
    deal: Deal
    entry: ReasonEntry | None


async def message_items(session: AsyncSession, message_id: int, *, for_update: bool = False) -> list[MessageItem]:
    """The losses a message lists, in order, each with its deal and its latest reason."""
    query = (
        select(Loss, Deal, ReasonEntry)
        .join(MessageLoss, MessageLoss.loss_id == Loss.id)
        .join(Deal, Deal.id == Loss.deal_id)
        .outerjoin(ReasonEntry, ReasonEntry.loss_id == Loss.id)
        .where(MessageLoss.message_id == message_id, is_current_entry())
        .order_by(Loss.lost_at, Loss.id)
    )
    rows = await session.execute(query.with_for_update(of=Loss) if for_update else query)
    return [MessageItem(*row) for row in rows]


async def rep_tz(session: AsyncSession, slack_id: str) -> str | None:
    return await session.scalar(select(Rep.tz).where(Rep.slack_id == slack_id))


async def has_rep(session: AsyncSession, slack_id: str) -> bool:
    return await session.get(Rep, slack_id) is not None


async def losses_with_deals(
    session: AsyncSession, loss_ids: list[int], *, for_update: bool = False
) -> list[tuple[Loss, Deal]]:
    query = select(Loss, Deal).join(Deal, Loss.deal_id == Deal.id).where(Loss.id.in_(loss_ids)).order_by(Loss.id)
    rows = await session.execute(query.with_for_update(of=Loss) if for_update else query)
    return [(row[0], row[1]) for row in rows]


async def insert_new_crm_jobs(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Inserts the jobs whose `event_key` is not stored yet, in one statement; returns how many."""
    bind = session.bind
    dialect_insert = postgresql.insert if bind is not None and bind.dialect.name == "postgresql" else sqlite.insert
    inserted = await session.scalars(
        dialect_insert(CrmJob).values(rows).on_conflict_do_nothing(index_elements=["event_key"]).returning(CrmJob.id)
    )
    return len(list(inserted))


async def has_waiting_write_back(session: AsyncSession, loss_id: int) -> bool:
    """A write-back of this loss is queued and no process has picked it up: it will write the newest reason."""
    waiting = await session.scalar(
        select(CrmJob.id).where(
            CrmJob.loss_id == loss_id,
            CrmJob.kind == CrmJobKind.WRITE_BACK,
            CrmJob.state == CrmJobState.PENDING,
            CrmJob.claimed_until.is_(None),
        )
    )
    return waiting is not None


class ClaimedCrmJob(NamedTuple):
    id: int
    kind: str
    source: str
    payload: dict[str, Any] | None
    loss_id: int | None


async def claim_due_crm_jobs(
    session: AsyncSession, *, now: datetime, until: datetime, limit: int
) -> list[ClaimedCrmJob]:
    """Claims up to `limit` due CRM jobs no other process holds, as `claim_due_messages` does."""
    claimable = (
        CrmJob.state == CrmJobState.PENDING,
        CrmJob.due_at <= now,
        or_(CrmJob.claimed_until.is_(None), CrmJob.claimed_until < now),
    )
    candidates = await session.scalars(
        select(CrmJob.id).where(*claimable).order_by(CrmJob.id).limit(limit).with_for_update(skip_locked=True)
    )
    rows = await session.execute(
        update(CrmJob)
        .where(CrmJob.id.in_(list(candidates)), *claimable)
        .values(claimed_until=until)
        .returning(CrmJob.id, CrmJob.kind, CrmJob.source, CrmJob.payload, CrmJob.loss_id)
    )
    return sorted((ClaimedCrmJob(*row) for row in rows), key=lambda job: job.id)


async def next_crm_job_due_at(session: AsyncSession, now: datetime) -> datetime | None:
    return await session.scalar(
        select(func.min(CrmJob.due_at)).where(
            CrmJob.state == CrmJobState.PENDING,
            or_(CrmJob.claimed_until.is_(None), CrmJob.claimed_until < now),
        )
    )


async def routed_losses(session: AsyncSession, loss_ids: list[int]) -> set[tuple[int, str]]:
    """(loss, channel) for each of these losses that a route post (REASON_ROUTES) already lists."""
    if not loss_ids:
        return set()
    rows = await session.execute(
        select(MessageLoss.loss_id, Message.post_to)
        .join(Message, Message.id == MessageLoss.message_id)
        .where(MessageLoss.loss_id.in_(loss_ids), Message.kind == MessageKind.ROUTE)
    )
    return {(loss_id, channel) for loss_id, channel in rows if channel is not None}


async def digest_message(session: AsyncSession, *, channel: str, week_start: date) -> Message | None:
    """The message of the digest recorded for this channel and week, if there is one."""
    return await session.scalar(
        select(Message)
        .join(DigestRun, DigestRun.message_id == Message.id)
        .where(DigestRun.channel == channel, DigestRun.week_start == week_start)
    )


async def digest_week_start(session: AsyncSession, message_id: int) -> date:
    """The Monday of the week a digest message covers."""
    return (await session.scalars(select(DigestRun.week_start).where(DigestRun.message_id == message_id))).one()


async def outbox_calls(session: AsyncSession, message_id: int) -> list[OutboxMessage]:
    """The calls queued for a message, oldest first."""
    return list(
        await session.scalars(
            select(OutboxMessage).where(OutboxMessage.message_id == message_id).order_by(OutboxMessage.id)
        )
    )
