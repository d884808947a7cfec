"""The bot's Slack messages and the outbox of calls that post and update them.

These functions never commit: the calling service owns the transaction.
"""

from collections.abc import Collection
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.claims import ClaimLost
from storage.loss_queries import is_current_entry
from storage.models import (
    Deal,
    Loss,
    LossState,
    Message,
    MessageKind,
    MessageLoss,
    OutboxKind,
    OutboxMessage,
    OutboxState,
    ReasonEntry,
    Revisit,
    RevisitState,
)


async def message_ids_about(session: AsyncSession, loss_ids: list[int]) -> list[int]:
    """The messages that list these losses: prompts, reminders (so that none still says a reason
    is needed once it is logged), escalations, and announcements."""
    if not loss_ids:
        return []
    rows = await session.scalars(select(MessageLoss.message_id).distinct().where(MessageLoss.loss_id.in_(loss_ids)))
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
    """An outbox call claimed by a process: what to do, and who may record it done."""

    id: int
    kind: str
    message_id: int
    claimed_by: str
    conversation: str = ""
    """Where the call goes (a channel, or the rep of a DM): calls to one conversation are made in order."""


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
    claimed = rows.all()
    message_ids = {row.message_id for row in claimed}
    conversations = await session.execute(
        select(Message.id, func.coalesce(Message.post_to, Message.rep_slack_id, Message.rep_email)).where(
            Message.id.in_(message_ids)
        )
    )
    conversation_of: dict[int, str | None] = {row[0]: row[1] for row in conversations}
    return sorted(
        ClaimedMessage(
            *row, claimed_by=process_id, conversation=conversation_of.get(row.message_id) or f"message {row.message_id}"
        )
        for row in claimed
    )


async def renew_claims(session: AsyncSession, *, process_id: str, outbox_ids: Collection[int], until: datetime) -> None:
    """Extends this process's claims on these calls (the ones it is making) to `until`."""
    if outbox_ids:
        await session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id.in_(list(outbox_ids)),
                OutboxMessage.claimed_by == process_id,
                OutboxMessage.state == OutboxState.PENDING,
            )
            .values(claimed_until=until)
        )


async def release_claims(session: AsyncSession, *, process_id: str, outbox_ids: Collection[int] | None = None) -> None:
    """Hands back this process's claims on these calls, or on all of its calls when None."""
    if outbox_ids is not None and not outbox_ids:
        return
    await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.claimed_by == process_id,
            OutboxMessage.state == OutboxState.PENDING,
            *([OutboxMessage.id.in_(list(outbox_ids))] if outbox_ids is not None else []),
        )
        .values(claimed_by=None, claimed_until=None)
    )


def _still_held(claimed: ClaimedMessage) -> tuple[ColumnElement[bool], ...]:
    """The call is pending and the process that claimed it still holds it (see `storage.claims`)."""
    return (
        OutboxMessage.id == claimed.id,
        OutboxMessage.claimed_by == claimed.claimed_by,
        OutboxMessage.state == OutboxState.PENDING,
    )


async def mark_sent(session: AsyncSession, claimed: ClaimedMessage, now: datetime) -> None:
    """Records the call made; ClaimLost, and nothing changed, when its claimer no longer holds it."""
    await _finish(session, claimed, state=OutboxState.SENT, sent_at=now)


async def mark_failed(session: AsyncSession, claimed: ClaimedMessage, reason: str) -> None:
    """Records that the call cannot succeed; ClaimLost, and nothing changed, when its claimer no
    longer holds it."""
    await _finish(session, claimed, state=OutboxState.FAILED, last_error=reason)


async def _finish(session: AsyncSession, claimed: ClaimedMessage, **values: object) -> None:
    # One conditional UPDATE: on PostgreSQL a concurrent claim of the row waits for it and then
    # finds the row no longer pending, or this one finds the row claimed by the other.
    finished = await session.scalar(
        update(OutboxMessage)
        .where(*_still_held(claimed))
        .values(attempts=OutboxMessage.attempts + 1, **values)
        .returning(OutboxMessage.id)
    )
    if finished is None:
        raise ClaimLost(f"outbox call {claimed.id} is no longer held by {claimed.claimed_by}")


