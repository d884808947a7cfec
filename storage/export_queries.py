"""Losses as `closedlost export` writes them: one row per loss with its deal, its current reason and
its revisit, read a page at a time. These functions never commit.

Pages are read by keyset (`lost_at`, `id`), each in its own short transaction, rather than through
one cursor held open for the whole export: on SQLite every transaction takes the write lock
(`storage.engine` begins them IMMEDIATE) and the server has one connection, so a cursor held for
the minutes a million rows take would stop webhooks and prompts for as long. A loss's `lost_at`
never changes, so every loss in the range is read exactly once, whatever is written meanwhile.
"""

from datetime import date, datetime
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import ColumnElement, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from storage.loss_queries import is_current_entry
from storage.models import Deal, Loss, ReasonEntry, Revisit


class ExportedLoss(NamedTuple):
    loss_id: int
    source: str
    deal_id: str
    """The CRM's own id of the deal."""
    name: str
    account: str | None
    amount: Decimal | None
    currency: str | None
    owner_email: str | None
    lost_at: datetime
    state: str
    reason_code: str | None
    """The current reason (the newest revision); None while the loss awaits one."""
    detail: str | None
    """The competitor or the missing feature."""
    explanation: str | None
    logged_by: str | None
    logged_at: datetime | None
    revisit_on: date | None
    """The revisit's date (moved by snoozes); None when there is no revisit."""
    revisit_state: str | None
    imported: bool
    """The loss came from a history import (`closedlost import`)."""


class PageEnd(NamedTuple):
    """Where a page ended: the next page starts after this loss."""

    lost_at: datetime
    loss_id: int


async def exported_losses(
    session: AsyncSession, *, since: datetime | None, until: datetime | None, after: PageEnd | None, limit: int
) -> list[ExportedLoss]:
    """Up to `limit` losses with `lost_at` in [since, until), oldest first, after `after`; None bounds are open."""
    query = (
        select(
            Loss.id,
            Deal.source,
            Deal.external_id,
            Deal.name,
            Deal.account,
            Deal.amount,
            Deal.currency,
            Deal.owner_email,
            Loss.lost_at,
            Loss.state,
            ReasonEntry.reason_code,
            ReasonEntry.detail,
            ReasonEntry.explanation,
            ReasonEntry.logged_by,
            ReasonEntry.logged_at,
            Revisit.due_on,
            Revisit.state,
            Loss.imported,
        )
        .join(Deal, Deal.id == Loss.deal_id)
        .outerjoin(ReasonEntry, ReasonEntry.loss_id == Loss.id)
        .outerjoin(Revisit, Revisit.loss_id == Loss.id)
        .where(is_current_entry(), *_in_range(since, until))
        .order_by(Loss.lost_at, Loss.id)
        .limit(limit)
    )
    if after is not None:
        # The plain bound lets the lost_at index find the page's start; the row comparison orders
        # losses lost at the same instant.
        query = query.where(Loss.lost_at >= after.lost_at, tuple_(Loss.lost_at, Loss.id) > tuple_(*after))
    # Executed as Core, not through the ORM: the columns are plain, and the ORM's row loading
    # added an eighth to the time of a million rows.
    rows = await (await session.connection()).execute(query)
    return [ExportedLoss._make(row) for row in rows]


async def count_losses(session: AsyncSession, *, since: datetime | None, until: datetime | None) -> int:
    """How many losses `exported_losses` pages through for these bounds."""
    return await session.scalar(select(func.count()).select_from(Loss).where(*_in_range(since, until))) or 0


def _in_range(since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    bounds = []
    if since is not None:
        bounds.append(Loss.lost_at >= since)
    if until is not None:
        bounds.append(Loss.lost_at < until)
    return bounds
