"""Losses and their reason entries.

These functions never commit: the calling service owns the transaction.
"""

from collections import defaultdict
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, exists, func, insert, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import (
    Deal,
    Loss,
    LossState,
    Message,
    MessageLoss,
    ReasonEntry,
    Rep,
    table_of,
)

PROMPTING_LOCK = {"space": 20261205, "key": 1}
"""The advisory lock of `lock_prompting`: constants the application uses for nothing else."""


async def insert_losses(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    """Inserts losses in one statement; returns their ids, in the order of `rows`. Every row has the
    same keys, None for NULL (a Core insert, see `deal_queries.insert_deal_events`).

    Not with RETURNING's `sort_by_parameter_order`: SQLite cannot batch that, and inserted a row a
    statement. Each id comes back with its deal instead. A deal has more than one new loss only when
    one batch loses, reopens and loses it again; its losses' ids ascend in the order they were
    inserted, as both databases number the rows of an INSERT."""
    table = table_of(Loss)
    result = await session.execute(insert(table).returning(table.c.id, table.c.deal_id), rows)
    ids_by_deal: defaultdict[int, list[int]] = defaultdict(list)
    for loss_id, deal_id in result:
        ids_by_deal[deal_id].append(loss_id)
    for ids in ids_by_deal.values():
        ids.sort(reverse=True)
    return [ids_by_deal[row["deal_id"]].pop() for row in rows]


async def insert_reason_entries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Every row has the same keys, None for NULL (a Core insert, see
    `deal_queries.insert_deal_events`)."""
    await session.execute(insert(table_of(ReasonEntry)), rows)


async def imported_losses_without_reason(
    session: AsyncSession, deals: list[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """(source, external id) of each of `deals` to its newest loss that was imported as history,
    not asked about, and has no reason; deals without such a loss are left out."""
    if not deals:
        return {}
    rows = await session.execute(
        select(Deal.source, Deal.external_id, Loss.id)
        .join(Deal, Deal.id == Loss.deal_id)
        .where(
            tuple_(Deal.source, Deal.external_id).in_(deals),
            Loss.imported.is_(True),
            Loss.state == LossState.EXCLUDED,
            ~exists().where(ReasonEntry.loss_id == Loss.id),
        )
        .order_by(Loss.id)
    )
    return {(row.source, row.external_id): row.id for row in rows}


async def cancel_losses(session: AsyncSession, loss_ids: list[int], now: datetime) -> None:
    await session.execute(update(Loss).where(Loss.id.in_(loss_ids)).values(state=LossState.CANCELLED, cancelled_at=now))


async def restart_losses(
    session: AsyncSession, loss_ids: list[int], *, prompt_after: datetime, prompt_by: datetime
) -> None:
    """Starts these losses over, as if they had just arrived: no prompt, reminder or escalation
    yet (their deal has a new owner)."""
    await session.execute(
        update(Loss)
        .where(Loss.id.in_(loss_ids))
        .values(
            prompt_after=prompt_after,
            prompt_by=prompt_by,
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


class Recode(NamedTuple):
    entry: ReasonEntry
    before: ReasonEntry
    """The revision the re-code replaced."""
    deal: Deal


async def recode_of(session: AsyncSession, entry_id: int) -> Recode:
    """A re-coded reason entry, the revision before it, and their deal."""
    entry, deal = (
        await session.execute(
            select(ReasonEntry, Deal)
            .join(Loss, Loss.id == ReasonEntry.loss_id)
            .join(Deal, Deal.id == Loss.deal_id)
            .where(ReasonEntry.id == entry_id)
        )
    ).one()
    before = await session.scalar(
        select(ReasonEntry).where(ReasonEntry.loss_id == entry.loss_id, ReasonEntry.revision == entry.revision - 1)
    )
    assert before is not None  # a re-code is stored over a reason (bot.services.losses.record_reason)
    return Recode(entry, before, deal)


async def stored_reason_codes(session: AsyncSession) -> set[str]:
    return set(await session.scalars(select(ReasonEntry.reason_code).distinct()))


class LossToPrompt(NamedTuple):
    loss_id: int
    rep_key: str
    rep_slack_id: str | None
    rep_email: str | None
    prompt_after: datetime
    prompt_by: datetime


async def lock_prompting(session: AsyncSession) -> None:
    """Makes transactions that prompt wait for each other, across processes, until they end.

    PostgreSQL only (SQLite runs one writing transaction at a time): without it, two processes
    locking a rep's losses at the same moment (SKIP LOCKED) could each take some of them, and
    each send the rep a DM. Taken before the losses are read, so the second transaction sees what
    the first committed. The two-integer form of the advisory lock, whose keys are apart from the
    one-integer form `storage.deal_queries.lock_deals` and the migrations use.
    """
    bind = session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:space, :key)"), PROMPTING_LOCK)


async def losses_to_prompt(session: AsyncSession) -> list[LossToPrompt]:
    """Every loss awaiting a prompt that no other process is working on, oldest first, with the rep
    it goes to (their Slack id, or else their email)."""
    rep_key = func.coalesce(Deal.owner_slack_id, Deal.owner_email)
    rows = await session.execute(
        select(Loss.id, rep_key, Deal.owner_slack_id, Deal.owner_email, Loss.prompt_after, Loss.prompt_by)
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
    # prompt_after is not NULL here, and prompt_by is set with it.
    return [LossToPrompt(*row) for row in rows]  # type: ignore[arg-type]


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


async def update_losses(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Updates losses by primary key (`id` in each row), in one executemany."""
    await session.execute(update(Loss), rows)


def is_current_entry() -> ColumnElement[bool]:
    """True for a loss's newest reason entry, and for the NULL row of a loss with none (outer join).
    Written as NOT EXISTS in WHERE so that PostgreSQL plans it as one anti-join."""
    later = aliased(ReasonEntry)
    return ~exists().where(later.loss_id == ReasonEntry.loss_id, later.revision > ReasonEntry.revision)


async def losses_with_deals(
    session: AsyncSession, loss_ids: list[int], *, for_update: bool = False
) -> list[tuple[Loss, Deal]]:
    query = select(Loss, Deal).join(Deal, Loss.deal_id == Deal.id).where(Loss.id.in_(loss_ids)).order_by(Loss.id)
    rows = await session.execute(query.with_for_update(of=Loss) if for_update else query)
    return [(row[0], row[1]) for row in rows]


async def clear_delivery_errors(session: AsyncSession, message_id: int) -> None:
    """Forgets why the message could not be delivered, on each loss it lists: it is being sent again."""
    await session.execute(
        update(Loss)
        .where(Loss.id.in_(select(MessageLoss.loss_id).where(MessageLoss.message_id == message_id)))
        .values(delivery_error=None)
    )
