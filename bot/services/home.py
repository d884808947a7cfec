"""A rep's own deals: those awaiting a reason, the upcoming revisits, the rep's numbers. For
`/closedlost pending` and `revisit`, and for the App Home tab, which is published again whenever
what it shows changes (with the admin view at its bottom for ADMIN_USERS)."""

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.periods import PeriodName, period_named
from bot.reasons import Catalogue
from bot.services.admin import load_admin_panel
from bot.services.presenting import awaiting_deals, upcoming_revisits
from bot.services.stats import read_closed_stats
from bot.views.data import AwaitingDeal, Home, UpcomingRevisit
from bot.views.home import build_home_view
from storage import stats_queries

# Enough to act on, few enough to stay well inside a message's 50 blocks and a Home tab's 100.
AWAITING_SHOWN = 20
REVISITS_SHOWN = 25
HOME_PERIOD = PeriodName.DAYS_90


async def load_awaiting(
    *, session_factory: async_sessionmaker[AsyncSession], user_id: str, limit: int = AWAITING_SHOWN
) -> tuple[list[AwaitingDeal], int]:
    """The rep's losses awaiting a reason, the biggest first, at most `limit`; and how many there are."""
    async with session_factory() as session, session.begin():
        rows, total = await stats_queries.awaiting_losses(session, owner_slack_id=user_id, limit=limit)
    return awaiting_deals(rows), total


async def load_upcoming_revisits(
    *, session_factory: async_sessionmaker[AsyncSession], user_id: str, today: date
) -> tuple[list[UpcomingRevisit], int]:
    """The rep's open revisits due from today on, soonest first."""
    async with session_factory() as session, session.begin():
        rows, total = await stats_queries.upcoming_revisits(
            session, start=today, end=None, owner_slack_id=user_id, limit=REVISITS_SHOWN
        )
    return upcoming_revisits(rows), total


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
        awaiting, awaiting_total = await stats_queries.awaiting_losses(
            session, owner_slack_id=user_id, limit=AWAITING_SHOWN
        )
        revisits, revisits_total = await stats_queries.upcoming_revisits(
            session, start=today, end=None, owner_slack_id=user_id, limit=REVISITS_SHOWN
        )
        figures = await read_closed_stats(session, period=period, owner_slack_id=user_id, catalogue=catalogue)
    return Home(awaiting_deals(awaiting), awaiting_total, upcoming_revisits(revisits), revisits_total, period, figures)


@dataclass(frozen=True)
class HomePublisher:
    """Publishes a user's Home tab as it stands now: when they open it, and after they log a reason
    or answer a nudge. `views.publish` replaces the tab whole."""

    session_factory: async_sessionmaker[AsyncSession]
    slack: AsyncWebClient
    catalogue: Catalogue
    tz: ZoneInfo
    """The team's time zone (TIMEZONE): the 90 days of the rep's numbers end today there."""
    clock: Callable[[], datetime]
    admins: Collection[str]
    """ADMIN_USERS: their Home tab ends with the admin view."""

    async def publish(self, user_id: str) -> None:
        now = self.clock()
        home = await load_home(
            session_factory=self.session_factory, catalogue=self.catalogue, user_id=user_id, now=now, tz=self.tz
        )
        if user_id in self.admins:
            admin = await load_admin_panel(
                session_factory=self.session_factory, user_id=user_id, admins=self.admins, now=now
            )
            home = replace(home, admin=admin)
        await self.slack.views_publish(user_id=user_id, view=build_home_view(home, self.catalogue))
