"""A manager's side of a loss (README.md, "Re-coding a reason"): opening a logged reason from a
debrief card, a route post or an escalation, and storing their answer over the rep's.

Whoever clicks is checked when the modal opens and again when it is submitted; the answer is stored
by `bot.services.losses.record_reason`, as every reason is, so that everything a stored reason sets
off (the messages' updates, the CRM write-back, the route posts) follows a re-code too.
"""

from collections.abc import Collection, Mapping
from datetime import datetime

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import LossNotFound, NotManager
from bot.reasons import Catalogue
from bot.services.debriefs import Audience
from bot.services.losses import LossForModal, open_loss, record_reason
from bot.services.managers import Managers, may_recode
from bot.validation import ReasonForm
from storage import loss_queries


async def open_for_recode(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    slack: AsyncWebClient,
    managers: Managers,
    loss_id: int,
    user_id: str,
    catalogue: Catalogue,
    now: datetime,
) -> LossForModal:
    """The reason modal's data on the loss's current reason, for a manager who may re-code it;
    NotManager for anyone else."""
    await _check_may_recode(
        session_factory=session_factory, slack=slack, managers=managers, loss_id=loss_id, user_id=user_id, now=now
    )
    return await open_loss(
        session_factory=session_factory,
        loss_id=loss_id,
        user_id=user_id,
        catalogue=catalogue,
        reason_aliases={},  # a re-code opens on a logged reason, never on the CRM's
        competitor_merges={},
        recoding=True,
    )


async def recode_reason(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    slack: AsyncWebClient,
    managers: Managers,
    loss_id: int,
    revision: int,
    form: ReasonForm,
    catalogue: Catalogue,
    user_id: str,
    view_id: str | None,
    now: datetime,
    write_back_to: Collection[str],
    audience: Audience,
    competitor_merges: Mapping[str, str],
) -> str | None:
    """Stores a manager's validated answer as the loss's next revision, re-coded by them (see
    `record_reason`), and returns the Slack id of the rep whose reason it was (None when the CRM's
    owner has none); NotManager, and nothing stored, for anyone who may not re-code it."""
    rep = await _check_may_recode(
        session_factory=session_factory, slack=slack, managers=managers, loss_id=loss_id, user_id=user_id, now=now
    )
    await record_reason(
        session_factory=session_factory,
        loss_id=loss_id,
        revision=revision,
        form=form,
        catalogue=catalogue,
        user_id=user_id,
        view_id=view_id,
        now=now,
        write_back_to=write_back_to,
        audience=audience,
        competitor_merges=competitor_merges,
        recoding=True,
    )
    return rep


async def _check_may_recode(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    slack: AsyncWebClient,
    managers: Managers,
    loss_id: int,
    user_id: str,
    now: datetime,
) -> str | None:
    """NotManager unless `user_id` may re-code the loss's reason; returns the rep's Slack id."""
    async with session_factory() as session, session.begin():
        found = await loss_queries.loss_with_deal(session, loss_id)
    if found is None:
        raise LossNotFound()
    _, deal = found
    allowed = await may_recode(
        managers=managers,
        session_factory=session_factory,
        slack=slack,
        rep_email=deal.owner_email,
        user_id=user_id,
        now=now,
    )
    if not allowed:
        raise NotManager()
    return deal.owner_slack_id
