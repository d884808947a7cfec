"""Deals and their events (the audit trail of what each CRM told us).

These functions never commit: the calling service owns the transaction.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    Deal,
    DealEventRecord,
    table_of,
)


async def existing_event_keys(session: AsyncSession, keys: Iterable[str]) -> set[str]:
    rows = await session.scalars(
        select(DealEventRecord.idempotency_key).where(DealEventRecord.idempotency_key.in_(set(keys)))
    )
    return set(rows)


async def lock_deals(session: AsyncSession, keys: Iterable[tuple[str, str]]) -> None:
    """Makes transactions that write the same deals wait for each other, across processes.

    PostgreSQL only (SQLite runs one writing transaction at a time): a transaction-scoped advisory
    lock per deal, taken in sorted order so that two batches never deadlock, and before the deals
    are read so that the second transaction sees what the first committed.
    """
    bind = session.bind
    if bind is None or bind.dialect.name != "postgresql":
        return
    names = sorted({f"{source}:{external_id}" for source, external_id in keys})
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(name, 0)) FROM unnest(CAST(:names AS text[])) AS name"),
        {"names": names},
    )


async def insert_deals(session: AsyncSession, rows: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """Inserts deals in one statement; returns (id, source, external_id) of each. Every row has the
    same keys, None for NULL (see `insert_deal_events`)."""
    table = table_of(Deal)
    result = await session.execute(insert(table).returning(table.c.id, table.c.source, table.c.external_id), rows)
    return [(row.id, row.source, row.external_id) for row in result]


async def update_deals(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Updates deals by primary key (`id` in each row), in one executemany."""
    await session.execute(update(Deal), rows)


async def insert_deal_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Inserts events in one statement. A Core insert of the table, not of the ORM class: the ORM's
    bulk insert leaves out a row's None values, so rows whose None fall on different columns (a won
    deal has no loss reason) break into a statement each."""
    await session.execute(insert(table_of(DealEventRecord)), rows)


async def deal_rows(session: AsyncSession, source: str, external_ids: Iterable[str]) -> list[RowMapping]:
    """Every column of the deals of `source` with these CRM ids, as plain rows."""
    rows = await session.execute(
        select(*Deal.__table__.columns).where(Deal.source == source, Deal.external_id.in_(set(external_ids)))
    )
    return list(rows.mappings())


async def set_owner_slack_id(session: AsyncSession, deal_ids: list[int], *, email: str, user_id: str) -> None:
    """Records the Slack id of the owner with this email on these deals, in one statement; a deal
    whose owner the CRM changed meanwhile keeps the new one."""
    await session.execute(
        update(Deal).where(Deal.id.in_(deal_ids), Deal.owner_email == email).values(owner_slack_id=user_id)
    )


async def last_event_received_at(session: AsyncSession, source: str) -> datetime | None:
    """When the newest deal event from `source` was received; None when it never sent one.

    Read backwards from the newest event, which finds an active source's at once; a source without
    deals is answered from the deal index without reading events at all.
    """
    if await session.scalar(select(Deal.id).where(Deal.source == source).limit(1)) is None:
        return None
    return await session.scalar(
        select(DealEventRecord.received_at)
        .join(Deal, Deal.id == DealEventRecord.deal_id)
        .where(Deal.source == source)
        .order_by(DealEventRecord.id.desc())
        .limit(1)
    )
