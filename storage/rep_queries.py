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


async def zones_of(session: AsyncSession, rep_keys: list[str]) -> dict[str, str | None]:
    """The time zones Slack gave for reps named by rep key (a Slack id, or a lower-case email the
    bot has looked up); a rep the bot has not looked up yet is left out."""
    if not rep_keys:
        return {}
    by_id = await session.execute(select(Rep.slack_id, Rep.tz).where(Rep.slack_id.in_(rep_keys)))
    by_email = await session.execute(
        select(SlackUser.email, Rep.tz)
        .join(Rep, Rep.slack_id == SlackUser.user_id)
        .where(SlackUser.email.in_(rep_keys))
    )
    zones: dict[str, str | None] = {}
    for key, tz in [*by_id, *by_email]:
        zones[key] = tz
    return zones


async def has_rep(session: AsyncSession, slack_id: str) -> bool:
    return await session.get(Rep, slack_id) is not None


async def rep_names(session: AsyncSession, slack_ids: set[str]) -> dict[str, str]:
    """The display names cached for these Slack users; a user with none cached is left out."""
    if not slack_ids:
        return {}
    rows = await session.execute(
        select(Rep.slack_id, Rep.name).where(Rep.slack_id.in_(slack_ids), Rep.name.is_not(None))
    )
    return {slack_id: name for slack_id, name in rows if name is not None}
