"""A rep's own deals: those awaiting a reason, the upcoming revisits, the rep's numbers. For
`/closedlost pending` and `revisit`, and for the App Home tab, which is published again whenever
what it shows changes."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.periods import PeriodName, period_named
from bot.reasons import Catalogue
from bot.services.stats import read_closed_stats
from bot.views.home import Home, build_home_view
from storage import stats
from storage.stats import AwaitingLoss, Revisit

# Enough to act on, few enough to stay well inside a message's 50 blocks and a Home tab's 100.
AWAITING_SHOWN = 20
REVISITS_SHOWN = 25
HOME_PERIOD = PeriodName.DAYS_90


async def awaiting_losses(
    *, session_factory: async_sessionmaker[AsyncSession], user_id: str, limit: int = AWAITING_SHOWN
) -> tuple[list[AwaitingLoss], int]:
    """The rep's losses awaiting a reason, newest first, at most `limit`; and how many there are."""
    async with session_factory() as session, session.begin():
        return await stats.awaiting_losses(session, owner_slack_id=user_id, limit=limit)


async def upcoming_revisits(
    *, session_factory: async_sessionmaker[AsyncSession], user_id: str, today: date
) -> tuple[list[Revisit], int]:
    """The rep's open revisits due from today on, soonest first."""
    async with session_factory() as session, session.begin():
        return await stats.upcoming_revisits(
            session, start=today, end=None, owner_slack_id=user_id, limit=REVISITS_SHOWN
        )


async def load_home(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    catalogue: Catalogue,
    user_id: str,
    now: datetime,
    tz: ZoneInfo,
) -> Home:
    period = period_named(HOME_PERIOD, now=now, tz=tz)
    today = now.astimezone(tz).date()
    async with session_factory() as session, session.begin():
        awaiting, awaiting_total = await stats.awaiting_losses(session, owner_slack_id=user_id, limit=AWAITING_SHOWN)
        revisits, revisits_total = await stats.upcoming_revisits(
            session, start=today, end=None, owner_slack_id=user_id, limit=REVISITS_SHOWN
        )
        figures = await read_closed_stats(session, period=period, owner_slack_id=user_id, catalogue=catalogue)
    return Home(awaiting, awaiting_total, revisits, revisits_total, period, figures)


async def publish_home(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    slack: AsyncWebClient,
    catalogue: Catalogue,
    user_id: str,
    now: datetime,
    tz: ZoneInfo,
) -> None:
    """Publishes the rep's Home tab as it stands now (`views.publish` replaces it whole)."""
    home = await load_home(session_factory=session_factory, catalogue=catalogue, user_id=user_id, now=now, tz=tz)
    await slack.views_publish(user_id=user_id, view=build_home_view(home, catalogue))
