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
from storage.faults import database_unreachable, describe

logger = logging.getLogger(__name__)

IDLE_WAKE_SECONDS = 30.0
OUTAGE_RETRY_SECONDS = 5.0
"""How soon a worker tries again while the database is unreachable."""


class Worker(ABC):
    def __init__(self, *, name: str, clock: Callable[[], datetime]) -> None:
        self._name = name
        self._clock = clock
        self._wake = asyncio.Event()
        self._stopping = False
        self._outage_since: datetime | None = None

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
            except Exception as error:
                wait = self._failed(error)
            else:
                self._recovered()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    def _failed(self, error: Exception) -> float:
        """Reports a failed round, and returns how long to wait before the next. An unreachable
        database is an outage: one warning when it starts (and one when it ends, `_recovered`),
        not one per round; anything else is a fault, reported with its traceback each time."""
        if database_unreachable(error):
            if self._outage_since is None:
                self._outage_since = self._clock()
                logger.warning(
                    "the %s stopped: the database is unreachable (%s); trying again every %g s until it is back",
                    self._name,
                    describe(error),
                    OUTAGE_RETRY_SECONDS,
                )
            return OUTAGE_RETRY_SECONDS
        logger.exception("the %s failed (%s); trying again in %g s", self._name, describe(error), IDLE_WAKE_SECONDS)
        return IDLE_WAKE_SECONDS

    def _recovered(self) -> None:
        if self._outage_since is not None:
            logger.warning(
                "the %s resumed: the database is reachable again (it was not for %.0f s)",
                self._name,
                (self._clock() - self._outage_since).total_seconds(),
            )
            self._outage_since = None

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
        self._in_flight: set[int] = set()
        self._slack_outage = outbox.SlackOutage()

    def calls_in_flight(self) -> frozenset[int]:
        """The outbox calls this process has claimed and is making: the claims the scheduler renews."""
        return frozenset(self._in_flight)

    async def run(self) -> None:
        await super().run()
        try:
            await outbox.release_claims(self._delivery.session_factory, process_id=self._process_id)
        except Exception as error:
            # The claims then run out by themselves, within three scheduler ticks.
            if not database_unreachable(error):
                logger.exception("handing back this process's unsent messages failed")
                return
            logger.warning(
                "handing back this process's unsent messages failed (%s); another process sends them once"
                " this one's claims run out",
                describe(error),
            )

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
            in_flight=self._in_flight,
            woken=self._wake,
            slack_outage=self._slack_outage,
        )

    async def _next_due_at(self, now: datetime) -> datetime | None:
        return await outbox.next_due_at(self._delivery.session_factory, now)
