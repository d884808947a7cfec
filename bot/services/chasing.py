"""The scheduler's work on losses awaiting a reason: prompt them, remind the rep, escalate.

Each function runs in one transaction that locks the losses it takes (SKIP LOCKED on PostgreSQL),
writes the messages they call for, and queues those messages in the outbox. So two processes
ticking together never take the same loss, and nothing is sent twice (README.md: "Reminders",
"Escalation", "Several processes, one database").
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services import outbox
from bot.settings import Settings
from bot.working_time import WorkingHours, add_working_time, is_working_time, next_working_moment
from storage import loss_queries, message_queries, rep_queries
from storage.models import MessageKind

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ChasePolicy:
    """When a rep is reminded and escalated, and where escalations go."""

    reminder_after: tuple[timedelta, ...]
    """REMINDER_AFTER: working time from the prompt to each reminder."""
    escalate_after: timedelta
    hours: WorkingHours
    team_tz: ZoneInfo
    """TIMEZONE: escalation days are counted in it, and it stands in for a rep's unknown zone."""
    manager_channel: str | None
    prompt_anytime: bool
    """PROMPT_ANYTIME: prompts go out as soon as they are due, not at the start of working hours."""

    @classmethod
    def from_settings(cls, settings: Settings) -> "ChasePolicy":
        return cls(
            reminder_after=settings.reminder_after,
            escalate_after=settings.escalate_after,
            hours=settings.hours,
            team_tz=settings.tz,
            manager_channel=settings.manager_channel,
            prompt_anytime=settings.prompt_anytime,
        )


@dataclass(frozen=True)
class PromptRound:
    queued: int
    """DMs queued."""
    next_due_at: datetime | None
    """When the next rep's prompt falls due, as the losses stand now; None when no loss waits."""


async def queue_due_prompts(
    *, session_factory: async_sessionmaker[AsyncSession], policy: ChasePolicy, now: datetime
) -> PromptRound:
    """One DM per rep for their losses not yet prompted, once it is due (see `prompt_due_at`) and,
    unless `policy.prompt_anytime`, the rep is in their working hours: a loss that comes in at
    night is prompted at the start of the rep's next working hours, in their time zone as Slack
    gave it, or TIMEZONE for a rep not looked up yet.

    Prompt rounds run one at a time across processes (`loss_queries.lock_prompting`), so a rep's
    losses are never split between two DMs by two processes ticking together."""
    async with session_factory() as session, session.begin():
        await loss_queries.lock_prompting(session)
        waiting = await loss_queries.losses_to_prompt(session)
        by_rep = _grouped(waiting, key=lambda row: row.rep_key)
        due_at = {rep: prompt_due_at(rows) for rep, rows in by_rep.items()}
        if not policy.prompt_anytime:
            zones = await rep_queries.zones_of(session, list(by_rep))
            due_at = {
                rep: next_working_moment(at, rep_zone(zones.get(rep), policy.team_tz), policy.hours)
                for rep, at in due_at.items()
            }
        due = {rep: rows for rep, rows in by_rep.items() if due_at[rep] <= now}
        next_due_at = min((at for at in due_at.values() if at > now), default=None)
        if not due:
            return PromptRound(queued=0, next_due_at=next_due_at)
        message_ids = await message_queries.insert_messages(
            session,
            [
                {
                    "kind": MessageKind.PROMPT,
                    "rep_key": rep,
                    "rep_slack_id": rows[0].rep_slack_id,
                    "rep_email": rows[0].rep_email,
                    "created_at": now,
                }
                for rep, rows in due.items()
            ],
        )
        for message_id, rows in zip(message_ids, due.values(), strict=True):
            await message_queries.link_losses(session, message_id, [row.loss_id for row in rows])
            await loss_queries.update_losses(
                session, [{"id": row.loss_id, "prompt_message_id": message_id} for row in rows]
            )
        await outbox.queue_posts(session, message_ids=message_ids, now=now)
        return PromptRound(queued=len(message_ids), next_due_at=next_due_at)


def prompt_due_at(rows: list[loss_queries.LossToPrompt]) -> datetime:
    """When a rep's prompt for these losses of theirs falls due: once BULK_WINDOW has passed since
    the newest began waiting (a quiet period), and at the latest BULK_MAX after the oldest, so that
    a clean-up trickling in for minutes still makes one DM, and one that never pauses makes one
    DM every BULK_MAX."""
    return min(max(row.prompt_after for row in rows), min(row.prompt_by for row in rows))