async def held_call(session: AsyncSession, claimed: ClaimedMessage) -> OutboxMessage:
    """The outbox row, locked until the transaction ends (PostgreSQL), while its claimer still holds
    it; ClaimLost otherwise."""
    row = await session.scalar(select(OutboxMessage).where(*_still_held(claimed)).with_for_update())
    if row is None:
        raise ClaimLost(f"outbox call {claimed.id} is no longer held by {claimed.claimed_by}")
    return row


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


class RefusedCall(NamedTuple):
    """A Slack call that failed for good, and the message it was for."""

    id: int
    call: str
    message_id: int
    message_kind: str
    post_to: str | None
    rep_slack_id: str | None
    rep_email: str | None
    error: str | None


async def refused_calls(session: AsyncSession, *, limit: int) -> tuple[list[RefusedCall], int]:
    """The failed calls that still matter, newest first, at most `limit`; and how many there are.

    A failed call matters while it is its message's latest call (a later one, retried or queued
    since, takes its place) and, for a post, while the message is unposted and still owed: a
    prompt while one of its losses awaits its reason on it, a reminder or an escalation while one
    of its losses awaits, a revisit nudge while its revisit waits for it; a debrief, a route post or
    a digest or a re-code notice until posted.
    """
    later = aliased(OutboxMessage)
    awaiting_here = exists().where(
        MessageLoss.message_id == Message.id,
        Loss.id == MessageLoss.loss_id,
        Loss.state == LossState.AWAITING,
        or_(Message.kind != MessageKind.PROMPT, Loss.prompt_message_id == Message.id),
    )
    nudge_waiting = exists().where(
        Revisit.message_id == Message.id, Revisit.state == RevisitState.DUE, Revisit.nudge_at.is_(None)
    )
    owed = or_(
        Message.kind.in_([MessageKind.DEBRIEF, MessageKind.ROUTE, MessageKind.DIGEST, MessageKind.RECODE]),
        and_(Message.kind == MessageKind.REVISIT, nudge_waiting),
        and_(Message.kind.in_([MessageKind.PROMPT, MessageKind.REMINDER, MessageKind.ESCALATION]), awaiting_here),
    )
    rows = (
        await session.execute(
            select(
                OutboxMessage.id,
                OutboxMessage.kind,
                Message.id,
                Message.kind,
                Message.post_to,
                Message.rep_slack_id,
                Message.rep_email,
                OutboxMessage.last_error,
                func.count().over(),
            )
            .join(Message, Message.id == OutboxMessage.message_id)
            .where(
                OutboxMessage.state == OutboxState.FAILED,
                ~exists().where(later.message_id == OutboxMessage.message_id, later.id > OutboxMessage.id),
                or_(OutboxMessage.kind == OutboxKind.UPDATE, and_(Message.ts.is_(None), owed)),
            )
            .order_by(OutboxMessage.id.desc())
            .limit(limit)
        )
    ).all()
    return [RefusedCall(*row[:-1]) for row in rows], rows[0][-1] if rows else 0


async def deal_names_listed(session: AsyncSession, message_ids: list[int]) -> dict[int, list[str]]:
    """The names of the deals each of these messages lists, in its order."""
    if not message_ids:
        return {}
    rows = await session.execute(
        select(MessageLoss.message_id, Deal.name)
        .join(Loss, Loss.id == MessageLoss.loss_id)
        .join(Deal, Deal.id == Loss.deal_id)
        .where(MessageLoss.message_id.in_(message_ids))
        .order_by(MessageLoss.message_id, Loss.lost_at, Loss.id)
    )
    names: dict[int, list[str]] = {}
    for message_id, name in rows:
        names.setdefault(message_id, []).append(name)
    return names


async def requeue_failed_call(session: AsyncSession, outbox_id: int, now: datetime) -> int | None:
    """Makes a failed call pending again, due now, with its tries counted afresh; returns its
    message's id, or None when the call is not (or no longer) failed."""
    return await session.scalar(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id, OutboxMessage.state == OutboxState.FAILED)
        .values(
            state=OutboxState.PENDING,
            due_at=now,
            attempts=0,
            last_error=None,
            claimed_by=None,
            claimed_until=None,
        )
        .returning(OutboxMessage.message_id)
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
