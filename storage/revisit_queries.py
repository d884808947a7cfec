"""Queries on revisits (see `storage.models.Revisit`). They never commit: the calling service owns
the transaction."""

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Deal, Loss, Rep, Revisit, RevisitState

OPEN_STATES = (RevisitState.DUE, RevisitState.SNOOZED)


async def revisit_of_loss(session: AsyncSession, loss_id: int, *, for_update: bool = False) -> Revisit | None:
    """The loss's revisit; `for_update` locks it (PostgreSQL) against a nudge being sent meanwhile."""
    query = select(Revisit).where(Revisit.loss_id == loss_id)
    return await session.scalar(query.with_for_update() if for_update else query)


class RevisitToNudge(NamedTuple):
    revisit: Revisit
    loss: Loss
    deal: Deal
    tz: str | None
    """The rep's time zone as Slack gave it, when the bot has looked the rep up."""


async def revisits_to_nudge(session: AsyncSession, now: datetime) -> list[RevisitToNudge]:
    """Open revisits whose nudge is due, that no other process is working on (SKIP LOCKED on
    PostgreSQL), with their loss, deal and rep's time zone."""
    rows = await session.execute(
        select(Revisit, Loss, Deal, Rep.tz)
        .join(Loss, Loss.id == Revisit.loss_id)
        .join(Deal, Deal.id == Loss.deal_id)
        .outerjoin(Rep, Rep.slack_id == Deal.owner_slack_id)
        .where(Revisit.state.in_(OPEN_STATES), Revisit.nudge_at <= now)
        .order_by(Revisit.nudge_at, Revisit.id)
        .with_for_update(of=Revisit, skip_locked=True)
    )
    return [RevisitToNudge(*row) for row in rows]


async def revisit_with_deal(session: AsyncSession, revisit_id: int) -> tuple[Revisit, Loss, Deal] | None:
    """The revisit, locked, with its loss and deal."""
    row = (
        await session.execute(
            select(Revisit, Loss, Deal)
            .join(Loss, Loss.id == Revisit.loss_id)
            .join(Deal, Deal.id == Loss.deal_id)
            .where(Revisit.id == revisit_id)
            .with_for_update(of=Revisit)
        )
    ).first()
    return (row[0], row[1], row[2]) if row is not None else None


async def open_revisits_of_deals(session: AsyncSession, deal_ids: list[int]) -> list[tuple[Revisit, str]]:
    """The open revisits of these deals, locked, each with its deal's CRM source."""
    rows = await session.execute(
        select(Revisit, Deal.source)
        .join(Loss, Loss.id == Revisit.loss_id)
        .join(Deal, Deal.id == Loss.deal_id)
        .where(Loss.deal_id.in_(deal_ids), Revisit.state.in_(OPEN_STATES))
        .order_by(Revisit.id)
        .with_for_update(of=Revisit)
    )
    return [(row[0], row[1]) for row in rows]
