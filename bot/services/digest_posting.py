"""Posting the weekly digest once per channel and week (README.md, "The weekly digest"), from the scheduler or the CLI.

A digest is recorded as a `digest_run` with its message, and the message's post queued in the
outbox, in one transaction. The run's unique (channel, week_start) key is what makes it once: a
second process, or the same one after a restart, that tries to record the same week finds it
there, or fails on the key and leaves it be. The content is built when the post is made (see
`bot.services.delivery`).

Catch-up rule: the digest is due from DIGEST_SCHEDULE's moment until CATCH_UP_WINDOW after it. A bot
that was down over Monday 09:00 posts it when it comes back within that window; one installed or
restarted later in the week waits for the next scheduled moment rather than post a stale digest.
"""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.periods import last_full_week
from bot.services import outbox
from bot.weekly_schedule import WeeklyTime
from storage import digest_queries, message_queries
from storage.models import DigestRun, Message, MessageKind, OutboxState

CATCH_UP_WINDOW = timedelta(hours=24)


async def queue_due_digest(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    channel: str | None,
    schedule: WeeklyTime,
    tz: ZoneInfo,
    now: datetime,
) -> int:
    """Records and queues the digest of the last full week once its scheduled moment has come, unless
    it is already recorded for that channel: `channel` at `schedule` in `tz` (DIGEST_CHANNEL,
    DIGEST_SCHEDULE, TIMEZONE). Returns the number of digests queued (0 or 1)."""
    if channel is None:
        return 0
    scheduled = schedule.latest(now, tz)
    if now - scheduled > CATCH_UP_WINDOW:
        return 0
    # The week as of the scheduled moment, so that a digest posted late still covers its own week.
    week = last_full_week(now=scheduled, tz=tz)
    message_id = await record_digest(session_factory=session_factory, channel=channel, week_start=week.monday, now=now)
    return 0 if message_id is None else 1


async def record_digest(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    channel: str,
    week_start: date,
    now: datetime,
    again_if_refused: bool = False,
) -> int | None:
    """Records the digest of the week starting `week_start` for `channel` and queues its post.
    Returns its message id; None when that channel already has that week's digest. With
    `again_if_refused`, a digest Slack refused for good (the bot was not in the channel, say) is
    queued again, for the admin who fixed the cause."""
    try:
        async with session_factory() as session, session.begin():
            recorded = await digest_queries.digest_message(session, channel=channel, week_start=week_start)
            if recorded is not None:
                if not (again_if_refused and await _refused(session, recorded)):
                    return None
                await outbox.queue_posts(session, message_ids=[recorded.id], now=now)
                return recorded.id
            [message_id] = await message_queries.insert_messages(
                session, [{"kind": MessageKind.DIGEST, "rep_key": None, "post_to": channel, "created_at": now}]
            )
            session.add(DigestRun(channel=channel, week_start=week_start, message_id=message_id, created_at=now))
            await session.flush()
            await outbox.queue_posts(session, message_ids=[message_id], now=now)
            return message_id
    except IntegrityError:
        # Another process recorded the same digest between our check and our insert: it posts it.
        return None


async def _refused(session: AsyncSession, message: Message) -> bool:
    calls = await message_queries.outbox_calls(session, message.id)
    return message.ts is None and all(call.state == OutboxState.FAILED for call in calls)


async def posting_problem(*, session_factory: async_sessionmaker[AsyncSession], message_id: int) -> str | None:
    """Why a digest the CLI queued is not posted yet, in a few words; None when it is posted."""
    async with session_factory() as session, session.begin():
        message = await session.get_one(Message, message_id)
        *_, call = await message_queries.outbox_calls(session, message_id)
    if message.ts is not None:
        return None
    if call.state == OutboxState.FAILED:
        return f"Slack refused it ({call.last_error})"
    if call.last_error is not None:
        return f"posting failed ({call.last_error}); it stays queued, and a running `closedlost serve` retries it"
    return "another process holds it; a running `closedlost serve` is posting it"
