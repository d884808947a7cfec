"""Every Slack call the bot owes goes through here: recorded first, made by `deliver_due_messages`.

An outbox row is written in the same transaction as the change that calls for it, so a crash never
loses one. Delivering claims the row in the database first, for this process and for a lease that
the scheduler renews every tick (`renew_claims`): two processes never send the same row, and the
rows of a process that died are sent by another (or by the same, restarted) once its lease runs
out. Rate limits (429 + Retry-After) and 5xx answers are retried inside the Slack client (see
`bot.slack_client`); what still fails is retried here with backoff, and failures that retrying
cannot fix are recorded by `record_failure` and not retried.

Only the process that still holds a row's claim records its outcome (sent, failed, or the next
try): a process whose lease ran out while Slack was answering (it was stalled, or cut off from the
database, for three ticks) finds the row taken over, logs it and records nothing, so the row's
state is the one the process that took it over gives it. What Slack accepted from the first
process cannot be taken back: that post stays, unrecorded, beside the second process's.
"""

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import aiohttp
from slack_sdk.errors import SlackApiError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.slack_client import PermanentFailure
from storage import message_queries
from storage.claims import ClaimLost
from storage.models import OutboxKind, OutboxState

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
BATCH_SIZE = 50

Send = Callable[[message_queries.ClaimedMessage, datetime], Awaitable[None]]
RecordFailure = Callable[[message_queries.ClaimedMessage, str, datetime], Awaitable[None]]


async def queue_posts(session: AsyncSession, *, message_ids: list[int], now: datetime) -> None:
    await _queue(session, OutboxKind.POST, message_ids, now)


async def queue_updates(session: AsyncSession, *, message_ids: list[int], now: datetime) -> int:
    """Queues a `chat.update` of each message, unless a call not yet picked up is already waiting
    (it will read the same state). Returns the number of calls queued."""
    if not message_ids:
        return 0
    waiting = await message_queries.bring_forward_waiting_calls(session, message_ids, now)
    needed = sorted(set(message_ids) - waiting)
    await _queue(session, OutboxKind.UPDATE, needed, now)
    return len(needed)


async def _queue(session: AsyncSession, kind: OutboxKind, message_ids: list[int], now: datetime) -> None:
    if message_ids:
        rows = [
            {"kind": kind, "message_id": message_id, "state": OutboxState.PENDING, "due_at": now, "attempts": 0}
            for message_id in message_ids
        ]
        await message_queries.insert_outbox_messages(session, [{**row, "created_at": now} for row in rows])


async def deliver_due_messages(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    send: Send,
    record_failure: RecordFailure,
    process_id: str,
    lease: timedelta,
    clock: Callable[[], datetime],
    stopping: Callable[[], bool],
    message_id: int | None = None,
) -> int:
    """Makes every due call that no other process holds, a claimed batch at a time, until none is
    left or `stopping()`; only the calls of `message_id` when given (the CLI sends what it queued
    and nothing else). Returns how many were handled."""
    handled = 0
    while True:
        now = clock()
        async with session_factory() as session, session.begin():
            claimed = await message_queries.claim_due_messages(
                session, now=now, process_id=process_id, until=now + lease, limit=BATCH_SIZE, message_id=message_id
            )
        if not claimed:
            return handled
        for message in claimed:
            if stopping():
                return handled  # the rest is handed back by `release_claims`
            await _deliver(message, session_factory, send, record_failure, clock())
            handled += 1


async def renew_claims(session_factory: async_sessionmaker[AsyncSession], *, process_id: str, until: datetime) -> None:
    async with session_factory() as session, session.begin():
        await message_queries.renew_claims(session, process_id=process_id, until=until)


async def release_claims(session_factory: async_sessionmaker[AsyncSession], *, process_id: str) -> None:
    """Hands back what this process claimed but did not send, for a clean shutdown."""
    async with session_factory() as session, session.begin():
        await message_queries.release_claims(session, process_id=process_id)


async def next_due_at(session_factory: async_sessionmaker[AsyncSession], now: datetime) -> datetime | None:
    async with session_factory() as session, session.begin():
        return await message_queries.next_message_due_at(session, now)


async def _deliver(
    message: message_queries.ClaimedMessage,
    session_factory: async_sessionmaker[AsyncSession],
    send: Send,
    record_failure: RecordFailure,
    now: datetime,
) -> None:
    try:
        await _make_call(message, session_factory, send, record_failure, now)
    except ClaimLost:
        logger.warning(
            "the %s of message %s was taken over by another process while this one was making it (this"
            " process's claim ran out): its outcome here is not recorded",
            message.kind,
            message.message_id,
        )


async def _make_call(
    message: message_queries.ClaimedMessage,
    session_factory: async_sessionmaker[AsyncSession],
    send: Send,
    record_failure: RecordFailure,
    now: datetime,
) -> None:
    try:
        await send(message, now)
    except PermanentFailure as failure:
        async with session_factory() as session, session.begin():
            await message_queries.mark_failed(session, message, str(failure))
        await record_failure(message, str(failure), now)
    except (TimeoutError, SlackApiError, aiohttp.ClientError) as error:
        await _retry_later(session_factory, message, _describe(error), now)
    except ClaimLost:
        raise  # `send` could not record what Slack answered: not a failure of the call to retry
    except Exception:
        logger.exception(
            "unexpected error making the %s of message %s; it will be retried", message.kind, message.message_id
        )
        await _retry_later(session_factory, message, "unexpected error (see the log)", now)


async def _retry_later(
    session_factory: async_sessionmaker[AsyncSession],
    claimed: message_queries.ClaimedMessage,
    reason: str,
    now: datetime,
) -> None:
    async with session_factory() as session, session.begin():
        message = await message_queries.held_call(session, claimed)
        message.attempts += 1
        message.last_error = reason
        message.claimed_by = None
        message.claimed_until = None
        if message.attempts >= MAX_ATTEMPTS:
            message.state = OutboxState.FAILED
            logger.error(
                "giving up on the %s of message %s after %d attempts: %s",
                message.kind,
                message.message_id,
                message.attempts,
                reason,
            )
        else:
            message.due_at = now + backoff(message.attempts)
            logger.warning(
                "the %s of message %s failed (%s); retrying at %s",
                message.kind,
                message.message_id,
                reason,
                message.due_at.isoformat(),
            )


def backoff(attempts: int) -> timedelta:
    """10 s, 20 s, 40 s … up to 30 minutes between tries (the CRM jobs wait the same way)."""
    return min(timedelta(seconds=10 * 2 ** min(attempts - 1, 8)), timedelta(minutes=30))


def _describe(error: Exception) -> str:
    if isinstance(error, SlackApiError):
        return f"Slack answered {error.response.status_code}: {error.response.get('error')}"
    return f"{type(error).__name__}: {error}"
