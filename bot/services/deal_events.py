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
    """
    accepted = duplicates = queued = 0
    async with session_factory() as session, session.begin():
        keyed = [(event.idempotency_key(received_at), event) for event in events]
        seen = await queries.existing_event_keys(session, (key for key, _ in keyed))
        sources = {event.source for event in events}
        deals: dict[tuple[str, str], Deal] = {}
        for source in sources:
            ids = (event.deal_id for event in events if event.source == source)
            for external_id, known in (await queries.deals_by_external_id(session, source, ids)).items():
                deals[(source, external_id)] = known

        for key, event in keyed:
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            accepted += 1
            changed_at = event.changed_at or received_at
            deal = deals.get((event.source, event.deal_id))
            applied = deal is None or changed_at >= deal.stage_changed_at
            if applied:
                deal, queued_now = await _apply(session, deal, event, changed_at, received_at)
                deals[(event.source, event.deal_id)] = deal
                queued += queued_now
            else:
                logger.info("older event for deal %s:%s kept in the audit trail only", event.source, event.deal_id)
            assert deal is not None
            session.add(
                DealEventRecord(
                    idempotency_key=key,
                    deal_id=deal.id,
                    stage=event.stage,
                    changed_at=changed_at,
                    received_at=received_at,
                    applied=applied,
                    payload=event.raw,
                )
            )
    return IngestResult(accepted=accepted, duplicates=duplicates, messages_queued=queued)


async def _apply(
    session: AsyncSession, deal: Deal | None, event: DealEvent, changed_at: datetime, now: datetime
) -> tuple[Deal, int]:
    """Brings the deal to the event's state and opens or cancels its loss. Returns how many Slack
    messages were queued."""
    previous_stage = deal.stage if deal is not None else None
    if deal is None:
        deal = Deal(
            source=event.source,
            external_id=event.deal_id,
            name=event.name,
            stage=event.stage,
            stage_changed_at=changed_at,
            created_at=now,
            updated_at=now,
        )
        session.add(deal)
    _update_fields(deal, event, changed_at, now)
    await session.flush()

    if event.stage == CLOSED_LOST and previous_stage != CLOSED_LOST:
        loss = Loss(deal_id=deal.id, lost_at=changed_at, state=LossState.AWAITING, created_at=now)
        session.add(loss)
        await session.flush()
        await outbox.queue_message(session, kind=outbox.PROMPT, loss_id=loss.id, now=now)
        return deal, 1
    if event.stage != CLOSED_LOST and previous_stage == CLOSED_LOST:
        current = await queries.latest_loss(session, deal.id, for_update=True)
        if current is not None and current.state == LossState.AWAITING:
            current.state = LossState.CANCELLED
            current.cancelled_at = now
            return deal, await outbox.queue_refresh(session, loss=current, now=now)
    return deal, 0


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
