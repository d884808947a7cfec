"""Figures about closed deals for a period: what `/closedlost stats`, App Home and the digest show.
Amounts are only ever added up within one currency (`bot.views.data.Amounts`)."""

from dataclasses import replace
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm import generic
from bot.crm.connectors import crm_name
from bot.crm.event import CLOSED_WON
from bot.periods import Period
from bot.reasons import Catalogue, ReasonGroup
from bot.views.data import Amounts, ClosedStats, Quality, ReasonFigures
from storage import stats_queries
from storage.models import LossState
from storage.stats_queries import ClosedGroup, QualityGroup


async def closed_stats(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    period: Period,
    owner_slack_id: str | None,
    catalogue: Catalogue,
) -> ClosedStats:
    async with session_factory() as session, session.begin():
        return await read_closed_stats(session, period=period, owner_slack_id=owner_slack_id, catalogue=catalogue)


async def read_closed_stats(
    session: AsyncSession, *, period: Period, owner_slack_id: str | None, catalogue: Catalogue
) -> ClosedStats:
    """`closed_stats` inside a transaction the caller holds, for services that read more with it."""
    groups = await stats_queries.closed_deal_groups(
        session, since=period.since, until=period.until, owner_slack_id=owner_slack_id, won_stage=CLOSED_WON
    )
    quality = await stats_queries.quality_groups(
        session, since=period.since, until=period.until, owner_slack_id=owner_slack_id
    )
    return replace(summarise(groups, catalogue), quality=quality_of(quality))


def quality_of(groups: list[QualityGroup]) -> Quality:
    """The quality figures of these groups together."""
    return Quality(confirmed=sum(group.confirmed for group in groups), recoded=sum(group.recoded for group in groups))


def summarise(groups: list[ClosedGroup], catalogue: Catalogue) -> ClosedStats:
    lost = won = logged = excluded = no_decision = 0
    lost_value: Amounts = {}
    won_value: Amounts = {}
    reason_deals: dict[str, int] = {}
    reason_value: dict[str, Amounts] = {}
    imported: dict[str, int] = {}
    for group in groups:
        currency = group.currency or ""
        if group.outcome == stats_queries.WON:
            won += group.deals
            _add(won_value, currency, group.amount)
            continue
        lost += group.deals
        _add(lost_value, currency, group.amount)
        if group.state == LossState.EXCLUDED:
            excluded += group.deals
        if group.reason_code is None:
            continue
        if group.imported_from is None:
            logged += group.deals
        else:
            imported[group.imported_from] = imported.get(group.imported_from, 0) + group.deals
        reason = catalogue.get(group.reason_code)
        if reason is not None and reason.group == ReasonGroup.NO_DECISION:
            no_decision += group.deals
        reason_deals[group.reason_code] = reason_deals.get(group.reason_code, 0) + group.deals
        _add(reason_value.setdefault(group.reason_code, {}), currency, group.amount)
    reasons = [ReasonFigures(code, deals, reason_value[code]) for code, deals in reason_deals.items()]
    reasons.sort(key=lambda figures: (-figures.deals, figures.code))
    origins = sorted(((imported_from(source), count) for source, count in imported.items()), key=lambda o: -o[1])
    return ClosedStats(lost, lost_value, logged, excluded, reasons, no_decision, won, won_value, origins)


def imported_from(source: str) -> str:
    """Where a deal source's imported reasons came from, as a sentence names it: a CRM, or for the
    generic source (no API to read), a CSV file."""
    return "a CSV file" if source == generic.SOURCE else crm_name(source)


def _add(amounts: Amounts, currency: str, amount: Decimal | None) -> None:
    if amount is not None:
        amounts[currency] = amounts.get(currency, Decimal(0)) + amount
