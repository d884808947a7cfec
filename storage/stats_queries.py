"""Read-only aggregates for `/closedlost`, App Home and the digest. They never commit.

A loss's answer is its reason entry of the highest revision; earlier revisions are history. A
cancelled loss (the deal reopened before a reason was due) is no loss at all and is never counted.
"""

from collections.abc import Collection, Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Result,
    Select,
    String,
    case,
    func,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage.loss_queries import is_current_entry
from storage.models import (
    FLAGGED_ENTRIES,
    ClosedSummary,
    ClosedSummaryChange,
    Deal,
    Loss,
    LossState,
    ReasonEntry,
    ReasonSource,
    Revisit,
    RevisitState,
)
from storage.revisit_queries import OPEN_STATES

LOST = "lost"
WON = "won"


class ClosedGroup(NamedTuple):
    outcome: str
    """LOST or WON."""
    state: str | None
    """The state of these losses; None for wins."""
    reason_code: str | None
    """The current reason of these losses; None for losses awaiting one, and for wins."""
    imported_from: str | None
    """For a reason the CRM's history gave (`closedlost import`), the deals' source; None for a
    rep's reason, a loss without one, and wins."""
    currency: str | None
    deals: int
    amount: Decimal | None
    """The sum of the deals' amounts in `currency`; None when none of them has an amount."""


GROUP_KEYS = ClosedGroup._fields[:-2]
"""What closed deals are grouped by; `outcome` first."""


async def closed_deal_groups(
    session: AsyncSession,
    *,
    since: datetime | None,
    until: datetime,
    owner_slack_id: str | None,
    won_stage: str,
) -> list[ClosedGroup]:
    """Losses with `lost_at` in [since, until), by state, current reason and currency, and deals whose stage
    became `won_stage` in that period, by currency; a key may come in several rows, to be added up.
    `since` None means from the beginning; `owner_slack_id` narrows both to one rep's deals.

    For the whole team, the calendar months (UTC) wholly inside the period are read from their
    summary (`ClosedSummary`), except those changed since it was computed; the rest of the period
    from the deals. All in one statement, which also counts the months marked changed since the
    first statement read which ones were: when there are any, this is done again, so that the
    figures are those of one snapshot (README.md, "For developers", on the summary)."""
    if owner_slack_id is None:
        whole = _whole_months(since, until)
        if whole is not None:
            for _ in range(SUMMARY_READS):
                groups = await _groups_by_month(session, since, until, whole, won_stage)
                if groups is not None:
                    return groups
    return await _groups(session, raw_closed_groups(since, until, owner_slack_id, won_stage))


SUMMARY_READS = 3
"""Reads through the summary before the whole period is read from the deals: each is done again only
when another transaction changed a summarised month between its two statements."""
_CHANGED = "changed"


async def _groups_by_month(
    session: AsyncSession, since: datetime | None, until: datetime, whole: tuple[date | None, date], won_stage: str
) -> list[ClosedGroup] | None:
    """`closed_deal_groups` for the team through the summary of the months in `whole` ([first,
    end), first None from the beginning); None when a month read from its summary was marked
    changed meanwhile."""
    first, end = whole
    changed = list(await session.scalars(select(ClosedSummaryChange.month).distinct().where(*_within(first, end))))
    ranges = [(month_start(month), month_start(next_month(month))) for month in changed]
    ranges.append((month_start(end), until))
    if since is not None and first is not None:
        ranges.append((since, month_start(first)))
    summary = ClosedSummary
    # A column per ClosedGroup field, of the same name: a field added to the groups is a column added
    # to the summary (and a migration), nothing more here.
    keys = [getattr(summary, name) for name in GROUP_KEYS]
    summarised = (
        select(*keys, func.sum(summary.deals), func.sum(summary.amount))
        .where(summary.month.not_in(changed), *_within(first, end, summary.month))
        .group_by(*keys)
    )
    blanks = [null()] * (len(GROUP_KEYS) - 1)
    newly_changed = select(literal(_CHANGED, String), *blanks, func.count(), null()).where(
        ClosedSummaryChange.month.not_in(changed), *_within(first, end)
    )
    raw = [part for start, stop in _merged(ranges) for part in raw_closed_groups(start, stop, None, won_stage)]
    groups = await _groups(session, [summarised, newly_changed, *raw])
    if any(group.outcome == _CHANGED and group.deals for group in groups):
        return None
    return [group for group in groups if group.outcome != _CHANGED]


