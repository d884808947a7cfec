"""Database rows turned into the plain data the views render (`bot.views.data`)."""

from bot.views.data import AwaitingDeal, DealFacts, LoggedReason, UpcomingRevisit
from storage.models import Deal, ReasonEntry
from storage.stats_queries import AwaitingLoss, OpenRevisit


def deal_facts(deal: Deal) -> DealFacts:
    return DealFacts(
        source=deal.source,
        name=deal.name,
        account=deal.account,
        amount=deal.amount,
        currency=deal.currency,
        owner_slack_id=deal.owner_slack_id,
        owner_email=deal.owner_email,
        stage=deal.stage,
        url=deal.url,
        crm_reason=deal.crm_reason,
    )


def logged_reason(entry: ReasonEntry) -> LoggedReason:
    return LoggedReason(
        reason_code=entry.reason_code,
        detail=entry.detail,
        explanation=entry.explanation,
        logged_by=entry.logged_by,
        logged_at=entry.logged_at,
        revisit_on=entry.revisit_on,
        recoded=entry.recoded,
    )


def awaiting_deals(rows: list[AwaitingLoss]) -> list[AwaitingDeal]:
    return [AwaitingDeal(*row) for row in rows]


def upcoming_revisits(rows: list[OpenRevisit]) -> list[UpcomingRevisit]:
    return [UpcomingRevisit(*row) for row in rows]
