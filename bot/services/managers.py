"""Who manages a rep, in Slack: TEAM_FILE names managers by email, Slack finds their user id.

The same lookup names the manager on an escalation and decides who may re-code a rep's reasons
(README.md, "Re-coding a reason"): an id found once is cached (`slack_user`) like a rep's.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.slack_client import PermanentFailure, call
from storage import rep_queries
from storage.models import SlackUser


@dataclass(frozen=True)
class Managers:
    """Who may re-code a rep's reasons: ADMIN_USERS, for anyone's; a manager, for their reps'."""

    admins: frozenset[str] = frozenset()
    team: Mapping[str, str] = field(default_factory=dict)
    """Rep email → manager email, both lower case (TEAM_FILE)."""


async def slack_id_by_email(
    *, session_factory: async_sessionmaker[AsyncSession], slack: AsyncWebClient, email: str, now: datetime
) -> str | None:
    """The Slack user id of `email`, from the cache or `users.lookupByEmail`; None when Slack has no
    such user."""
    async with session_factory() as session, session.begin():
        cached = await rep_queries.slack_user_id(session, email)
    if cached is not None:
        return cached
    try:
        response = await call(slack.users_lookupByEmail(email=email))
    except PermanentFailure:
        return None
    user_id = str(response["user"]["id"])
    async with session_factory() as session, session.begin():
        await session.merge(SlackUser(email=email, user_id=user_id, looked_up_at=now))
    return user_id


async def may_recode(
    *,
    managers: Managers,
    session_factory: async_sessionmaker[AsyncSession],
    slack: AsyncWebClient,
    rep_email: str | None,
    user_id: str,
    now: datetime,
) -> bool:
    """Whether `user_id` may re-code the reasons of the rep whose CRM email is `rep_email`: an
    admin may; so may the rep's manager in TEAM_FILE, matched through Slack by their email."""
    if user_id in managers.admins:
        return True
    manager_email = managers.team.get((rep_email or "").lower())
    if manager_email is None:
        return False
    return (
        await slack_id_by_email(session_factory=session_factory, slack=slack, email=manager_email, now=now) == user_id
    )
