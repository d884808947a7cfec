"""Figures about closed deals for a period: what `/closedlost stats`, App Home and the digest show.

Amounts are only ever added up within one currency: `Amounts` maps a currency code to a total
("" for deals the CRM sent without a currency).
"""

from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.event import CLOSED_WON
from bot.periods import Period
from bot.reasons import Catalogue, ReasonGroup
from storage import stats
from storage.models import LossState
from storage.stats import ClosedGroup

Amounts = dict[str, Decimal]


@dataclass(frozen=True)
class ReasonFigures:
    code: str
    deals: int
    value: Amounts


@dataclass(frozen=True)
class ClosedStats:
    lost: int = 0
    lost_value: Amounts = field(default_factory=dict)
    logged: int = 0
    """Losses with a reason."""
    excluded: int = 0
    """Losses counted, but for which no reason is asked (PROMPT_MIN_AMOUNT, an excluded deal)."""
    reasons: list[ReasonFigures] = field(default_factory=list)
    """Most deals first, then by code."""
    no_decision: int = 0
    """Losses whose reason is in the no-decision group: not real losses."""
    won: int = 0
    won_value: Amounts = field(default_factory=dict)

    @property
    def needing_reason(self) -> int:
        return self.lost - self.excluded

    @property
    def logged_share(self) -> float | None:
        """Of the losses a reason is asked for."""
        return self.logged / self.needing_reason if self.needing_reason else None

    @property
    def no_decision_share(self) -> float | None:
        """Of the losses with a reason: those without one cannot be told apart yet."""
        return self.no_decision / self.logged if self.logged else None

    @property
    def win_rate(self) -> float | None:
        closed = self.won + self.lost
        return self.won / closed if closed else None

    @property
    def win_rate_by_value(self) -> dict[str, float]:
        """Per currency: won value over won and lost value, where any value closed."""
        rates = {}
        for currency in sorted(self.won_value.keys() | self.lost_value.keys()):
            won = self.won_value.get(currency, Decimal(0))
            closed = won + self.lost_value.get(currency, Decimal(0))
            if closed:
                rates[currency] = float(won / closed)
        return rates


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
    groups = await stats.closed_deal_groups(
        session, since=period.since, until=period.until, owner_slack_id=owner_slack_id, won_stage=CLOSED_WON
    )
    return summarise(groups, catalogue)


def summarise(groups: list[ClosedGroup], catalogue: Catalogue) -> ClosedStats:
    lost = won = logged = excluded = no_decision = 0
    lost_value: Amounts = {}
    won_value: Amounts = {}
    reason_deals: dict[str, int] = {}
    reason_value: dict[str, Amounts] = {}
    for group in groups:
        currency = group.currency or ""
        if group.outcome == stats.WON:
            won += group.deals
            _add(won_value, currency, group.amount)
            continue
        lost += group.deals
        _add(lost_value, currency, group.amount)
        if group.state == LossState.EXCLUDED:
            excluded += group.deals
        if group.reason_code is None:
            continue
        logged += group.deals
        reason = catalogue.get(group.reason_code)
        if reason is not None and reason.group == ReasonGroup.NO_DECISION:
            no_decision += group.deals
        reason_deals[group.reason_code] = reason_deals.get(group.reason_code, 0) + group.deals
        _add(reason_value.setdefault(group.reason_code, {}), currency, group.amount)
    reasons = [ReasonFigures(code, deals, reason_value[code]) for code, deals in reason_deals.items()]
    reasons.sort(key=lambda figures: (-figures.deals, figures.code))
    return ClosedStats(lost, lost_value, logged, excluded, reasons, no_decision, won, won_value)


def _add(amounts: Amounts, currency: str, amount: Decimal | None) -> None:
    if amount is not None:
        amounts[currency] = amounts.get(currency, Decimal(0)) + amount
