"""The bot's Slack messages and the outbox of calls that post and update them.

These functions never commit: the calling service owns the transaction.
"""

from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.loss_queries import is_current_entry
from storage.models import (
    Deal,
    Loss,
    Message,
    MessageKind,
    MessageLoss,
    OutboxKind,
    OutboxMessage,
    OutboxState,
    ReasonEntry,
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


async def insert_outbox_messages(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(insert(OutboxMessage), rows)


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


async def insert_messages(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    """Inserts messages in one statement; returns their ids in the order given."""
    result = await session.scalars(
        insert(Message).returning(Message.id, sort_by_parameter_order=True), [{"page": 0, **row} for row in rows]
    )
    return list(result)


async def link_losses(session: AsyncSession, message_id: int, loss_ids: list[int]) -> None:
    await session.execute(insert(MessageLoss), [{"message_id": message_id, "loss_id": loss_id} for loss_id in loss_ids])


async def escalation_message_id(session: AsyncSession, rep_key: str, day: date) -> int | None:
    return await session.scalar(
        select(Message.id).where(
            Message.kind == MessageKind.ESCALATION, Message.rep_key == rep_key, Message.escalation_day == day
        )
    )


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


async def outbox_calls(session: AsyncSession, message_id: int) -> list[OutboxMessage]:
    """The calls queued for a message, oldest first."""
    return list(
        await session.scalars(
            select(OutboxMessage).where(OutboxMessage.message_id == message_id).order_by(OutboxMessage.id)
        )
    )


class PendingCalls(NamedTuple):
    number: int
    oldest_created_at: datetime | None


async def pending_calls(session: AsyncSession) -> PendingCalls:
    """How many calls are waiting to be made, and when the oldest of them was queued."""
    count, oldest = (
        await session.execute(
            select(func.count(), func.min(OutboxMessage.created_at)).where(OutboxMessage.state == OutboxState.PENDING)
        )
    ).one()
    return PendingCalls(count, oldest)
