"""The app factory: builds the Bolt app, the aiohttp server and the outbox worker from settings.

Nothing is built at import time; tests call `create_app` with their own settings, Slack client,
session factory and clock.
"""

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import handlers
from bot.competitors import load_competitors
from bot.crm.connectors import webhook_sources, write_back_sources
from bot.crm.generic import MAX_BODY_BYTES
from bot.crm_worker import CrmJobWorker, SweepWorker
from bot.ingest import IngestQueue
from bot.metrics import Metrics
from bot.reasons import Catalogue, load_catalogue
from bot.runtime import RUNTIME, Runtime
from bot.scheduler import Jobs, claim_lease
from bot.services.chasing import ChasePolicy
from bot.services.deal_events import PromptPolicy
from bot.services.debriefs import Audience
from bot.services.delivery import SlackDelivery
from bot.services.health import HealthCheck
from bot.services.home import HomePublisher
from bot.services.managers import Managers
from bot.services.sweeps import SweepPolicy
from bot.settings import Settings
from bot.slack_client import connection_pool, create_slack_client
from bot.slack_socket import SlackSocket
from bot.team import load_team
from bot.worker import OutboxWorker
from storage.engine import create_engine, create_probe_engine, create_read_engine, create_session_factory

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 10.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def log_fatal(problem: str) -> None:
    logger.error("%s", problem)


