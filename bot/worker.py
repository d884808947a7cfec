"""The background task that drains the outbox: woken when messages are queued, and on a timer for
retries and for messages left behind by a process that stopped."""

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.reasons import Catalogue
from bot.services import outbox

logger = logging.getLogger(__name__)

IDLE_WAKE_SECONDS = 30.0


class OutboxWorker:
    def __init__(
        self,
        *,
        session_factory: async_sessionmaker[AsyncSession],
        slack: AsyncWebClient,
        catalogue: Catalogue,
        clock: Callable[[], datetime],
    ) -> None:
        self._session_factory = session_factory
        self._slack = slack
        self._catalogue = catalogue
        self._clock = clock
        self._wake = asyncio.Event()
        self._stopping = False

    def kick(self) -> None:
        """Deliver soon: called after a transaction that queued messages has committed."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the current round, then return from `run`."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            # Cleared before delivering, so a kick that arrives during delivery starts another round.
            self._wake.clear()
            try:
                await outbox.deliver_due_messages(
                    session_factory=self._session_factory,
                    slack=self._slack,
                    catalogue=self._catalogue,
                    clock=self._clock,
                )
                wait = await self._seconds_until_next_due()
            except Exception:
                logger.exception("delivering queued Slack messages failed; trying again shortly")
                wait = IDLE_WAKE_SECONDS
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    async def _seconds_until_next_due(self) -> float:
        now = self._clock()
        due_at = await outbox.next_due_at(self._session_factory, now)
        if due_at is None:
            return IDLE_WAKE_SECONDS
        return min(max((due_at - now).total_seconds(), 0.05), IDLE_WAKE_SECONDS)
