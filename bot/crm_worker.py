"""The background task that runs the CRM jobs (deal fetches, write-backs): woken when a job is
queued, and on a timer for retries and for jobs left behind by a process that stopped."""

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.connectors import build_connectors
from bot.ingest import IngestQueue
from bot.reasons import Catalogue
from bot.services import crm_jobs
from bot.settings import Settings

logger = logging.getLogger(__name__)

IDLE_WAKE_SECONDS = 30.0


class CrmJobWorker:
    def __init__(
        self,
        *,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        catalogue: Catalogue,
        clock: Callable[[], datetime],
        ingest: IngestQueue,
    ) -> None:
        self._settings = settings
        self._session_factory = session_factory
        self._catalogue = catalogue
        self._clock = clock
        self._ingest = ingest
        self._wake = asyncio.Event()
        self._stopping = False

    def kick(self) -> None:
        """Run jobs soon: called after a transaction that queued one has committed."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the current round, then return from `run`."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as http:
            connectors = build_connectors(self._settings, http)
            while not self._stopping:
                self._wake.clear()
                try:
                    await crm_jobs.run_due_jobs(
                        session_factory=self._session_factory,
                        connectors=connectors,
                        catalogue=self._catalogue,
                        clock=self._clock,
                        record=self._ingest.submit,
                    )
                    wait = await self._seconds_until_next_due()
                except Exception:
                    logger.exception("running CRM jobs failed; trying again shortly")
                    wait = IDLE_WAKE_SECONDS
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                except TimeoutError:
                    pass

    async def _seconds_until_next_due(self) -> float:
        now = self._clock()
        due_at = await crm_jobs.next_due_at(self._session_factory, now)
        if due_at is None:
            return IDLE_WAKE_SECONDS
        return min(max((due_at - now).total_seconds(), 0.05), IDLE_WAKE_SECONDS)