def _within(first: date | None, end: date, month: Any = ClosedSummaryChange.month) -> list[ColumnElement[bool]]:
    return [month < end] if first is None else [month >= first, month < end]


def _whole_months(since: datetime | None, until: datetime) -> tuple[date | None, date] | None:
    """The calendar months (UTC) wholly inside [since, until), as (first, end): first None from the
    beginning; None when there is none."""
    end = until.astimezone(UTC).date().replace(day=1)
    if since is None:
        return None, end
    start = since.astimezone(UTC)
    first = start.date().replace(day=1)
    if start != month_start(first):
        first = next_month(first)
    return (first, end) if first < end else None


def month_start(month: date) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _merged(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The ranges joined where they touch or overlap, empty ones left out."""
    merged: list[tuple[datetime, datetime]] = []
    for start, stop in sorted(ranges):
        if start >= stop:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(stop, merged[-1][1]))
        else:
            merged.append((start, stop))
    return merged


async def _groups(session: AsyncSession, parts: list[Select[*tuple[Any, ...]]]) -> list[ClosedGroup]:
    rows: Result[Any] = await session.execute(union_all(*parts))
    return [ClosedGroup._make(row) for row in rows]


def raw_closed_groups(
    since: datetime | None, until: datetime, owner_slack_id: str | None, won_stage: str
) -> list[Select[*tuple[Any, ...]]]:
    """`closed_deal_groups` read from the deals, losses and reason entries themselves: the losses'
    statement and the wins', to be joined with UNION ALL."""
    imported_from = case((ReasonEntry.source == ReasonSource.CRM, Deal.source))
    lost = (
        select(
            literal(LOST, String).label("outcome"),
            Loss.state,
            ReasonEntry.reason_code,
            imported_from,
            Deal.currency,
            func.count().label("deals"),
            func.sum(Deal.amount).label("amount"),
        )
        .select_from(Loss)
        .join(Deal, Deal.id == Loss.deal_id)
        .outerjoin(ReasonEntry, ReasonEntry.loss_id == Loss.id)
        .where(Loss.state != LossState.CANCELLED, Loss.lost_at < until, is_current_entry())
        .group_by(Loss.state, ReasonEntry.reason_code, imported_from, Deal.currency)
    )
    won = (
        select(
            literal(WON, String),
            literal(None, String),
            literal(None, String),
            literal(None, String),
            Deal.currency,
            func.count(),
            func.sum(Deal.amount),
        )
        .where(Deal.stage == won_stage, Deal.stage_changed_at < until)
        .group_by(Deal.currency)
    )
    if since is not None:
        lost = lost.where(Loss.lost_at >= since)
        won = won.where(Deal.stage_changed_at >= since)
    if owner_slack_id is not None:
        lost = lost.where(Deal.owner_slack_id == owner_slack_id)
        won = won.where(Deal.owner_slack_id == owner_slack_id)
    return [lost, won]


class AwaitingLoss(NamedTuple):
    loss_id: int
    deal_name: str
    account: str | None
    amount: Decimal | None
    currency: str | None
    lost_at: datetime


async def awaiting_losses(session: AsyncSession, *, owner_slack_id: str, limit: int) -> tuple[list[AwaitingLoss], int]:
    """The rep's losses still awaiting a reason, the biggest first (then the newest; deals without an
    amount last), at most `limit`; and how many there are.

    One statement. The rep's awaiting losses are found first, in full, from two indexes (the rep's
    deals, and the losses awaiting a reason by deal); only then are they sorted and cut. The CTE is
    MATERIALIZED so that the planner cannot fold it back into one ordered, limited join: for that,
    PostgreSQL walks the index of all losses newest first, expecting the rep's among them soon, and
    on a large team reads most of it."""
    mine = (
        select(Loss.id, Loss.deal_id, Loss.lost_at)
        .join(Deal, Deal.id == Loss.deal_id)
        .where(Deal.owner_slack_id == owner_slack_id, Loss.state == LossState.AWAITING)
        .cte("mine")
        .prefix_with("MATERIALIZED")
    )
    total = select(func.count()).select_from(mine).scalar_subquery()
    rows = (
        await session.execute(
            select(mine.c.id, Deal.name, Deal.account, Deal.amount, Deal.currency, mine.c.lost_at, total)
            .join(Deal, Deal.id == mine.c.deal_id)
            .order_by(Deal.amount.desc().nulls_last(), mine.c.lost_at.desc(), mine.c.id.desc())
            .limit(limit)
        )
    ).all()
    return [AwaitingLoss(*row[:-1]) for row in rows], rows[0][-1] if rows else 0


class OpenRevisit(NamedTuple):
    loss_id: int
    revisit_on: date
    deal_name: str
    amount: Decimal | None
    currency: str | None
    owner_slack_id: str | None
    reason_code: str


async def upcoming_revisits(
    session: AsyncSession, *, start: date, end: date | None, owner_slack_id: str | None, limit: int
) -> tuple[list[OpenRevisit], int]:
    """Open revisits (due, or snoozed to a later date) due in [start, end), soonest first, with their
    loss's current reason, at most `limit`; and how many there are. `end` None: no end;
    `owner_slack_id` narrows to one rep's deals."""
    query = (
        select(
            Loss.id,
            Revisit.due_on,
            Deal.name,
            Deal.amount,
            Deal.currency,
            Deal.owner_slack_id,
            ReasonEntry.reason_code,
        )
        .select_from(Revisit)
        .join(Loss, Loss.id == Revisit.loss_id)
        .join(Deal, Deal.id == Loss.deal_id)
        .join(ReasonEntry, ReasonEntry.loss_id == Loss.id)
        .where(
            Revisit.state.in_(OPEN_STATES),
            Revisit.due_on >= start,
            is_current_entry(),
        )
    )
    if end is not None:
        query = query.where(Revisit.due_on < end)
    if owner_slack_id is not None:
        query = query.where(Deal.owner_slack_id == owner_slack_id)
    rows, total = await _first_rows_and_count(session, query.order_by(Revisit.due_on, Loss.id), limit)
    return [OpenRevisit._make(row) for row in rows], total


async def _first_rows_and_count(
    session: AsyncSession, query: Select[*tuple[Any, ...]], limit: int
) -> tuple[list[tuple[Any, ...]], int]:
    """The first `limit` rows of an ordered query, and how many rows it has in all, in one statement:
    the count is a window over every row, taken before the limit applies."""
    rows = (await session.execute(query.add_columns(func.count().over()).limit(limit))).all()
    return [tuple(row[:-1]) for row in rows], rows[0][-1] if rows else 0


def _current_answers(since: datetime, until: datetime) -> Select[tuple[()]]:
    """Losses with a reason (logged, or imported with the CRM's) and `lost_at` in [since, until),
    joined to their deal and current reason."""
    return (
        select()
        .select_from(Loss)
        .join(Deal, Deal.id == Loss.deal_id)
        .join(ReasonEntry, ReasonEntry.loss_id == Loss.id)
        .where(Loss.state != LossState.CANCELLED, Loss.lost_at >= since, Loss.lost_at < until, is_current_entry())
    )


async def detail_counts(
    session: AsyncSession, *, since: datetime, until: datetime, reason_code: str
) -> list[tuple[str, int]]:
    """What reps named for this reason (competitors, features) on losses in the period, most named
    first: the spellings of one name (one `detail_key`) count as one, shown in the most used one."""
    rows: Result[Any] = await session.execute(
        _current_answers(since, until)
        .add_columns(ReasonEntry.detail_key, func.trim(ReasonEntry.detail), func.count())
        .where(ReasonEntry.reason_code == reason_code, ReasonEntry.detail_key.is_not(None))
        .group_by(ReasonEntry.detail_key, func.trim(ReasonEntry.detail))
    )
    return [(name.spelling, name.times) for name in _by_key(rows)]


class NamedDetail(NamedTuple):
    key: str
    spelling: str
    """The most used spelling of the name; of two used as often, the first in alphabetical order."""
    times: int
    """How many answers name it, in all its spellings."""


async def named_details(session: AsyncSession, *, reason_codes: Collection[str]) -> list[NamedDetail]:
    """Every name stored as the current answer's detail for these reasons, one per key, most named
    first."""
    rows: Result[Any] = await session.execute(
        select(ReasonEntry.detail_key, func.trim(ReasonEntry.detail), func.count())
        .select_from(Loss)
        .join(ReasonEntry, ReasonEntry.loss_id == Loss.id)
        .where(
            Loss.state != LossState.CANCELLED,
            ReasonEntry.reason_code.in_(reason_codes),
            ReasonEntry.detail_key.is_not(None),
            is_current_entry(),
        )
        .group_by(ReasonEntry.detail_key, func.trim(ReasonEntry.detail))
    )
    return _by_key(rows)


def _by_key(rows: Iterable[Any]) -> list[NamedDetail]:
    """Folds (key, spelling, count) rows into one per key. Done here rather than in SQL: portable SQL
    has no "value of the largest group", and a team names a few hundred competitors at most."""
    spellings: dict[str, list[tuple[int, str]]] = {}
    for key, spelling, times in rows:
        spellings.setdefault(key, []).append((times, spelling))
    named = [
        NamedDetail(key, min(found, key=lambda pair: (-pair[0], pair[1]))[1], sum(times for times, _ in found))
        for key, found in spellings.items()
    ]
    return sorted(named, key=lambda name: (-name.times, name.spelling.casefold(), name.key))


async def bulk_answers(session: AsyncSession, *, since: datetime, until: datetime) -> int:
    """Logged losses in the period whose current answer is a bulk clean-up's one click."""
    count = await session.scalar(
        _current_answers(since, until).add_columns(func.count()).where(ReasonEntry.bulk.is_(True))
    )
    return count or 0


class QualityGroup(NamedTuple):
    owner_slack_id: str | None
    confirmed: int
    """Losses whose rep kept their pick over the modal's suggestion, in any revision."""
    recoded: int
    """Losses a manager re-coded, in any revision: the loss counts under its current reason."""


async def quality_groups(
    session: AsyncSession, *, since: datetime | None, until: datetime, owner_slack_id: str | None
) -> list[QualityGroup]:
    """Losses with `lost_at` in [since, until) (`since` None: from the beginning) confirmed over a
    suggestion or re-coded, by owner; `owner_slack_id` narrows to one rep. Read from the flagged
    entries alone (ix_reason_entry_flagged): they are few, however many losses the period has."""
    confirmed = case((ReasonEntry.confirmed_over.is_not(None), ReasonEntry.loss_id))
    recoded = case((ReasonEntry.recoded, ReasonEntry.loss_id))
    query = (
        select(Deal.owner_slack_id, func.count(confirmed.distinct()), func.count(recoded.distinct()))
        .select_from(ReasonEntry)
        .join(Loss, Loss.id == ReasonEntry.loss_id)
        .join(Deal, Deal.id == Loss.deal_id)
        .where(
            text(f"({FLAGGED_ENTRIES})"),
            Loss.state != LossState.CANCELLED,
            Loss.lost_at < until,
        )
        .group_by(Deal.owner_slack_id)
    )
    if since is not None:
        query = query.where(Loss.lost_at >= since)
    if owner_slack_id is not None:
        query = query.where(Deal.owner_slack_id == owner_slack_id)
    return [QualityGroup._make(row) for row in await session.execute(query)]


class RepGroup(NamedTuple):
    owner_slack_id: str | None
    reason_code: str | None
    """None for the rep's losses awaiting a reason."""
    asked: bool
    """False for losses no reason is asked for (excluded: below PROMPT_MIN_AMOUNT, imported history)."""
    deals: int


async def rep_groups(session: AsyncSession, *, since: datetime, until: datetime) -> list[RepGroup]:
    """Losses with `lost_at` in [since, until) by owner, current reason and whether it was asked for."""
    asked = Loss.state != LossState.EXCLUDED
    rows = await session.execute(
        select(Deal.owner_slack_id, ReasonEntry.reason_code, asked, func.count())
        .select_from(Loss)
        .join(Deal, Deal.id == Loss.deal_id)
        .outerjoin(ReasonEntry, ReasonEntry.loss_id == Loss.id)
        .where(Loss.state != LossState.CANCELLED, Loss.lost_at >= since, Loss.lost_at < until, is_current_entry())
        .group_by(Deal.owner_slack_id, ReasonEntry.reason_code, asked)
    )
    return [RepGroup._make(row) for row in rows]


async def reason_delays(session: AsyncSession, *, since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    """For each logged loss lost in the period: when the rep was asked (the prompt, or the loss when
    none was sent) and when the first reason was logged."""
    rows = await session.execute(
        select(func.coalesce(Loss.prompted_at, Loss.lost_at), Loss.logged_at).where(
            Loss.state == LossState.LOGGED, Loss.lost_at >= since, Loss.lost_at < until
        )
    )
    return [(asked, logged) for asked, logged in rows if logged is not None]


async def overdue_by_rep(session: AsyncSession, *, now: datetime) -> list[tuple[str | None, int]]:
    """Reps with losses still awaiting a reason that are overdue as of `now`, most first: past their
    escalation time (ESCALATE_AFTER of working time after the prompt), or whose prompt could not be
    delivered, so that the rep was never asked (`delivery_error`)."""
    rows = await session.execute(
        select(Deal.owner_slack_id, func.count())
        .select_from(Loss)
        .join(Deal, Deal.id == Loss.deal_id)
        .where(
            Loss.state == LossState.AWAITING,
            or_(Loss.escalation_due_at <= now, Loss.delivery_error.is_not(None)),
        )
        .group_by(Deal.owner_slack_id)
        .order_by(func.count().desc(), Deal.owner_slack_id)
    )
    return [(owner, count) for owner, count in rows]


class WinBack(NamedTuple):
    deal_name: str
    amount: Decimal | None
    currency: str | None
    owner_slack_id: str | None
    closed_at: datetime


async def win_backs(
    session: AsyncSession, *, since: datetime, until: datetime, limit: int
) -> tuple[list[WinBack], int]:
    """Revisited deals that came back (revisit state `reopened`) with `closed_at` in [since, until),
    in the order they came back, at most `limit`; and how many there are."""
    query = (
        select(Deal.name, Deal.amount, Deal.currency, Deal.owner_slack_id, Revisit.closed_at)
        .select_from(Revisit)
        .join(Loss, Loss.id == Revisit.loss_id)
        .join(Deal, Deal.id == Loss.deal_id)
        .where(
            Revisit.state == RevisitState.REOPENED,
            Revisit.closed_at >= since,
            Revisit.closed_at < until,
        )
    )
    rows, total = await _first_rows_and_count(session, query.order_by(Revisit.closed_at, Revisit.id), limit)
    return [WinBack._make(row) for row in rows], total


class Explained(NamedTuple):
    deal_name: str
    amount: Decimal
    currency: str | None
    logged_by: str
    reason_code: str
    explanation: str
    rep_of_recode: str | None
    """The deal's owner when the reason was re-coded by a manager; None otherwise."""


async def largest_explained(
    session: AsyncSession, *, since: datetime, until: datetime, limit: int, currency: str, in_currency: bool
) -> list[Explained]:
    """The largest logged losses of the period with their current explanation, as a rep gave it (not
    an imported one, which no one in Slack wrote): those in `currency`
    (`in_currency`), or those in any other currency or none. Amounts are compared as recorded:
    without exchange rates, 1,000 EUR and 1,000 JPY rank the same, so only one currency's rank means much."""
    same = Deal.currency == currency
    rows = await session.execute(
        _current_answers(since, until)
        .add_columns(
            Deal.name,
            Deal.amount,
            Deal.currency,
            ReasonEntry.logged_by,
            ReasonEntry.reason_code,
            ReasonEntry.explanation,
            case((ReasonEntry.recoded, Deal.owner_slack_id)),
        )
        .where(Deal.amount.is_not(None), ReasonEntry.source == ReasonSource.REP)
        .where(same if in_currency else or_(~same, Deal.currency.is_(None)))
        .order_by(Deal.amount.desc(), Loss.id)
        .limit(limit)
    )
    return [Explained._make(row) for row in rows]
