"""Group commit for the deal webhooks: the events of requests that arrive together are written in
one transaction.

A transaction costs a few milliseconds however few rows it writes, so one transaction per request
would cap a burst of single-event requests at a few hundred a second. Requests that arrive while a
transaction is being written wait for the next one, which takes them all. Each request still gets
its own answer, and only once the transaction holding its events has committed.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.event import DealEvent
from bot.metrics import Metrics
from bot.services.deal_events import PromptPolicy, record_deal_events

logger = logging.getLogger(__name__)

MAX_EVENTS_PER_TRANSACTION = 2000


class IngestFailed(Exception):
    """The events could not be stored; nothing of them was, and the sender should retry."""


@dataclass(frozen=True)
class Receipt:
    accepted: int
    duplicates: int
    stage_changes: int
    """Events that moved their deal to another stage (see `IngestResult.stage_changes`)."""


@dataclass(frozen=True)
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

    async def submit(self, events: list[DealEvent]) -> Receipt:
        """Stores the events (with whatever else is waiting) and returns once they are committed."""
        request = _Request(events, asyncio.get_running_loop().create_future())
        self._waiting.append(request)
        self._wake.set()
        return await request.answer

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
        except Exception:
            if len(batch) > 1:
                # One request's events must not fail the others that shared its transaction.
                for request in batch:
                    await self._write([request])
                return
            logger.exception("storing %d deal events failed; their sender is told to retry", len(events))
            if not batch[0].answer.done():
                batch[0].answer.set_exception(IngestFailed())
            return
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
