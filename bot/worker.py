"""The background task that drains the outbox: woken when calls are queued, and on a timer for
retries and for calls left behind by a process that stopped."""

import asyncio
import logging
from datetime import timedelta

from bot.services import outbox
from bot.services.messages import SlackDelivery

logger = logging.getLogger(__name__)

IDLE_WAKE_SECONDS = 30.0


class OutboxWorker:
    def __init__(self, *, delivery: SlackDelivery, process_id: str, lease: timedelta) -> None:
        self._delivery = delivery
        self._process_id = process_id
        self._lease = lease
        self._wake = asyncio.Event()
        self._stopping = False

    def kick(self) -> None:
        """Deliver soon: called after a transaction that queued calls has committed."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the current round, then return from `run`."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        delivery = self._delivery
        while not self._stopping:
            # Cleared before delivering, so a kick that arrives during delivery starts another round.
            self._wake.clear()
            try:
                await outbox.deliver_due_messages(
                    session_factory=delivery.session_factory,
                    send=delivery.send,
                    record_failure=delivery.record_failure,
                    process_id=self._process_id,
                    lease=self._lease,
                    clock=delivery.clock,
                    stopping=lambda: self._stopping,
                )
                wait = await self._seconds_until_next_due()
            except Exception:
                logger.exception("delivering queued Slack messages failed; trying again shortly")
                wait = IDLE_WAKE_SECONDS
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass
        try:
            await outbox.release_claims(delivery.session_factory, process_id=self._process_id)
        except Exception:
            # The claims then run out by themselves, within three scheduler ticks.
            logger.exception("handing back this process's unsent messages failed")

    async def _seconds_until_next_due(self) -> float:
        now = self._delivery.clock()
        due_at = await outbox.next_due_at(self._delivery.session_factory, now)
        if due_at is None:
            return IDLE_WAKE_SECONDS
        return min(max((due_at - now).total_seconds(), 0.05), IDLE_WAKE_SECONDS)