async def queue_due_reminders(
    *, session_factory: async_sessionmaker[AsyncSession], policy: ChasePolicy, now: datetime
) -> int:
    """One reminder per rep covering every loss of theirs that is due one, as a reply in the
    thread of their oldest prompt; a rep outside their working hours is reminded when these
    begin. Returns the number of reminders queued."""
    hours = policy.hours
    queued = 0
    async with session_factory() as session, session.begin():
        due = await loss_queries.losses_to_remind(session, now)
        for rep, rows in _grouped(due, key=lambda row: row.rep_slack_id).items():
            tz = rep_zone(rows[0].tz, policy.team_tz)
            if not is_working_time(now, tz, hours):
                later = next_working_moment(now, tz, hours)
                await loss_queries.update_losses(
                    session, [{"id": row.loss_id, "reminder_due_at": later} for row in rows]
                )
                continue
            thread = next((row for row in rows if row.prompt_ts is not None), rows[0])
            [message_id] = await message_queries.insert_messages(
                session,
                [
                    {
                        "kind": MessageKind.REMINDER,
                        "rep_key": rep,
                        "rep_slack_id": rep,
                        "rep_email": rows[0].rep_email,
                        "post_to": thread.prompt_channel,
                        "thread_ts": thread.prompt_ts,
                        "created_at": now,
                    }
                ],
            )
            await message_queries.link_losses(session, message_id, [row.loss_id for row in rows])
            await loss_queries.update_losses(
                session,
                [
                    {
                        "id": row.loss_id,
                        "reminders_sent": row.reminders_sent + 1,
                        "last_reminded_at": now,
                        "reminder_due_at": next_reminder_at(
                            row.prompted_at, row.reminders_sent + 1, policy, tz=tz, now=now
                        ),
                    }
                    for row in rows
                ],
            )
            await outbox.queue_posts(session, message_ids=[message_id], now=now)
            queued += 1
    return queued


async def queue_due_escalations(
    *, session_factory: async_sessionmaker[AsyncSession], policy: ChasePolicy, now: datetime
) -> int:
    """Overdue losses go to MANAGER_CHANNEL in one post per rep and day (in TIMEZONE): the day's
    post is updated with losses that become overdue later that day. Returns the number of posts
    queued or updated."""
    if policy.manager_channel is None:
        return 0
    day = now.astimezone(policy.team_tz).date()
    touched = 0
    async with session_factory() as session, session.begin():
        due = await loss_queries.losses_to_escalate(session, now)
        for rep, rows in _grouped(due, key=lambda row: row.rep_slack_id).items():
            message_id = await message_queries.escalation_message_id(session, rep, day)
            if message_id is None:
                [message_id] = await message_queries.insert_messages(
                    session,
                    [
                        {
                            "kind": MessageKind.ESCALATION,
                            "rep_key": rep,
                            "rep_slack_id": rep,
                            "rep_email": rows[0].rep_email,
                            "post_to": policy.manager_channel,
                            "escalation_day": day,
                            "created_at": now,
                        }
                    ],
                )
                await outbox.queue_posts(session, message_ids=[message_id], now=now)
            else:
                await outbox.queue_updates(session, message_ids=[message_id], now=now)
            await message_queries.link_losses(session, message_id, [row.loss_id for row in rows])
            await loss_queries.update_losses(
                session,
                [{"id": row.loss_id, "escalated_at": now, "escalation_message_id": message_id} for row in rows],
            )
            touched += 1
    return touched


def chase_schedule(prompted_at: datetime, policy: ChasePolicy, *, tz: ZoneInfo) -> dict[str, datetime | None]:
    """When a loss just prompted is due its first reminder and its escalation, in working time."""
    return {
        "reminder_due_at": next_reminder_at(prompted_at, 0, policy, tz=tz, now=prompted_at),
        "escalation_due_at": add_working_time(prompted_at, policy.escalate_after, tz, policy.hours),
    }


def next_reminder_at(
    prompted_at: datetime, sent: int, policy: ChasePolicy, *, tz: ZoneInfo, now: datetime
) -> datetime | None:
    """When the reminder after the `sent` already sent is due, or None when there is no other. A
    reminder that fell due while the bot was not running waits its gap after the last one, so two
    never go out back to back."""
    offsets = policy.reminder_after
    if sent >= len(offsets):
        return None
    due = add_working_time(prompted_at, offsets[sent], tz, policy.hours)
    if due <= now and sent > 0:
        due = add_working_time(now, offsets[sent] - offsets[sent - 1], tz, policy.hours)
    return due


def rep_zone(tz: str | None, team_tz: ZoneInfo) -> ZoneInfo:
    """The rep's own time zone from Slack, or the team's when Slack gave none we know."""
    if tz:
        try:
            return ZoneInfo(tz)
        except (KeyError, ValueError):
            logger.warning("unknown time zone %r from Slack; using TIMEZONE %s", tz, team_tz.key)
    return team_tz


def _grouped(rows: Iterable[T], *, key: Callable[[T], str]) -> dict[str, list[T]]:
    """Rows by `key`, each group in the order given."""
    groups: dict[str, list[T]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return groups