def create_app(
    settings: Settings,
    *,
    client: AsyncWebClient | None = None,
    session_factory: async_sessionmaker[AsyncSession] | None = None,
    catalogue: Catalogue | None = None,
    team: dict[str, str] | None = None,
    competitor_merges: dict[str, str] | None = None,
    clock: Callable[[], datetime] = utc_now,
    on_fatal: Callable[[str], None] = log_fatal,
    metrics_socket: socket.socket | None = None,
) -> web.Application:
    """The bot's aiohttp app; its cleanup context starts and stops the Slack connection and the workers.

    `on_fatal` is called with one line when the app cannot go on (Slack refused SLACK_APP_TOKEN);
    `closedlost serve` stops with it. By default the line is logged and the rest is still served.
    With METRICS_PORT set, the metrics app is served beside it, on `metrics_socket` when given (the
    CLI binds it before starting), else on HOST:METRICS_PORT.
    """
    # This app's own registry: another app in the same process (tests build many) counts apart.
    metrics = Metrics()
    slack = client or create_slack_client(settings, metrics=metrics)
    own_engine = own_read_engine = None
    if session_factory is None:
        own_engine = create_engine(settings.database_url)
        session_factory = create_session_factory(own_engine)
        own_read_engine = create_read_engine(settings.database_url)
    read_session_factory = session_factory if own_read_engine is None else create_session_factory(own_read_engine)
    catalogue = catalogue or load_catalogue(settings.reasons_file)
    if team is None:
        team = load_team(settings.team_file) if settings.team_file else {}
    if competitor_merges is None:
        competitor_merges = load_competitors(settings.competitors_file) if settings.competitors_file else {}
    if settings.manager_channel is None:
        logger.warning("MANAGER_CHANNEL is not set: losses left without a reason will not be escalated")
    if settings.debrief_min_amount is not None and settings.manager_channel is None:
        logger.warning("DEBRIEF_MIN_AMOUNT needs MANAGER_CHANNEL: no debrief cards will be posted")
    # Names this process's claims on outbox rows and CRM jobs (see storage.claims), and on CRM sweeps.
    process_id = str(uuid.uuid4())
    chase = ChasePolicy.from_settings(settings)
    delivery = SlackDelivery(
        session_factory=session_factory,
        slack=slack,
        catalogue=catalogue,
        chase=chase,
        team_tz=settings.tz,
        team_currency=settings.currency,
        team=team,
        clock=clock,
        metrics=metrics,
    )
    worker = OutboxWorker(delivery=delivery, process_id=process_id, lease=claim_lease(settings))
    jobs = Jobs(
        settings=settings,
        chase=chase,
        session_factory=session_factory,
        clock=clock,
        process_id=process_id,
        on_messages_queued=worker.kick,
        calls_in_flight=worker.calls_in_flight,
    )
    policy = PromptPolicy(
        bulk_window=settings.bulk_window, bulk_max=settings.bulk_max, min_amount=settings.prompt_min_amount
    )
    ingest = IngestQueue(
        session_factory=session_factory,
        clock=clock,
        policy=policy,
        on_messages_queued=worker.kick,
        on_losses_opened=jobs.prompt_soon,
        metrics=metrics,
    )
    sweeper = None
    if settings.sweep_every is not None:
        sweeper = SweepWorker(
            session_factory=session_factory,
            policy=SweepPolicy(every=settings.sweep_every, webhook_sources=webhook_sources(settings)),
            record=ingest.submit,
            clock=clock,
            process_id=process_id,
        )
    crm_jobs = CrmJobWorker(
        settings=settings,
        session_factory=session_factory,
        catalogue=catalogue,
        clock=clock,
        ingest=ingest,
        sweeper=sweeper,
        process_id=process_id,
    )
    slack_socket = None
    if settings.slack_app_token is not None:
        slack_socket = SlackSocket(settings.slack_app_token.get_secret_value(), on_refused=on_fatal)
    runtime = Runtime(
        settings=settings,
        session_factory=session_factory,
        read_session_factory=read_session_factory,
        slack=slack,
        slack_socket=slack_socket,
        catalogue=catalogue,
        competitor_merges=competitor_merges,
        worker=worker,
        ingest=ingest,
        crm_jobs=crm_jobs,
        write_back_sources=write_back_sources(settings),
        audience=Audience.from_settings(settings),
        managers=Managers(admins=settings.admin_users, team=team),
        home=HomePublisher(
            session_factory=read_session_factory,
            slack=slack,
            catalogue=catalogue,
            tz=settings.tz,
            clock=clock,
            admins=settings.admin_users,
        ),
        metrics=metrics,
        health=HealthCheck(engine=create_probe_engine(settings.database_url), clock=clock),
        clock=clock,
    )

    bolt_app = _create_bolt_app(settings, slack, runtime)
    # aiohttp refuses (413) a body larger than client_max_size, also when it comes without Content-Length.
    web_app = web.Application(client_max_size=MAX_BODY_BYTES)
    web_app[RUNTIME] = runtime
    handlers.register_routes(web_app, None if settings.socket_mode else bolt_app)
    metrics_app = None
    if settings.metrics_port is not None:
        metrics_app = web.Application()
        metrics_app[RUNTIME] = runtime
        handlers.register_metrics_route(metrics_app)

    async def background(app: web.Application) -> AsyncIterator[None]:
        metrics_runner = None
        if metrics_app is not None:
            # No access log: a scrape every few seconds would bury everything else in it.
            metrics_runner = web.AppRunner(metrics_app, access_log=None)
            await metrics_runner.setup()
            if metrics_socket is not None:
                await web.SockSite(metrics_runner, metrics_socket).start()
            else:
                await web.TCPSite(metrics_runner, settings.host, settings.metrics_port).start()
        # Every Slack Web API call of the process (apps.connections.open included) shares one
        # connection pool.
        async with connection_pool(slack):
            # Nothing waits for Slack: the socket connects in the background, and the server,
            # the webhooks and the workers start at once.
            if slack_socket is not None:
                slack_socket.start(bolt_app)
            delivering = asyncio.create_task(worker.run(), name="outbox-worker")
            ingesting = asyncio.create_task(ingest.run(), name="ingest-queue")
            running_crm_jobs = asyncio.create_task(crm_jobs.run(), name="crm-jobs")
            jobs.start()
            yield
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            await jobs.stop()
            if slack_socket is not None:
                await slack_socket.close()
            # By now aiohttp has answered every request. The worker is let finish what it is
            # sending, within reason, rather than be cut off inside a transaction; so are the CRM
            # jobs and the sweep, whose events go through the ingest queue: it stops after them.
            worker.stop()
            crm_jobs.stop()
            await asyncio.wait([delivering, running_crm_jobs], timeout=SHUTDOWN_GRACE_SECONDS)
            for task in (delivering, running_crm_jobs, ingesting):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await runtime.health.close()
        for engine in (own_engine, own_read_engine):
            if engine is not None:
                await engine.dispose()

    web_app.cleanup_ctx.append(background)
    return web_app


def _create_bolt_app(settings: Settings, client: AsyncWebClient, runtime: Runtime) -> AsyncApp:
    signing_secret = settings.slack_signing_secret
    bolt_app = AsyncApp(
        client=client,
        signing_secret=signing_secret.get_secret_value() if signing_secret else None,
        request_verification_enabled=not settings.socket_mode,
    )

    async def provide_runtime(context: AsyncBoltContext, next: Callable[[], Awaitable[None]]) -> None:
        context["runtime"] = runtime
        await next()

    bolt_app.use(provide_runtime)
    handlers.register_listeners(bolt_app)
    return bolt_app
