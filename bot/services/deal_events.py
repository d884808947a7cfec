"""Recording deal stage changes: the audit trail, the deal as last reported, and its losses."""

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.event import CLOSED_LOST, DealEvent
from bot.services import outbox
from storage import queries
from storage.models import Deal, DealEventRecord, Loss, LossState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    messages_queued: int


async def record_deal_events(
    *, session_factory: async_sessionmaker[AsyncSession], events: list[DealEvent], received_at: datetime
) -> IngestResult:
    """Stores a batch of events in one transaction, in the order given.

    An event already seen (same idempotency key) has no effect. An event older than what is recorded
    for its deal joins the audit trail but changes nothing, so deliveries out of order are safe.
    New rows are linked by relationship and written in one flush at commit, so a batch of 100
    costs a handful of statements, not hundreds.
    """
    accepted = duplicates = queued = 0
    async with session_factory() as session, session.begin():
        keyed = [(event.idempotency_key(received_at), event) for event in events]
        seen = await queries.existing_event_keys(session, (key for key, _ in keyed))
        deals = await _known_deals(session, events)
        awaiting = await queries.awaiting_losses(session, [deal.id for deal in deals.values()])
        awaiting_by_deal = {key: awaiting[deal.id] for key, deal in deals.items() if deal.id in awaiting}

        for key, event in keyed:
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            accepted += 1
            deal_key = (event.source, event.deal_id)
            changed_at = event.changed_at or received_at
            deal = deals.get(deal_key)
            applied = deal is None or changed_at >= deal.stage_changed_at
            if not applied:
                logger.info("older event for deal %s:%s kept in the audit trail only", *deal_key)
            else:
                previous_stage = deal.stage if deal is not None else None
                if deal is None:
                    deal = Deal(source=event.source, external_id=event.deal_id, created_at=received_at)
                    session.add(deal)
                    deals[deal_key] = deal
                _update_fields(deal, event, changed_at, received_at)
                if event.stage == CLOSED_LOST and previous_stage != CLOSED_LOST:
                    loss = Loss(deal=deal, lost_at=changed_at, state=LossState.AWAITING, created_at=received_at)
                    session.add(loss)
                    awaiting_by_deal[deal_key] = loss
                    outbox.queue_message(session, kind=outbox.PROMPT, loss=loss, now=received_at)
                    queued += 1
                elif event.stage != CLOSED_LOST and previous_stage == CLOSED_LOST:
                    queued += await _cancel(session, awaiting_by_deal.get(deal_key), received_at)
            assert deal is not None
            session.add(
                DealEventRecord(
                    idempotency_key=key,
                    deal=deal,
                    stage=event.stage,
                    changed_at=changed_at,
                    received_at=received_at,
                    applied=applied,
                    payload=event.raw,
                )
            )
    return IngestResult(accepted=accepted, duplicates=duplicates, messages_queued=queued)


async def _known_deals(session: AsyncSession, events: list[DealEvent]) -> dict[tuple[str, str], Deal]:
    deals: dict[tuple[str, str], Deal] = {}
    for source in {event.source for event in events}:
        ids = (event.deal_id for event in events if event.source == source)
        for external_id, deal in (await queries.deals_by_external_id(session, source, ids)).items():
            deals[(source, external_id)] = deal
    return deals


async def _cancel(session: AsyncSession, loss: Loss | None, now: datetime) -> int:
    """A deal left closed-lost: its awaiting loss needs no reason. Returns the messages queued."""
    if loss is None or loss.state != LossState.AWAITING:
        return 0
    loss.state = LossState.CANCELLED
    loss.cancelled_at = now
    if loss.id is None:
        return 0  # Opened in this same batch: its prompt, not sent yet, will see it is cancelled.
    return await outbox.queue_refresh(session, loss=loss, now=now)


def _update_fields(deal: Deal, event: DealEvent, changed_at: datetime, now: datetime) -> None:
    deal.name = event.name
    deal.stage = event.stage
    deal.stage_changed_at = changed_at
    deal.updated_at = now
    for field in ("account", "amount", "currency", "url"):
        value = getattr(event, field)
        if value is not None:
            setattr(deal, field, value)
    if event.owner_slack_id is not None:
        deal.owner_slack_id = event.owner_slack_id
    if event.owner_email is not None and event.owner_email != deal.owner_email:
        deal.owner_email = event.owner_email
        if event.owner_slack_id is None:
            deal.owner_slack_id = None
