"""The monthly summary behind `/closedlost stats` for long periods (`storage.summary_queries`),
brought up to date by the scheduler."""

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.event import CLOSED_WON
from storage import summary_queries


async def refresh_closed_summary(*, session_factory: async_sessionmaker[AsyncSession]) -> int:
    """Recomputes the summary of every month changed since it was last computed, and returns how many
    were. One transaction a month: on SQLite each holds the write lock for one month's reading only."""
    async with session_factory() as session:
        months = await summary_queries.changed_months(session)
    refreshed = 0
    for month in months:
        async with session_factory() as session, session.begin():
            await summary_queries.lock_month(session, month)
            refreshed += await summary_queries.refresh_month(session, month, won_stage=CLOSED_WON)
    return refreshed
