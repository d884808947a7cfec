"""The weekly digest's content: what was lost last week, why, for how much, who has not logged,
what to revisit, computed from the data for one week (README.md, "The weekly digest": weeks start on Monday in
TIMEZONE). Posting it, once per channel and week, is the scheduler's job."""

import statistics
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.connectors import crm_name
from bot.periods import Week
from bot.reasons import Catalogue
from bot.services.presenting import upcoming_revisits
from bot.services.stats import quality_of, read_closed_stats
from bot.views.data import Digest, Quote, RepLine, WonBackDeal
from storage import rep_queries, stats_queries, sweep_queries

COMPETITOR = "competitor"
MISSING_FEATURE = "missing_feature"
REVISITS_AHEAD = timedelta(days=14)
REVISITS_LISTED = 15
WIN_BACKS_LISTED = 15
QUOTES = 3
# Losses in other currencies read to find the largest of each: a bound, since a week could hold thousands.
OTHER_CURRENCY_ROWS = 100


async def build_digest(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    catalogue: Catalogue,
    week: Week,
    now: datetime,
    tz: ZoneInfo,
    currency: str,
) -> Digest:
    """The digest of `week`. Its largest losses are ranked within `currency` (CURRENCY), the team's
    main one; the largest in each other currency are listed apart, since amounts in different
    currencies cannot be compared without exchange rates."""
    since, until = week.period.since, week.period.until
    assert since is not None  # a week always has a start
    today = now.astimezone(tz).date()
    async with session_factory() as session, session.begin():
        current = await read_closed_stats(session, period=week.period, owner_slack_id=None, catalogue=catalogue)
        previous = await read_closed_stats(
            session, period=week.before(tz).period, owner_slack_id=None, catalogue=catalogue
        )
        competitors = await stats_queries.detail_counts(session, since=since, until=until, reason_code=COMPETITOR)
        gaps = await stats_queries.detail_counts(session, since=since, until=until, reason_code=MISSING_FEATURE)
        delays = await stats_queries.reason_delays(session, since=since, until=until)
        bulk_answers = await stats_queries.bulk_answers(session, since=since, until=until)
        overdue = await stats_queries.overdue_by_rep(session, now=now)
        rep_groups = await stats_queries.rep_groups(session, since=since, until=until)
        rep_quality = await stats_queries.quality_groups(session, since=since, until=until, owner_slack_id=None)
        revisits, revisits_total = await stats_queries.upcoming_revisits(
            session, start=today, end=today + REVISITS_AHEAD, owner_slack_id=None, limit=REVISITS_LISTED
        )
        win_backs, win_backs_total = await stats_queries.win_backs(
            session, since=since, until=until, limit=WIN_BACKS_LISTED
        )
        quotes = await stats_queries.largest_explained(
            session, since=since, until=until, limit=QUOTES, currency=currency, in_currency=True
        )
        others = await stats_queries.largest_explained(
            session, since=since, until=until, limit=OTHER_CURRENCY_ROWS, currency=currency, in_currency=False
        )
        misses = await sweep_queries.webhook_misses(session, since=since, until=until)
    seconds = [(logged - asked).total_seconds() for asked, logged in delays]
    median = timedelta(seconds=statistics.median(seconds)) if seconds else None
    digest = Digest(
        week,
        current,
        previous,
        competitors,
        gaps,
        median,
        overdue,
        _rep_lines(rep_groups, rep_quality),
        upcoming_revisits(revisits),
        revisits_total,
        [WonBackDeal(*row) for row in win_backs],
        win_backs_total,
        [Quote(*row) for row in quotes],
        [(crm_name(source), count) for source, count in misses],
        bulk_answers,
        quotes_elsewhere=_largest_of_each_currency(others),
    )
    async with session_factory() as session, session.begin():
        names = await rep_queries.rep_names(session, digest.people())
    return replace(digest, names=names)


def _largest_of_each_currency(rows: list[stats_queries.Explained]) -> list[Quote]:
    """From rows ordered by amount, the first (largest) of each currency, up to QUOTES of them."""
    largest: dict[str | None, Quote] = {}
    for row in rows:
        quote = Quote(*row)
        if quote.currency not in largest and len(largest) < QUOTES:
            largest[quote.currency] = quote
    return list(largest.values())


def _rep_lines(groups: list[stats_queries.RepGroup], quality: list[stats_queries.QualityGroup]) -> list[RepLine]:
    qualities: dict[str | None, list[stats_queries.QualityGroup]] = {}
    for flagged in quality:
        qualities.setdefault(flagged.owner_slack_id, []).append(flagged)
    lost: dict[str | None, int] = {}
    not_asked: dict[str | None, int] = {}
    logged: dict[str | None, int] = {}
    by_reason: dict[str | None, dict[str, int]] = {}
    for group in groups:
        rep = group.owner_slack_id
        lost[rep] = lost.get(rep, 0) + group.deals
        if not group.asked:
            not_asked[rep] = not_asked.get(rep, 0) + group.deals
        if group.reason_code is not None:
            reasons = by_reason.setdefault(rep, {})
            reasons[group.reason_code] = reasons.get(group.reason_code, 0) + group.deals
            if group.asked:
                logged[rep] = logged.get(rep, 0) + group.deals
    lines = []
    for rep, count in lost.items():
        reasons = by_reason.get(rep, {})
        top = min(reasons, key=lambda code: (-reasons[code], code)) if reasons else None
        rep_quality = quality_of(qualities.get(rep, []))
        lines.append(RepLine(rep, count, logged.get(rep, 0), top, not_asked.get(rep, 0), rep_quality))
    return sorted(lines, key=lambda line: (-line.lost, line.user_id or ""))
