"""The background workers that call the CRMs' APIs (see `bot.worker`): the CRM jobs (deal fetches,
write-backs), and beside them the sweep, in a task of its own so that a long sweep never holds up
the fetch a webhook is waiting for. Both use one HTTP session, open while the CRM worker runs."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.api import Connector, ListDealChanges
from bot.crm.connectors import build_connectors
from bot.crm.event import DealEvent
from bot.ingest import IngestQueue, Receipt
from bot.reasons import Catalogue
from bot.services import crm_jobs, sweeps
from bot.settings import Settings
from bot.worker import Worker


class SweepWorker(Worker):
    """Sweeps each connected CRM when its sweep falls due (`bot.services.sweeps`)."""

    def __init__(
        self,
        *,
        session_factory: async_sessionmaker[AsyncSession],
        policy: sweeps.SweepPolicy,
        record: Callable[[list[DealEvent]], Awaitable[Receipt]],
        clock: Callable[[], datetime],
        process_id: str,
    ) -> None:
        super().__init__(name="sweep of the CRMs", clock=clock)
        self._session_factory = session_factory
        self._policy = policy
        self._record = record
        self._process_id = process_id
        self._crms: Mapping[str, ListDealChanges] = {}

    async def sweep(self, crms: Mapping[str, ListDealChanges]) -> None:
        """Runs until stopped, sweeping these CRMs (source to its listing)."""
        self._crms = crms
        await self.run()

    async def _work_round(self) -> None:
        await sweeps.sweep_due_crms(
            session_factory=self._session_factory,
            crms=self._crms,
            record=self._record,
            policy=self._policy,
            process_id=self._process_id,
            clock=self._clock,
            stopping=lambda: self._stopping,
        )

    async def _next_due_at(self, now: datetime) -> datetime | None:
        return await sweeps.next_sweep_at(self._session_factory, list(self._crms), now)


class CrmJobWorker(Worker):
    def __init__(
        self,
        *,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        catalogue: Catalogue,
        clock: Callable[[], datetime],
        ingest: IngestQueue,
        sweeper: SweepWorker | None,
        process_id: str,
    ) -> None:
        super().__init__(name="run of CRM jobs", clock=clock)
        self._settings = settings
        self._process_id = process_id
        self._session_factory = session_factory
        self._catalogue = catalogue
        self._ingest = ingest
        self._sweeper = sweeper
        self._connectors: Mapping[str, Connector] = {}

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.stop()
        super().stop()

    async def run(self) -> None:
        # One HTTP client for every CRM call, open for as long as the worker runs.
        async with aiohttp.ClientSession() as http:
            self._connectors = build_connectors(self._settings, http)
            crms = {source: connector.list_changes for source, connector in self._connectors.items()}
            if self._sweeper is None or not crms:
                await super().run()
                return
            sweeping = asyncio.create_task(self._sweeper.sweep(crms), name="crm-sweeps")
            try:
                await super().run()
                await sweeping
            finally:
                sweeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeping

    async def _work_round(self) -> None:
        await crm_jobs.run_due_jobs(
            session_factory=self._session_factory,
            connectors=self._connectors,
            catalogue=self._catalogue,
            clock=self._clock,
            record=self._ingest.submit,
            process_id=self._process_id,
        )

    async def _next_due_at(self, now: datetime) -> datetime | None:
        return await crm_jobs.next_due_at(self._session_factory, now)
