"""The sweep's cursors and claims, and the webhook misses it records.

These functions never commit: the calling service owns the transaction.
"""

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Deal, SweepCursor, WebhookMiss


async def claim_sweep(
    session: AsyncSession, *, source: str, process_id: str, now: datetime, until: datetime
) -> datetime | None:
    """Takes the sweep of `source` for `process_id` until `until`, if it is due and no other process
    holds it; returns its cursor, or None when it is not taken. A CRM swept for the first time starts
    with a cursor of `now` and is due at once.

    The claim is one UPDATE whose WHERE checks the claim is free: on PostgreSQL a second process's
    UPDATE waits for the first to commit and then finds the row held; SQLite runs one writing
    transaction at a time.
    """
    bind = session.bind
    dialect_insert = postgresql.insert if bind is not None and bind.dialect.name == "postgresql" else sqlite.insert
    await session.execute(
        dialect_insert(SweepCursor)
        .values(source=source, cursor=now, due_at=now, created_at=now)
        .on_conflict_do_nothing(index_elements=["source"])
    )
    return await session.scalar(
        update(SweepCursor)
        .where(
            SweepCursor.source == source,
            SweepCursor.due_at <= now,
            or_(SweepCursor.claimed_until.is_(None), SweepCursor.claimed_until < now),
        )
        .values(claimed_by=process_id, claimed_until=until)
        .returning(SweepCursor.cursor)
    )


async def advance_sweep(
    session: AsyncSession, *, source: str, process_id: str, cursor: datetime, until: datetime
) -> bool:
    """Moves the cursor and renews the claim; False when another process has taken the sweep over
    (this one's claim ran out), in which case nothing is changed."""
    held = await session.scalar(
        update(SweepCursor)
        .where(SweepCursor.source == source, SweepCursor.claimed_by == process_id)
        .values(cursor=cursor, claimed_until=until)
        .returning(SweepCursor.source)
    )
    return held is not None


async def release_sweep(
    session: AsyncSession,
    *,
    source: str,
    process_id: str,
    due_at: datetime,
    swept_at: datetime,
    last_error: str | None,
) -> None:
    """Ends this process's sweep of `source`: the next one is due at `due_at`."""
    await session.execute(
        update(SweepCursor)
        .where(SweepCursor.source == source, SweepCursor.claimed_by == process_id)
        .values(claimed_by=None, claimed_until=None, due_at=due_at, swept_at=swept_at, last_error=last_error)
    )


async def next_sweep_at(session: AsyncSession, sources: Iterable[str], now: datetime) -> datetime | None:
    """When one of these CRMs may next be swept by this process: its due time, or the end of
    another process's claim; `now` for a CRM never swept. None without sources."""
    wanted = set(sources)
    rows = (
        await session.execute(
            select(SweepCursor.source, SweepCursor.due_at, SweepCursor.claimed_until).where(
                SweepCursor.source.in_(wanted)
            )
        )
    ).all()
    times = [
        claimed_until if claimed_until is not None and claimed_until >= now else due_at
        for _, due_at, claimed_until in rows
    ]
    if len(rows) < len(wanted):
        times.append(now)
    return min(times, default=None)


async def stored_deal_ids(session: AsyncSession, source: str, external_ids: Iterable[str]) -> set[str]:
    """Which of these CRM deal ids the bot has stored."""
    rows = await session.scalars(
        select(Deal.external_id).where(Deal.source == source, Deal.external_id.in_(set(external_ids)))
    )
    return set(rows)


async def record_webhook_miss(session: AsyncSession, *, source: str, found_at: datetime, stage_changes: int) -> None:
    session.add(WebhookMiss(source=source, found_at=found_at, stage_changes=stage_changes))


async def webhook_misses(session: AsyncSession, *, since: datetime, until: datetime) -> list[tuple[str, int]]:
    """Stage changes found first by the sweep in [since, until), per CRM, by CRM."""
    rows = await session.execute(
        select(WebhookMiss.source, func.sum(WebhookMiss.stage_changes))
        .where(WebhookMiss.found_at >= since, WebhookMiss.found_at < until)
        .group_by(WebhookMiss.source)
        .order_by(WebhookMiss.source)
    )
    return [(source, int(count)) for source, count in rows]
