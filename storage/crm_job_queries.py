"""CRM jobs: the fetches and write-backs queued for a CRM's API.

These functions never commit: the calling service owns the transaction.
"""

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    CrmJob,
    CrmJobKind,
    CrmJobState,
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
    id: int
    kind: str
    source: str
    payload: dict[str, Any] | None
    loss_id: int | None


async def claim_due_crm_jobs(
    session: AsyncSession, *, now: datetime, until: datetime, limit: int
) -> list[ClaimedCrmJob]:
    """Claims up to `limit` due CRM jobs no other process holds, as `claim_due_messages` does."""
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
        .values(claimed_until=until)
        .returning(CrmJob.id, CrmJob.kind, CrmJob.source, CrmJob.payload, CrmJob.loss_id)
    )
    return sorted((ClaimedCrmJob(*row) for row in rows), key=lambda job: job.id)


async def next_crm_job_due_at(session: AsyncSession, now: datetime) -> datetime | None:
    return await session.scalar(
        select(func.min(CrmJob.due_at)).where(
            CrmJob.state == CrmJobState.PENDING,
            or_(CrmJob.claimed_until.is_(None), CrmJob.claimed_until < now),
        )
    )
