"""The sweep: every SWEEP_EVERY, each CRM whose API credentials are set is asked for the deals changed
since its cursor, and what it reports takes the path the webhooks' events take (README.md, "The
sweep: what the webhooks missed").

The events go through the ingest queue, so a change that came by webhook and by sweep has one effect:
Pipedrive's have the webhook's idempotency key; HubSpot's and Salesforce's carry the deal's
modification time, never earlier than the change a webhook reports, so whichever comes second is
either a duplicate, an older event (kept in the audit trail, changing nothing), or the same stage
again, which opens no loss. A deal the CRM reports open again cancels its awaiting loss.

A sweep of one CRM runs in one process at a time: it is claimed in `sweep_cursor`, and the claim is
renewed after each page. The cursor moves after each page's events are committed, so a sweep cut
short (the CRM down, a long 429, the process stopping) loses nothing: the next one reads on from
there. Each listing starts OVERLAP before the cursor, because search indexes lag behind changes.
"""

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.api import CrmApiError, DealPage, ListDealChanges
from bot.crm.connectors import crm_name
from bot.crm.event import VIA_SWEEP, DealEvent
from bot.ingest import IngestFailed, Receipt
from storage import sweep_queries

logger = logging.getLogger(__name__)

OVERLAP = timedelta(minutes=5)
CLAIM_FOR = timedelta(minutes=5)
"""Renewed after each page; a page, 429 waits included, takes far less."""


@dataclass(frozen=True)
class SweepPolicy:
    every: timedelta
    """SWEEP_EVERY: how long from the start of one sweep of a CRM to the start of the next."""
    webhook_sources: frozenset[str]
    """The CRMs whose webhook is configured: a stage change their sweep finds first, the webhook missed."""


async def sweep_due_crms(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    crms: Mapping[str, ListDealChanges],
    record: Callable[[list[DealEvent]], Awaitable[Receipt]],
    policy: SweepPolicy,
    process_id: str,
    clock: Callable[[], datetime],
    stopping: Callable[[], bool],
) -> None:
    """Sweeps, side by side, each of `crms` (source to its listing) that is due and no other process
    holds. One that fails (the database down) is logged; the others go on."""
    outcomes = await asyncio.gather(
        *(
            sweep_crm(
                session_factory=session_factory,
                source=source,
                list_changes=list_changes,
                record=record,
                policy=policy,
                process_id=process_id,
                clock=clock,
                stopping=stopping,
            )
            for source, list_changes in crms.items()
        ),
        return_exceptions=True,
    )
    for source, outcome in zip(crms, outcomes, strict=True):
        if isinstance(outcome, Exception):
            logger.error("the %s sweep failed; a later round tries again", crm_name(source), exc_info=outcome)
        elif isinstance(outcome, BaseException):
            raise outcome


async def sweep_crm(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    source: str,
    list_changes: ListDealChanges,
    record: Callable[[list[DealEvent]], Awaitable[Receipt]],
    policy: SweepPolicy,
    process_id: str,
    clock: Callable[[], datetime],
    stopping: Callable[[], bool],
) -> bool:
    """Sweeps one CRM if its sweep is due and no other process holds it; returns whether it did.

    A failure of the CRM or of the database ends the sweep where it is, with a warning; the next
    sweep is due SWEEP_EVERY after this one began (or when a 429's Retry-After allows, if later).
    """
    started = clock()
    async with session_factory() as session, session.begin():
        cursor = await sweep_queries.claim_sweep(
            session, source=source, process_id=process_id, now=started, until=started + CLAIM_FOR
        )
    if cursor is None:
        return False
    name = crm_name(source)
    window_start = cursor - OVERLAP
    due_at = started + policy.every
    failure: str | None = None
    found = 0
    try:
        async for page in list_changes(window_start):
            stage_changes = await _record_page(session_factory, source, page, window_start, record)
            cursor = max(cursor, page.cursor)
            now = clock()
            missed = stage_changes if source in policy.webhook_sources else 0
            async with session_factory() as session, session.begin():
                held = await sweep_queries.advance_sweep(
                    session, source=source, process_id=process_id, cursor=cursor, until=now + CLAIM_FOR
                )
                if held and missed:
                    await sweep_queries.record_webhook_miss(session, source=source, found_at=now, stage_changes=missed)
            if not held:
                logger.warning("the %s sweep ran past its claim and another process took it over", name)
                return True
            found += missed
            if stopping():
                break
    except CrmApiError as error:
        failure = str(error)
        if error.retry_after is not None:
            due_at = max(due_at, clock() + timedelta(seconds=error.retry_after))
    except IngestFailed:
        failure = "the deals read could not be stored (see the log)"
    except Exception:
        logger.exception("the %s sweep failed unexpectedly", name)
        failure = "unexpected error (see the log)"
    if failure is not None:
        logger.warning(
            "the %s sweep stopped: %s; the next, due at %s, reads on from %s",
            name,
            failure,
            due_at.isoformat(),
            cursor.isoformat(),
        )
    async with session_factory() as session, session.begin():
        await sweep_queries.release_sweep(
            session, source=source, process_id=process_id, due_at=due_at, swept_at=clock(), last_error=failure
        )
    if found:
        logger.warning(
            "%s: %d stage change(s) reached us only through the sweep: is the %s webhook delivering?",
            name,
            found,
            name,
        )
    return True


async def next_sweep_at(
    session_factory: async_sessionmaker[AsyncSession], sources: list[str], now: datetime
) -> datetime | None:
    async with session_factory() as session, session.begin():
        return await sweep_queries.next_sweep_at(session, sources, now)


async def _record_page(
    session_factory: async_sessionmaker[AsyncSession],
    source: str,
    page: DealPage,
    window_start: datetime,
    record: Callable[[list[DealEvent]], Awaitable[Receipt]],
) -> int:
    """Records the page's events, as swept, through the ingest path; returns how many moved a deal
    to another stage. Deals closed before the window that the bot has never stored are history,
    which is `closedlost import`'s to bring in: no rep is asked about them."""
    history = {event.deal_id for event in page.events if event.closed_at is not None and event.closed_at < window_start}
    if history:
        async with session_factory() as session, session.begin():
            history -= await sweep_queries.stored_deal_ids(session, source, history)
        if history:
            logger.info("%d %s deal(s) closed before the sweep began, left to the import", len(history), source)
    events = [dataclasses.replace(event, via=VIA_SWEEP) for event in page.events if event.deal_id not in history]
    if not events:
        return 0
    receipt = await record(events)
    return receipt.stage_changes
