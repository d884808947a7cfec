"""CRM jobs: the fetches and write-backs queued for a CRM's API.

These functions never commit: the calling service owns the transaction.
"""

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.claims import ClaimLost
from storage.models import (
    CrmJob,
    CrmJobKind,
    CrmJobState,
    Deal,
    Loss,
)


async def insert_new_crm_jobs(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Inserts the jobs whose `event_key` is not stored yet, in one statement; returns how many."""
    bind = session.bind
    dialect_insert = postgresql.insert if bind is not None and bind.dialect.name == "postgresql" else sqlite.insert
    inserted = await session.scalars(
        dialect_insert(CrmJob).values(rows).on_conflict_do_nothing(index_elements=["event_key"]).returning(CrmJob.id)
    )
    return len(list(inserted))


async def has_waiting_write_back(session: AsyncSession, loss_id: int) -> bool:
    """A write-back of this loss is queued and no process has picked it up: it will write the newest reason."""
    waiting = await session.scalar(
        select(CrmJob.id).where(
            CrmJob.loss_id == loss_id,
            CrmJob.kind == CrmJobKind.WRITE_BACK,
            CrmJob.state == CrmJobState.PENDING,
            CrmJob.claimed_until.is_(None),
        )
    )
    return waiting is not None


class ClaimedCrmJob(NamedTuple):
    """A CRM job claimed by a process: what to do, and who may record it done."""

    id: int
    kind: str
    source: str
    payload: dict[str, Any] | None
    loss_id: int | None
    claimed_by: str


async def claim_due_crm_jobs(
    session: AsyncSession, *, now: datetime, process_id: str, until: datetime, limit: int
) -> list[ClaimedCrmJob]:
    """Claims up to `limit` due CRM jobs no other process holds, for `process_id` until `until`, as
    `claim_due_messages` does."""
    claimable = (
        CrmJob.state == CrmJobState.PENDING,
        CrmJob.due_at <= now,
        or_(CrmJob.claimed_until.is_(None), CrmJob.claimed_until < now),
    )
    candidates = await session.scalars(
        select(CrmJob.id).where(*claimable).order_by(CrmJob.id).limit(limit).with_for_update(skip_locked=True)
    )
    rows = await session.execute(
        update(CrmJob)
        .where(CrmJob.id.in_(list(candidates)), *claimable)
        .values(claimed_by=process_id, claimed_until=until)
        .returning(CrmJob.id, CrmJob.kind, CrmJob.source, CrmJob.payload, CrmJob.loss_id)
    )
    claimed = (ClaimedCrmJob(row.id, row.kind, row.source, row.payload, row.loss_id, process_id) for row in rows)
    return sorted(claimed, key=lambda job: job.id)


def _still_held(claimed: ClaimedCrmJob) -> tuple[ColumnElement[bool], ...]:
    """The job is pending and the process that claimed it still holds it (see `storage.claims`)."""
    return (CrmJob.id == claimed.id, CrmJob.claimed_by == claimed.claimed_by, CrmJob.state == CrmJobState.PENDING)


async def held_crm_job(session: AsyncSession, claimed: ClaimedCrmJob) -> CrmJob:
    """The job's row, locked until the transaction ends (PostgreSQL), while its claimer still holds
    it; ClaimLost otherwise."""
    row = await session.scalar(select(CrmJob).where(*_still_held(claimed)).with_for_update())
    if row is None:
        raise ClaimLost(f"CRM job {claimed.id} is no longer held by {claimed.claimed_by}")
    return row


async def release_crm_jobs(session: AsyncSession, claimed: list[ClaimedCrmJob]) -> None:
    """Hands back these jobs, those of them their claimer still holds, to be claimed again at once."""
    for job in claimed:
        await session.execute(update(CrmJob).where(*_still_held(job)).values(claimed_by=None, claimed_until=None))


async def next_crm_job_due_at(session: AsyncSession, now: datetime) -> datetime | None:
    return await session.scalar(
        select(func.min(CrmJob.due_at)).where(
            CrmJob.state == CrmJobState.PENDING,
            or_(CrmJob.claimed_until.is_(None), CrmJob.claimed_until < now),
        )
    )


class FailedCrmJob(NamedTuple):
    id: int
    kind: str
    source: str
    event_key: str | None
    deal_name: str | None
    """The deal a write-back was for; None for a fetch (its deal was never read)."""
    error: str | None
    attempts: int


async def failed_crm_jobs(session: AsyncSession, *, limit: int) -> tuple[list[FailedCrmJob], int]:
    """The failed jobs, newest first, at most `limit`; and how many there are."""
    rows = (
        await session.execute(
            select(
                CrmJob.id,
                CrmJob.kind,
                CrmJob.source,
                CrmJob.event_key,
                Deal.name,
                CrmJob.last_error,
                CrmJob.attempts,
                func.count().over(),
            )
            .outerjoin(Loss, Loss.id == CrmJob.loss_id)
            .outerjoin(Deal, Deal.id == Loss.deal_id)
            .where(CrmJob.state == CrmJobState.FAILED)
            .order_by(CrmJob.id.desc())
            .limit(limit)
        )
    ).all()
    return [FailedCrmJob(*row[:-1]) for row in rows], rows[0][-1] if rows else 0


async def requeue_failed_crm_job(session: AsyncSession, job_id: int, now: datetime) -> bool:
    """Makes a failed job pending again, due now, with its tries counted afresh; False when the job
    is not (or no longer) failed."""
    requeued = await session.scalar(
        update(CrmJob)
        .where(CrmJob.id == job_id, CrmJob.state == CrmJobState.FAILED)
        .values(state=CrmJobState.PENDING, due_at=now, attempts=0, last_error=None, claimed_until=None)
        .returning(CrmJob.id)
    )
    return requeued is not None


async def crm_job_counts(session: AsyncSession) -> tuple[int, int]:
    """How many jobs are pending, and how many failed."""
    counts = dict(
        (
            await session.execute(
                select(CrmJob.state, func.count())
                .where(CrmJob.state.in_([CrmJobState.PENDING, CrmJobState.FAILED]))
                .group_by(CrmJob.state)
            )
        ).all()
    )
    return counts.get(CrmJobState.PENDING, 0), counts.get(CrmJobState.FAILED, 0)
