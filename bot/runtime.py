"""What listeners and routes need at run time, built once by the app factory."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm_worker import CrmJobWorker
from bot.ingest import IngestQueue
from bot.metrics import Metrics
from bot.reasons import Catalogue
from bot.services.debriefs import Audience
from bot.services.health import HealthCheck
from bot.services.home import HomePublisher
from bot.services.managers import Managers
from bot.settings import Settings
from bot.slack_socket import SlackSocket
from bot.worker import OutboxWorker

# POSIX-style name: "GMT+12" is twelve hours behind UTC.
EARLIEST_ZONE = ZoneInfo("Etc/GMT+12")


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    session_factory: async_sessionmaker[AsyncSession]
    read_session_factory: async_sessionmaker[AsyncSession]
    """For work that only reads: on SQLite its own connections, which read beside a write under
    way (or a lock another process holds) instead of waiting for it; else `session_factory`."""
    slack: AsyncWebClient
    slack_socket: SlackSocket | None
    """The Socket Mode connection, when SLACK_APP_TOKEN is set."""
    catalogue: Catalogue
    competitor_merges: Mapping[str, str]
    """COMPETITORS_FILE: an alias's key → its name's key (bot.competitors)."""
    worker: OutboxWorker
    ingest: IngestQueue
    crm_jobs: CrmJobWorker
    write_back_sources: frozenset[str]
    """The CRMs a logged reason is written back to."""
    audience: Audience
    """The channels a logged reason is announced in (debriefs, REASON_ROUTES)."""
    managers: Managers
    """Who may re-code a rep's reasons (ADMIN_USERS, TEAM_FILE)."""
    home: HomePublisher
    metrics: Metrics
    """This app's own counters (METRICS_PORT)."""
    health: HealthCheck
    """Probes the database for `GET /healthz`, on connections of its own."""
    clock: Callable[[], datetime]

    def today(self) -> date:
        """Today in the team's time zone."""
        return self.clock().astimezone(self.settings.tz).date()

    def earliest_today(self) -> date:
        """The date it still is somewhere on Earth (UTC−12). A date before it is in the past for
        every rep, wherever they work, which the team's own `today` cannot promise."""
        return self.clock().astimezone(EARLIEST_ZONE).date()


RUNTIME = web.AppKey("runtime", Runtime)
