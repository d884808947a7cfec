"""Background workers that make the calls the database holds: the Slack outbox here, the CRM jobs in
`bot.crm_worker`. Each works in rounds: when kicked (after a transaction that queued work has
committed), when the next piece of work falls due, and at least every IDLE_WAKE_SECONDS, for work
left behind by a process that stopped."""

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.services import outbox
from bot.services.delivery import SlackDelivery

logger = logging.getLogger(__name__)

IDLE_WAKE_SECONDS = 30.0


class Worker(ABC):
    def __init__(self, *, name: str, clock: Callable[[], datetime]) -> None:
        self._name = name
        self._clock = clock
        self._wake = asyncio.Event()
        self._stopping = False

    def kick(self) -> None:
        """Work soon: called after a transaction that queued work has committed."""
        self._wake.set()

    def stop(self) -> None:
        """Finish what is under way, then return from `run`."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            # Cleared before working, so a kick that arrives meanwhile starts another round.
            self._wake.clear()
            try:
                await self._work_round()
                wait = await self._seconds_until_next_due()
            except Exception:
                logger.exception("the %s failed; trying again shortly", self._name)
                wait = IDLE_WAKE_SECONDS
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    @abstractmethod
    async def _work_round(self) -> None:
        """Does all the work due now that no other process holds, unless stopping."""

    @abstractmethod
    async def _next_due_at(self, now: datetime) -> datetime | None:
        """When work this process could take next falls due; None when none is waiting."""

    async def _seconds_until_next_due(self) -> float:
        now = self._clock()
        due_at = await self._next_due_at(now)
        if due_at is None:
            return IDLE_WAKE_SECONDS
        return min(max((due_at - now).total_seconds(), 0.05), IDLE_WAKE_SECONDS)


class OutboxWorker(Worker):
    """Sends the Slack messages the outbox holds."""

    def __init__(self, *, delivery: SlackDelivery, process_id: str, lease: timedelta) -> None:
        super().__init__(name="delivery of queued Slack messages", clock=delivery.clock)
        self._delivery = delivery
        self._process_id = process_id
        self._lease = lease

    async def run(self) -> None:
        await super().run()
        try:
            await outbox.release_claims(self._delivery.session_factory, process_id=self._process_id)
        except Exception:
            # The claims then run out by themselves, within three scheduler ticks.
            logger.exception("handing back this process's unsent messages failed")

    async def _work_round(self) -> None:
        delivery = self._delivery
        await outbox.deliver_due_messages(
            session_factory=delivery.session_factory,
            send=delivery.send,
            record_failure=delivery.record_failure,
            process_id=self._process_id,
            lease=self._lease,
            clock=delivery.clock,
            stopping=lambda: self._stopping,
        )

    async def _next_due_at(self, now: datetime) -> datetime | None:
        return await outbox.next_due_at(self._delivery.session_factory, now)
