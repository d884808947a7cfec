"""Prometheus: `GET /metrics` on METRICS_PORT (an app of its own, never on the public port), and the
count of webhook requests the public app refuses."""

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from bot.crm.connectors import SOURCES
from bot.runtime import RUNTIME
from bot.services.admin import read_backlog


def register(metrics_app: web.Application) -> None:
    metrics_app.router.add_get("/metrics", handle_metrics)


async def handle_metrics(request: web.Request) -> web.Response:
    """This process's counters, and the backlog gauges read from the database now."""
    runtime = request.app[RUNTIME]
    backlog = await read_backlog(session_factory=runtime.read_session_factory, now=runtime.clock())
    age = backlog.oldest_pending_age
    runtime.metrics.observe_backlog(
        outbox_pending=backlog.outbox_pending,
        oldest_pending_age=age.total_seconds() if age is not None else 0.0,
        crm_jobs_pending=backlog.crm_jobs_pending,
        crm_jobs_failed=backlog.crm_jobs_failed,
    )
    # The classic text format, the one `generate_latest` writes.
    return web.Response(
        body=generate_latest(runtime.metrics.registry), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
    )


@web.middleware
async def count_refused_webhooks(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts each webhook request answered with an error, by source and status. A webhook route is
    named for its source when it is registered."""
    response = await handler(request)
    source = request.match_info.route.name
    if source in SOURCES and response.status >= 400:
        request.app[RUNTIME].metrics.requests_refused.labels(source, str(response.status)).inc()
    return response
