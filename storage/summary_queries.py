"""Keeping `closed_summary` up to date: the months marked changed (by the triggers of migration
0014) are recomputed from the deals, losses and reason entries, one at a time.

These functions never commit: the calling service owns the transaction.

Why a month's figures are never wrong, whatever runs at the same time: a transaction that changes
a month's rows marks the month in the same commit, so in every committed state a month without a
mark has summary rows equal to its rows' figures. `refresh_month` reads the month's marks first,
then recomputes it in a later statement, which sees every change those marks stand for, and
deletes only the marks it read: a change committed after they were read leaves its own mark, and
the month is read from the deals until the next refresh.
"""

from datetime import date

from sqlalchemy import delete, insert, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ClosedSummary, ClosedSummaryChange
from storage.stats_queries import ClosedGroup, month_start, next_month, raw_closed_groups

REFRESH_LOCK_SPACE = 20261206
"""The advisory lock space of `lock_month` (a month's key is its ordinal day): a constant the
application uses for nothing else."""

MARKS_PER_DELETE = 10_000


async def changed_months(session: AsyncSession) -> list[date]:
    """The months whose summary is out of date, oldest first."""
    return list(await session.scalars(select(ClosedSummaryChange.month).distinct().order_by(ClosedSummaryChange.month)))


async def lock_month(session: AsyncSession, month: date) -> None:
    """Makes transactions that refresh the same month wait for each other, across processes, until
    they end: two refreshing it at once would each delete the summary rows they see and insert
    their own, leaving both. PostgreSQL only (SQLite runs one writing transaction at a time)."""
    bind = session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :key)"), {"space": REFRESH_LOCK_SPACE, "key": month.toordinal()}
        )


async def refresh_month(session: AsyncSession, month: date, *, won_stage: str) -> bool:
    """Recomputes the month's summary if it is marked changed, and deletes the marks it read;
    False when it was not marked (another process refreshed it)."""
    marks = list(await session.scalars(select(ClosedSummaryChange.tx).where(ClosedSummaryChange.month == month)))
    if not marks:
        return False
    groups = await session.execute(
        union_all(*raw_closed_groups(month_start(month), month_start(next_month(month)), None, won_stage))
    )
    await session.execute(delete(ClosedSummary).where(ClosedSummary.month == month))
    rows = [{"month": month, **ClosedGroup._make(row)._asdict()} for row in groups]
    if rows:
        await session.execute(insert(ClosedSummary), rows)
    # In slices: on PostgreSQL a busy month gets a mark from every transaction that wrote it since the
    # last refresh, and a statement takes at most 32,767 parameters.
    for first in range(0, len(marks), MARKS_PER_DELETE):
        read = marks[first : first + MARKS_PER_DELETE]
        await session.execute(
            delete(ClosedSummaryChange).where(ClosedSummaryChange.month == month, ClosedSummaryChange.tx.in_(read))
        )
    return True
