"""Digest runs: one weekly digest per channel and week.

These functions never commit: the calling service owns the transaction.
"""

from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    DigestRun,
    Message,
)


async def digest_message(session: AsyncSession, *, channel: str, week_start: date) -> Message | None:
    """The message of the digest recorded for this channel and week, if there is one."""
    return await session.scalar(
        select(Message)
        .join(DigestRun, DigestRun.message_id == Message.id)
        .where(DigestRun.channel == channel, DigestRun.week_start == week_start)
    )


async def digest_week_start(session: AsyncSession, message_id: int) -> date:
    """The Monday of the week a digest message covers."""
    return (await session.scalars(select(DigestRun.week_start).where(DigestRun.message_id == message_id))).one()
