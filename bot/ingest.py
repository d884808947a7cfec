"""Group commit for the deal webhooks: the events of requests that arrive together are written in
one transaction.

A transaction costs a few milliseconds however few rows it writes, so one transaction per request
would cap a burst of single-event requests at a few hundred a second. Requests that arrive while a
transaction is being written wait for the next one, which takes them all. Each request still gets
its own answer, and only once the transaction holding its events has committed.

A webhook waits for its answer at most ANSWER_WITHIN_SECONDS (`submit_within`), so that a CRM is
answered in time while the database is locked or down.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.event import DealEvent
from bot.metrics import Metrics
from bot.outage import DatabaseOutage
from bot.services.deal_events import PromptPolicy, record_deal_events
from storage.faults import database_unreachable

logger = logging.getLogger(__name__)

MAX_EVENTS_PER_TRANSACTION = 2000
# How long a webhook waits for its events to be stored before it is answered 503 ("send them
# again"), rather than for as long as a lock is held. Salesforce waits 60 s for an answer and
# Pipedrive 10 s (https://pipedrive.readme.io/docs/guide-for-webhooks-v2, "Retry logic"); HubSpot's
# timeout is not documented (said to be 5 s). A CRM that gives up first retries as it does after a
# 503, and a retry is deduplicated either way.
ANSWER_WITHIN_SECONDS = 10.0


class IngestFailed(Exception):
    """The events could not be stored; nothing of them was, and the sender should retry."""


@dataclass(frozen=True)
class Receipt:
    accepted: int
    duplicates: int
    stage_changes: int
    """Events that moved their deal to another stage (see `IngestResult.stage_changes`)."""


# Compared by identity: two requests with the same events are still two requests.
@dataclass(frozen=True, eq=False)
class _Request:
    events: list[DealEvent]
    answer: "asyncio.Future[Receipt]"


class IngestQueue:
    def __init__(
        self,
        *,
        session_factory: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime],
        policy: PromptPolicy,
        on_messages_queued: Callable[[], None],
        on_losses_opened: Callable[[], None],
        metrics: Metrics,
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self._policy = policy
        self._on_messages_queued = on_messages_queued
        self._on_losses_opened = on_losses_opened
        self._metrics = metrics
        self._waiting: list[_Request] = []
        self._wake = asyncio.Event()
        self._outage = DatabaseOutage(
            logger, what="storing deal events", meanwhile="the webhooks answer 503 (send them again)"
        )

    async def submit(self, events: list[DealEvent]) -> Receipt:
        """Stores the events (with whatever else is waiting) and returns once they are committed."""
        return await self._enqueue(events).answer

    async def submit_within(self, events: list[DealEvent], seconds: float) -> Receipt:
        """`submit`, but raises IngestFailed when the events are not committed within `seconds`.

        A request still waiting for its turn is withdrawn then, and nothing of it is stored. A
        request whose transaction is already being written cannot be stopped (a SQLite call cannot
        be interrupted, nor a COMMIT already sent recalled): it may still commit after the sender
        was told to retry, and the retry is then counted as duplicates by the events' idempotency
        keys, so the events have one effect either way.
        """
        request = self._enqueue(events)
        try:
            async with asyncio.timeout(seconds):
                # On timeout this cancels the future: `_write` leaves a cancelled request unanswered,
                # and does not try it again on its own.
                return await request.answer
        except TimeoutError:
            withdrawn = request in self._waiting
            self._waiting = [waiting for waiting in self._waiting if waiting is not request]
            if withdrawn:
                outcome = "nothing of them will be stored"
            else:
                outcome = "their transaction is under way: if it commits, the retry counts as duplicates"
            logger.warning(
                "%d deal events were not stored within %g s (the database is slow or locked); their sender is"
                " told to retry, and %s",
                len(events),
                seconds,
                outcome,
            )
            raise IngestFailed() from None

    def _enqueue(self, events: list[DealEvent]) -> _Request:
        request = _Request(events, asyncio.get_running_loop().create_future())
        self._waiting.append(request)
        self._wake.set()
        return request

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                await self._write(self._take())

    def _take(self) -> list[_Request]:
        """The oldest waiting requests, up to MAX_EVENTS_PER_TRANSACTION events (at least one request)."""
        batch: list[_Request] = []
        count = 0
        for request in self._waiting:
            if batch and count + len(request.events) > MAX_EVENTS_PER_TRANSACTION:
                break
            batch.append(request)
            count += len(request.events)
        self._waiting = self._waiting[len(batch) :]
        return batch

    async def _write(self, batch: list[_Request]) -> None:
        events = [event for request in batch for event in request.events]
        try:
            result = await record_deal_events(
                session_factory=self._session_factory, events=events, received_at=self._clock(), policy=self._policy
            )
        except Exception as error:
            if len(batch) > 1 and not database_unreachable(error):
                # One request's events must not fail the others that shared its transaction. A
                # request whose sender stopped waiting (`submit_within`) was answered 503 with
                # nothing stored, which stays true.
                for request in batch:
                    if not request.answer.done():
                        await self._write([request])
                return
            # An unreachable database fails every request alike: each is told to retry, at once.
            if not self._outage.failed(error):
                logger.exception("storing %d deal events failed; their sender is told to retry", len(events))
            for request in batch:
                if not request.answer.done():
                    request.answer.set_exception(IngestFailed())
            return
        self._outage.succeeded()
        if result.messages_queued:
            self._on_messages_queued()
        if result.losses_opened:
            self._metrics.losses_opened.inc(result.losses_opened)
            self._on_losses_opened()
        start = 0
        for request in batch:
            end = start + len(request.events)
            flags, moves = result.is_new[start:end], result.stage_changes[start:end]
            start = end
            if not request.answer.done():
                request.answer.set_result(
                    Receipt(accepted=sum(flags), duplicates=len(flags) - sum(flags), stage_changes=sum(moves))
                )
