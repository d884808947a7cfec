"""Work against a CRM's API that must not be lost: fetching the deal a webhook only names, and
writing a logged reason back to the deal.

A job is a row written before the work is done (a webhook's event in the transaction that answers
the CRM, a write-back in the transaction that stores the reason), claimed in the database by one
process, retried with backoff while the CRM is down or rate-limiting us, and marked failed with the
reason when retrying cannot help. Modelled on the outbox (`bot.services.outbox`): only the process
that still holds a job's claim records its outcome.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.api import Connector, CrmApiError, WriteBack
from bot.crm.event import DealEvent
from bot.ingest import IngestFailed
from bot.logs import log_ids
from bot.reasons import Catalogue
from bot.services.outbox import backoff
from storage import crm_job_queries, loss_queries
from storage.claims import ClaimLost
from storage.models import CrmJob, CrmJobKind, CrmJobState

logger = logging.getLogger(__name__)

CLAIM_FOR = timedelta(minutes=10)
CLAIM_MARGIN = timedelta(minutes=5)
# With `backoff` this keeps trying for about a day, as HubSpot and Salesforce do with their webhooks.
MAX_ATTEMPTS = 56
BATCH_SIZE = 20


@dataclass(frozen=True)
class PendingEvent:
    """A webhook event whose deal is still to be fetched."""

    key: str
    """Unique for the CRM: the same event delivered again has the same key."""
    payload: dict[str, Any]


async def queue_fetches(
    *, session_factory: async_sessionmaker[AsyncSession], source: str, events: list[PendingEvent], now: datetime
) -> int:
    """Stores the events not seen before, each as a job to fetch its deal; returns how many were new."""
    unique = {f"{source}:{event.key}": event.payload for event in events}
    if not unique:
        return 0
    rows = [
        {
            "kind": CrmJobKind.FETCH,
            "source": source,
            "event_key": key,
            "payload": payload,
            "loss_id": None,
            "state": CrmJobState.PENDING,
            "due_at": now,
            "attempts": 0,
            "created_at": now,
        }
        for key, payload in unique.items()
    ]
    async with session_factory() as session, session.begin():
        return await crm_job_queries.insert_new_crm_jobs(session, rows)


async def queue_write_back(session: AsyncSession, *, loss_id: int, source: str, now: datetime) -> None:
    """Queues writing the loss's reason to its CRM, unless a write not yet picked up is waiting (it
    reads the newest reason when it runs). Called inside the transaction that stores the reason."""
    if not await crm_job_queries.has_waiting_write_back(session, loss_id):
        session.add(
            CrmJob(
                kind=CrmJobKind.WRITE_BACK,
                source=source,
                loss_id=loss_id,
                state=CrmJobState.PENDING,
                due_at=now,
                attempts=0,
                created_at=now,
            )
        )


async def run_due_jobs(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    connectors: Mapping[str, Connector],
    catalogue: Catalogue,
    clock: Callable[[], datetime],
    record: Callable[[list[DealEvent]], Awaitable[object]],
    process_id: str,
) -> int:
    """Runs every due job no other process holds, claimed for `process_id`; returns how many were
    handled. A fetched deal is recorded with `record` (the ingest queue's `submit`, the path every
    webhook's events take). A batch whose claim nears its end hands the rest back, as the outbox
    does."""
    handled = 0
    while True:
        claimed_at = clock()
        until = claimed_at + CLAIM_FOR
        async with session_factory() as session, session.begin():
            claimed = await crm_job_queries.claim_due_crm_jobs(
                session, now=claimed_at, process_id=process_id, until=until, limit=BATCH_SIZE
            )
        if not claimed:
            return handled
        for position, job in enumerate(claimed):
            now = clock()
            if now >= until - CLAIM_MARGIN:
                async with session_factory() as session, session.begin():
                    await crm_job_queries.release_crm_jobs(session, claimed[position:])
                return handled
            try:
                await _run_and_record(job, session_factory, connectors, catalogue, record, now)
            except ClaimLost:
                logger.warning(
                    "the %s job %s for %s was taken over by another process while this one ran it (this"
                    " process's claim ran out): its outcome here is not recorded",
                    job.kind,
                    job.id,
                    job.source,
                    extra=_about(job),
                )
            handled += 1


async def _run_and_record(
    job: crm_job_queries.ClaimedCrmJob,
    session_factory: async_sessionmaker[AsyncSession],
    connectors: Mapping[str, Connector],
    catalogue: Catalogue,
    record: Callable[[list[DealEvent]], Awaitable[object]],
    now: datetime,
) -> None:
    """Runs the job and records how it went; ClaimLost when this process no longer holds it."""
    try:
        await _run(job, session_factory, connectors, catalogue, record)
    except CrmApiError as error:
        if error.permanent:
            await _record_failure(session_factory, job, str(error))
        else:
            await _retry_later(session_factory, job, str(error), now, error.retry_after)
    except IngestFailed:
        await _retry_later(session_factory, job, "the fetched deal could not be stored (see the log)", now, None)
    except Exception:
        logger.exception(
            "unexpected error in the %s job %s for %s; it will be retried",
            job.kind,
            job.id,
            job.source,
            extra=_about(job),
        )
        await _retry_later(session_factory, job, "unexpected error (see the log)", now, None)
    else:
        async with session_factory() as session, session.begin():
            done = await crm_job_queries.held_crm_job(session, job)
            done.state, done.done_at, done.attempts = CrmJobState.DONE, now, done.attempts + 1


async def next_due_at(session_factory: async_sessionmaker[AsyncSession], now: datetime) -> datetime | None:
    async with session_factory() as session, session.begin():
        return await crm_job_queries.next_crm_job_due_at(session, now)


async def _run(
    job: crm_job_queries.ClaimedCrmJob,
    session_factory: async_sessionmaker[AsyncSession],
    connectors: Mapping[str, Connector],
    catalogue: Catalogue,
    record: Callable[[list[DealEvent]], Awaitable[object]],
) -> None:
    connector = connectors.get(job.source)
    if job.kind == CrmJobKind.FETCH:
        if connector is None or connector.fetch is None or job.payload is None:
            raise CrmApiError(f"{job.source} is not configured: its deals cannot be fetched")
        # Recorded under the event's own idempotency key: a job run twice records it once.
        await record([await connector.fetch(job.payload)])
        return
    if connector is None or connector.write_back is None or job.loss_id is None:
        raise CrmApiError(f"write-back to {job.source} is not configured")
    reason = await _reason_to_write(session_factory, job.loss_id, catalogue)
    if reason is not None:
        await connector.write_back(reason)


async def _reason_to_write(
    session_factory: async_sessionmaker[AsyncSession], loss_id: int, catalogue: Catalogue
) -> WriteBack | None:
    """The loss's newest reason, read when the job runs so that a late write is never stale."""
    async with session_factory() as session, session.begin():
        found = await loss_queries.loss_with_deal(session, loss_id)
        entry = await loss_queries.latest_entry(session, loss_id)
    if found is None or entry is None:
        return None
    reason = catalogue.label(entry.reason_code)
    return WriteBack(
        deal_id=found[1].external_id,
        reason=f"{reason}: {entry.detail}" if entry.detail else reason,
        explanation=entry.explanation,
    )


async def _record_failure(
    session_factory: async_sessionmaker[AsyncSession], claimed: crm_job_queries.ClaimedCrmJob, reason: str
) -> None:
    async with session_factory() as session, session.begin():
        job = await crm_job_queries.held_crm_job(session, claimed)
        job.state, job.attempts, job.last_error = CrmJobState.FAILED, job.attempts + 1, reason
    logger.warning(
        "the %s job %s for %s failed and will not be retried: %s",
        claimed.kind,
        claimed.id,
        claimed.source,
        reason,
        extra=_about(claimed),
    )


async def _retry_later(
    session_factory: async_sessionmaker[AsyncSession],
    claimed: crm_job_queries.ClaimedCrmJob,
    reason: str,
    now: datetime,
    retry_after: float | None,
) -> None:
    async with session_factory() as session, session.begin():
        job = await crm_job_queries.held_crm_job(session, claimed)
        job.attempts += 1
        job.last_error = reason
        job.claimed_by = job.claimed_until = None
        if job.attempts >= MAX_ATTEMPTS:
            job.state = CrmJobState.FAILED
            logger.error(
                "giving up on the %s job %s for %s after %d attempts: %s",
                job.kind,
                job.id,
                job.source,
                job.attempts,
                reason,
                extra=_about(claimed),
            )
            return
        wait = timedelta(seconds=retry_after) if retry_after is not None else backoff(job.attempts)
        job.due_at = now + wait
    logger.warning(
        "the %s job %s for %s failed (%s); retrying at %s",
        claimed.kind,
        claimed.id,
        claimed.source,
        reason,
        (now + wait).isoformat(),
        extra=_about(claimed),
    )


def _about(job: crm_job_queries.ClaimedCrmJob) -> dict[str, object]:
    """The loss a write-back job is about, for its log lines (a fetch job's deal is not known yet)."""
    return log_ids(losses=[job.loss_id] if job.loss_id is not None else [])
