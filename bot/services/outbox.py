"""Every Slack call the bot owes goes through here: recorded first, made by `deliver_due_messages`.

An outbox row is written in the same transaction as the change that calls for it, so a crash never
loses one. Delivering claims the row in the database first, for this process and for a lease that
the scheduler renews every tick while the call is under way (`renew_claims` of the ids
`deliver_due_messages` keeps in flight): two processes never send the same row, and the
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

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta
from functools import partial

import aiohttp
from slack_sdk.errors import SlackApiError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.slack_client import PermanentFailure
from storage import message_queries
from storage.claims import ClaimLost
from storage.faults import database_unreachable, describe
from storage.models import OutboxKind, OutboxState

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
BATCH_SIZE = 50
"""Calls a process holds claimed at a time."""
CONCURRENCY = 8
"""Calls made at once, each to a different conversation. Slack allows about one message a second
per conversation and more across them (https://docs.slack.dev/apis/web-api/rate-limits); a 429
is waited out inside the Slack client."""
POLL_SECONDS = 1.0
"""While calls are under way, how often to look for more that fell due."""

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
    in_flight: set[int] | None = None,
    woken: asyncio.Event | None = None,
    slack_outage: "SlackOutage | None" = None,
) -> int:
    """Makes every due call that no other process holds until none is left or `stopping()`; only
    the calls of `message_id` when given (the CLI sends what it queued and nothing else). Returns
    how many were handled.

    Calls to different conversations are made at once, up to CONCURRENCY at a time, so that one
    slow conversation holds up only itself; the calls to one conversation are made in order.
    While calls are under way, more are claimed as they fall due (when `woken` is set, and every
    POLL_SECONDS). `in_flight` holds, meanwhile, the ids of the calls claimed and not yet done:
    the only claims the scheduler renews. When a call cannot be recorded (the database is down),
    no more are claimed, what this process claimed and did not make is handed back (as far as the
    database lets it: claims it cannot hand back run out within the lease, as nothing renews
    them), and the error is raised once the calls under way are done. `slack_outage` carries, from
    one call to the next, whether Slack is failing every call (see SlackOutage).
    """
    lanes = _Lanes(
        make_call=partial(
            _deliver,
            session_factory=session_factory,
            send=send,
            record_failure=record_failure,
            clock=clock,
            slack_outage=slack_outage or SlackOutage(),
        ),
        in_flight=in_flight if in_flight is not None else set(),
        stopping=stopping,
    )
    try:
        while not stopping() and lanes.error is None:
            if woken is not None:
                woken.clear()
            now = clock()
            room = BATCH_SIZE - lanes.held
            if room > 0:
                async with session_factory() as session, session.begin():
                    claimed = await message_queries.claim_due_messages(
                        session, now=now, process_id=process_id, until=now + lease, limit=room, message_id=message_id
                    )
                for message in claimed:
                    lanes.add(message)
                if len(claimed) == room:
                    continue  # more may be due: claimed as soon as there is room
            if not lanes.busy:
                break
            await lanes.wait_for_progress(woken, POLL_SECONDS)
    except asyncio.CancelledError:
        # Cut off (a shutdown past its grace): so are the calls under way, and their claims run out.
        lanes.cancel()
        raise
    finally:
        await lanes.finish()
        if not lanes.cancelled:
            await _hand_back(session_factory, process_id, lanes.unsent)
    if lanes.error is not None:
        raise lanes.error
    return lanes.handled


class _Lanes:
    """One queue of claimed calls per conversation, each made in order by its own task, with at
    most CONCURRENCY calls under way at once."""

    def __init__(
        self,
        *,
        make_call: Callable[[message_queries.ClaimedMessage], Awaitable[None]],
        in_flight: set[int],
        stopping: Callable[[], bool],
    ) -> None:
        self._make_call = make_call
        self._in_flight = in_flight
        self._stopping = stopping
        self._queues: dict[str, deque[message_queries.ClaimedMessage]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._progress = asyncio.Event()
        self.handled = 0
        self.unsent: list[message_queries.ClaimedMessage] = []
        """Calls claimed and not made: after an error, or when stopping."""
        self.error: Exception | None = None
        self.cancelled = False

    @property
    def held(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def add(self, message: message_queries.ClaimedMessage) -> None:
        if message.id in self._in_flight:
            # Claimed again by this process: its claim ran out while the call was held here (nothing
            # renewed it: the database was locked or down for the lease). Renewed so; made once.
            return
        self._in_flight.add(message.id)
        queue = self._queues.get(message.conversation)
        if queue is not None:
            queue.append(message)
            return
        self._queues[message.conversation] = deque([message])
        task = asyncio.create_task(self._run(message.conversation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, conversation: str) -> None:
        queue = self._queues[conversation]
        try:
            while queue and self.error is None and not self._stopping():
                async with self._slots:
                    if self._stopping():
                        break  # the call waited for a slot: not made, as stopping starts none
                    await self._make_call(queue[0])
                self._in_flight.discard(queue.popleft().id)
                self.handled += 1
                self._progress.set()
        except Exception as error:
            self.error = self.error or error
        finally:
            # Nothing awaited between finding the queue empty and removing it: `add` sees one or the other.
            del self._queues[conversation]
            self.unsent.extend(queue)
            self._in_flight.difference_update(message.id for message in queue)
            self._progress.set()

    async def wait_for_progress(self, woken: asyncio.Event | None, seconds: float) -> None:
        """Returns when a call is done, when `woken` is set, or after `seconds`."""
        self._progress.clear()
        waits = [asyncio.create_task(self._progress.wait())]
        if woken is not None:
            waits.append(asyncio.create_task(woken.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def cancel(self) -> None:
        self.cancelled = True
        for task in self._tasks:
            task.cancel()

    async def finish(self) -> None:
        """Waits for the calls under way: a call cut off half way would leave its outcome unknown."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))


async def _hand_back(
    session_factory: async_sessionmaker[AsyncSession], process_id: str, unsent: list[message_queries.ClaimedMessage]
) -> None:
    """Best effort: when the database refuses, the claims run out by themselves (nothing renews them)."""
    if not unsent:
        return
    try:
        async with session_factory() as session, session.begin():
            await message_queries.release_claims(
                session, process_id=process_id, outbox_ids=[message.id for message in unsent]
            )
    except Exception as error:
        if not database_unreachable(error):
            raise


async def renew_claims(
    session_factory: async_sessionmaker[AsyncSession], *, process_id: str, outbox_ids: Collection[int], until: datetime
) -> None:
    """Extends this process's claims on the calls it is making (`deliver_due_messages`'s `in_flight`)."""
    if not outbox_ids:
        return
    async with session_factory() as session, session.begin():
        await message_queries.renew_claims(session, process_id=process_id, outbox_ids=outbox_ids, until=until)


async def release_claims(session_factory: async_sessionmaker[AsyncSession], *, process_id: str) -> None:
    """Hands back what this process claimed but did not send, for a clean shutdown."""
    async with session_factory() as session, session.begin():
        await message_queries.release_claims(session, process_id=process_id)


async def next_due_at(session_factory: async_sessionmaker[AsyncSession], now: datetime) -> datetime | None:
    async with session_factory() as session, session.begin():
        return await message_queries.next_message_due_at(session, now)


async def _deliver(
    message: message_queries.ClaimedMessage,
    *,
    session_factory: async_sessionmaker[AsyncSession],
    send: Send,
    record_failure: RecordFailure,
    clock: Callable[[], datetime],
    slack_outage: "SlackOutage",
) -> None:
    try:
        await _make_call(message, session_factory, send, record_failure, clock, slack_outage)
    except ClaimLost:
        logger.warning(
            "the %s of message %s was taken over by another process while this one was making it (this"
            " process's claim ran out): its outcome here is not recorded; the other process records its own",
            message.kind,
            message.message_id,
        )


async def _make_call(
    message: message_queries.ClaimedMessage,
    session_factory: async_sessionmaker[AsyncSession],
    send: Send,
    record_failure: RecordFailure,
    clock: Callable[[], datetime],
    slack_outage: "SlackOutage",
) -> None:
    try:
        await send(message, clock())
        slack_outage.answered()
    except PermanentFailure as failure:
        slack_outage.answered()
        async with session_factory() as session, session.begin():
            await message_queries.mark_failed(session, message, str(failure))
        await record_failure(message, str(failure), clock())
    except (TimeoutError, SlackApiError, aiohttp.ClientError) as error:
        # While Slack fails every call, the first failure is a warning and the rest are told at INFO.
        if slack_failing(error):
            quiet = not slack_outage.failed()
        else:
            slack_outage.answered()
            quiet = False
        level = logging.INFO if quiet else logging.WARNING
        await _retry_later(session_factory, message, describe_slack_error(error), clock(), level=level)
    except ClaimLost:
        raise  # `send` could not record what Slack answered: not a failure of the call to retry
    except Exception as error:
        if database_unreachable(error):
            raise  # an outage, reported once by the worker; the call is handed back
        logger.exception(
            "unexpected error making the %s of message %s; it will be retried", message.kind, message.message_id
        )
        await _retry_later(session_factory, message, f"unexpected error ({describe(error)}; see the log)", clock())


async def _retry_later(
    session_factory: async_sessionmaker[AsyncSession],
    claimed: message_queries.ClaimedMessage,
    reason: str,
    now: datetime,
    *,
    level: int = logging.WARNING,
) -> None:
    """Records a failed try; `now` is when it failed, so the retry time logged is after the log line's."""
    async with session_factory() as session, session.begin():
        message = await message_queries.held_call(session, claimed)
        message.attempts += 1
        message.last_error = reason
        message.claimed_by = None
        message.claimed_until = None
        if message.attempts >= MAX_ATTEMPTS:
            message.state = OutboxState.FAILED
            logger.error(
                "giving up on the %s of message %s after %d attempts: %s; it is not retried (the admin view"
                " lists it, and can queue it again)",
                message.kind,
                message.message_id,
                message.attempts,
                reason,
            )
        else:
            message.due_at = now + backoff(message.attempts)
            logger.log(
                level,
                "the %s of message %s failed (%s); retrying at %s",
                message.kind,
                message.message_id,
                reason,
                message.due_at.isoformat(),
            )


class SlackOutage:
    """Whether Slack is failing the calls made to it (5xx, answers that are not JSON, timeouts,
    dropped connections), so that an outage is logged as one warning when a call first fails and
    one when a call next succeeds, not one per call."""

    def __init__(self) -> None:
        self._failed_calls = 0

    def failed(self) -> bool:
        """Counts a call Slack failed; True for the first since a call last succeeded."""
        self._failed_calls += 1
        return self._failed_calls == 1

    def answered(self) -> None:
        if self._failed_calls > 1:
            logger.warning(
                "Slack answers again; the %d calls it failed meanwhile are retried at the times logged",
                self._failed_calls,
            )
        self._failed_calls = 0


def slack_failing(error: Exception) -> bool:
    """Whether `error` is Slack (or the way to it) failing, rather than an answer about this call."""
    if isinstance(error, SlackApiError):
        return error.response.status_code >= 500 or not isinstance(error.response.data, dict)
    return True


def backoff(attempts: int) -> timedelta:
    """10 s, 20 s, 40 s … up to 30 minutes between tries (the CRM jobs wait the same way)."""
    return min(timedelta(seconds=10 * 2 ** min(attempts - 1, 8)), timedelta(minutes=30))


def describe_slack_error(error: Exception) -> str:
    """Why a Slack call failed, never empty: what Slack answered, or what went wrong on the way."""
    if isinstance(error, SlackApiError):
        status = error.response.status_code
        data = error.response.data
        if not isinstance(data, dict):
            return f"Slack answered HTTP {status} with a body that is not JSON: {str(data)[:80]!r}"
        code = data.get("error")
        if code is None:
            return f"Slack answered HTTP {status} with ok: false and no error code"
        return f"Slack answered HTTP {status}: {code}"
    if isinstance(error, TimeoutError):
        return "Slack did not answer in time (TimeoutError)"
    return describe(error)
