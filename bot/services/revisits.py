"""Revisits: a logged loss to look at again on a date (README.md, "Revisit nudges").

A reason with a revisit date makes its loss's revisit due on that date; the scheduler nudges the
rep by DM at the start of their working hours on that date, in their own time zone, and the rep
answers with one of three buttons. A deal the CRM reports open or won again closes its revisit as a
win-back. The nudge job locks the revisits it takes (SKIP LOCKED on PostgreSQL) and queues their
DMs in the same transaction, so a nudge goes out once however many processes run.
"""

from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.event import CLOSED_LOST
from bot.errors import NotRevisitOwner, RevisitNotFound
from bot.services import outbox
from bot.services.chasing import rep_zone
from bot.working_time import WorkingHours, next_working_moment
from storage import message_queries, rep_queries, revisit_queries
from storage.models import MessageKind, Revisit, RevisitState
from storage.revisit_queries import OPEN_STATES

SNOOZE = timedelta(days=30)
# A date begins first at UTC+14. A revisit is looked at from then on; the nudge job then waits for
# the start of its rep's working hours, in the rep's own time zone (which may not be known yet).
FIRST_ZONE = timezone(timedelta(hours=14))
ANSWERS = (RevisitState.REOPENED, RevisitState.SNOOZED, RevisitState.DROPPED)


def first_moment(day: date) -> datetime:
    """The first instant at which it is `day` somewhere on Earth."""
    return datetime.combine(day, time(), tzinfo=FIRST_ZONE).astimezone(UTC)


def nudge_moment(day: date, tz: ZoneInfo, hours: WorkingHours, *, now: datetime) -> datetime:
    """The start of the rep's working hours on `day`, or on their next working day after it. Once
    that has passed, the next moment of working time from `now`: a nudge the bot could not send on
    time (it was down, or the revisit was carried over by migration 0005) still waits for the rep's
    working hours."""
    return next_working_moment(max(datetime.combine(day, time(), tzinfo=tz), now), tz, hours)


async def record_revisit_date(
    session: AsyncSession, *, loss_id: int, before: date | None, after: date | None, user_id: str, now: datetime
) -> None:
    """Keeps the loss's revisit in step with its reason, in the transaction storing that reason.

    `before` and `after` are the revisit dates of the previous and the new reason. Only a change of
    date counts, so an edit of the explanation leaves a snoozed revisit on its snoozed date. A new
    date makes the revisit due on it, even after the rep dropped it (setting a date is asking again);
    a cleared date closes an open revisit as done. A win-back (reopened) stays closed.
    """
    if after == before:
        return
    revisit = await revisit_queries.revisit_of_loss(session, loss_id, for_update=True)
    if after is None:
        if revisit is not None and revisit.state in OPEN_STATES:
            _close(revisit, RevisitState.DONE, by=user_id, now=now)
        return
    if revisit is None:
        session.add(
            Revisit(
                loss_id=loss_id,
                due_on=after,
                state=RevisitState.DUE,
                nudge_at=first_moment(after),
                snoozes=0,
                created_at=now,
            )
        )
        return
    if revisit.state == RevisitState.REOPENED:
        return
    revisit.state = RevisitState.DUE
    revisit.due_on = after
    revisit.nudge_at = first_moment(after)
    revisit.nudged_at = None
    revisit.closed_at = None
    revisit.closed_by = None


async def queue_due_nudges(
    *, session_factory: async_sessionmaker[AsyncSession], hours: WorkingHours, team_tz: ZoneInfo, now: datetime
) -> int:
    """One DM per revisit whose date has come in its rep's time zone, at the start of their working
    hours; a revisit looked at earlier waits for that moment. Returns the number of DMs queued."""
    queued: list[int] = []
    async with session_factory() as session, session.begin():
        for revisit, loss, deal, tz in await revisit_queries.revisits_to_nudge(session, now):
            if deal.stage != CLOSED_LOST:
                # The deal came back without an event closing this revisit (one carried over by 0005).
                _close(revisit, RevisitState.REOPENED, by=deal.source, now=now)
                continue
            moment = nudge_moment(revisit.due_on, rep_zone(tz, team_tz), hours, now=now)
            if moment > now:
                revisit.nudge_at = moment
                continue
            [message_id] = await message_queries.insert_messages(
                session,
                [
                    {
                        "kind": MessageKind.REVISIT,
                        "rep_key": deal.owner_slack_id or deal.owner_email,
                        "rep_slack_id": deal.owner_slack_id,
                        "rep_email": deal.owner_email,
                        "created_at": now,
                    }
                ],
            )
            await message_queries.link_losses(session, message_id, [loss.id])
            revisit.state = RevisitState.DUE
            revisit.nudge_at = None
            revisit.nudged_at = now
            revisit.message_id = message_id
            queued.append(message_id)
        await outbox.queue_posts(session, message_ids=queued, now=now)
    return len(queued)


async def answer_nudge(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    revisit_id: int,
    answer: RevisitState,
    user_id: str,
    team_tz: ZoneInfo,
    now: datetime,
) -> None:
    """Stores the rep's answer to a nudge (reopened, snoozed or dropped) and queues the update of
    the DM to show it. Only the deal's owner may answer; an answer to a revisit already closed
    changes nothing, and the DM is updated to show how it was closed."""
    if answer not in ANSWERS:
        raise ValueError(f"{answer} is not an answer to a nudge")
    async with session_factory() as session, session.begin():
        found = await revisit_queries.revisit_with_deal(session, revisit_id)
        if found is None:
            raise RevisitNotFound()
        revisit, _, deal = found
        if deal.owner_slack_id != user_id:
            raise NotRevisitOwner(deal.owner_slack_id)
        if revisit.state in OPEN_STATES:
            if answer == RevisitState.SNOOZED:
                today = now.astimezone(rep_zone(await rep_queries.rep_tz(session, user_id), team_tz)).date()
                revisit.state = RevisitState.SNOOZED
                revisit.due_on = today + SNOOZE
                revisit.nudge_at = first_moment(revisit.due_on)
                revisit.snoozes += 1
            else:
                _close(revisit, answer, by=user_id, now=now)
        if revisit.message_id is not None:
            await outbox.queue_updates(session, message_ids=[revisit.message_id], now=now)


async def close_reopened_deals(session: AsyncSession, *, deal_ids: list[int], now: datetime) -> list[int]:
    """Closes the open revisits of deals the CRM reports open or won again, as win-backs, in the
    transaction recording that. Returns the nudge DMs to update."""
    if not deal_ids:
        return []
    messages = []
    for revisit, source in await revisit_queries.open_revisits_of_deals(session, deal_ids):
        _close(revisit, RevisitState.REOPENED, by=source, now=now)
        if revisit.message_id is not None:
            messages.append(revisit.message_id)
    return messages


def _close(revisit: Revisit, state: RevisitState, *, by: str, now: datetime) -> None:
    revisit.state = state
    revisit.nudge_at = None
    revisit.closed_at = now
    revisit.closed_by = by
