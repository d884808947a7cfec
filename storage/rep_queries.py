"""Reps and Slack users: what the bot has learnt from Slack about the people it writes to.

These functions never commit: the calling service owns the transaction.
"""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    Rep,
    SlackUser,
)


async def slack_user_id(session: AsyncSession, email: str) -> str | None:
    return await session.scalar(select(SlackUser.user_id).where(SlackUser.email == email))


async def rep_tz(session: AsyncSession, slack_id: str) -> str | None:
    return await session.scalar(select(Rep.tz).where(Rep.slack_id == slack_id))


async def has_rep(session: AsyncSession, slack_id: str) -> bool:
    return await session.get(Rep, slack_id) is not None
