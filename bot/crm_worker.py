"""The background worker that runs the CRM jobs (deal fetches, write-backs); see `bot.worker`."""

from collections.abc import Callable, Mapping
from datetime import datetime

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.api import Connector
from bot.crm.connectors import build_connectors
from bot.ingest import IngestQueue
from bot.reasons import Catalogue
from bot.services import crm_jobs
from bot.settings import Settings
from bot.worker import Worker


class CrmJobWorker(Worker):
    def __init__(
        self,
        *,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        catalogue: Catalogue,
        clock: Callable[[], datetime],
        ingest: IngestQueue,
        process_id: str,
    ) -> None:
        super().__init__(name="run of CRM jobs", clock=clock)
        self._settings = settings
        self._process_id = process_id
        self._session_factory = session_factory
        self._catalogue = catalogue
        self._ingest = ingest
        self._connectors: Mapping[str, Connector] = {}

    async def run(self) -> None:
        # One HTTP client for every CRM call, open for as long as the worker runs.
        async with aiohttp.ClientSession() as http:
            self._connectors = build_connectors(self._settings, http)
            await super().run()

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
