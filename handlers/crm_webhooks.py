"""The CRMs' own webhooks: verify, parse, store, answer. Each route answers 503 until its CRM is
configured, like `/webhooks/deals` without its secret."""

import asyncio
import hmac
import logging
from functools import partial

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bot.crm import hubspot, pipedrive, salesforce
from bot.crm.event import FieldError, PayloadError
from bot.crm.generic import MAX_BODY_BYTES
from bot.crm_worker import CrmJobWorker
from bot.ingest import ANSWER_WITHIN_SECONDS, IngestFailed
from bot.runtime import RUNTIME
from bot.services.crm_jobs import PendingEvent, queue_fetches
from bot.services.health import describe
from handlers.webhook_io import field_errors, json_error, read_body

logger = logging.getLogger(__name__)

NOT_STORED = "the events could not be stored just now; nothing was kept, send them again"
# Writes still running after their webhook was answered 503 (see `_queue`): the event loop keeps
# only a weak reference to a task.
_late_writes: set["asyncio.Task[int]"] = set()


def register(web_app: web.Application) -> None:
    # Each named for its source: `handlers.metrics` counts its refusals by that name.
    web_app.router.add_post("/webhooks/hubspot", handle_hubspot_webhook, name=hubspot.SOURCE)
    web_app.router.add_post("/webhooks/salesforce", handle_salesforce_webhook, name=salesforce.SOURCE)
    web_app.router.add_post("/webhooks/pipedrive", handle_pipedrive_webhook, name=pipedrive.SOURCE)


async def handle_hubspot_webhook(request: web.Request) -> web.Response:
    """Stores each deal stage change and answers at once; the deal is fetched afterwards, so the
    answer comes well within HubSpot's timeout whatever its API is doing."""
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    if settings.hubspot_client_secret is None:
        return json_error(503, "this webhook is off: set HUBSPOT_CLIENT_SECRET and HUBSPOT_TOKEN to turn it on")
    body = await read_body(request)
    if body is None:
        return json_error(413, f"the body is over {MAX_BODY_BYTES // 1024 // 1024} MiB")
    timestamp = request.headers.get(hubspot.TIMESTAMP_HEADER)
    signature = request.headers.get(hubspot.SIGNATURE_HEADER)
    if not timestamp or not signature:
        return json_error(401, f"missing {hubspot.TIMESTAMP_HEADER} or {hubspot.SIGNATURE_HEADER} header")
    # HubSpot signs the URL it called; behind a proxy that is the public one, not the one we see.
    uri = settings.public_url + request.path_qs if settings.public_url else str(request.url)
    signed = hubspot.is_signed(
        secret=settings.hubspot_client_secret.get_secret_value(),
        method=request.method,
        uri=uri,
        body=body,
        timestamp=timestamp,
        signature=signature,
        now=runtime.clock(),
    )
    if not signed:
        return json_error(401, "the signature does not match, or the timestamp is more than 300 s from now")
    try:
        changes = hubspot.parse_stage_changes(body)
    except PayloadError as error:
        return field_errors(error.errors)
    events = [PendingEvent(key=change.key, payload=change.payload) for change in changes]
    return await _queue(request, hubspot.SOURCE, events)


async def handle_pipedrive_webhook(request: web.Request) -> web.Response:
    """Stores the deal change and answers at once; the owner's email is looked up afterwards."""
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    user, password = settings.pipedrive_webhook_user, settings.pipedrive_webhook_password
    if user is None or password is None:
        return json_error(503, "this webhook is off: set PIPEDRIVE_WEBHOOK_USER and PIPEDRIVE_WEBHOOK_PASSWORD")
    authorization = request.headers.get("Authorization")
    if not pipedrive.is_authorized(authorization, user=user, password=password.get_secret_value()):
        response = json_error(401, "the webhook's HTTP Basic user or password is wrong")
        response.headers["WWW-Authenticate"] = 'Basic realm="closedlost"'
        return response
    body = await read_body(request)
    if body is None:
        return json_error(413, f"the body is over {MAX_BODY_BYTES // 1024 // 1024} MiB")
    try:
        change = pipedrive.parse_deal_change(body)
    except PayloadError as error:
        return field_errors(error.errors)
    events = [] if change is None else [PendingEvent(key=change.event.idempotency_key, payload=change.event.raw)]
    return await _queue(request, pipedrive.SOURCE, events)


async def handle_salesforce_webhook(request: web.Request) -> web.Response:
    """Answers the SOAP `Ack` only once every notification is stored; anything else makes
    Salesforce send the message again.

    Outbound Messages carry no signature and the organization id is no secret, so a request must
    also carry SALESFORCE_WEBHOOK_TOKEN in its URL (`?token=…`), which only Salesforce is given."""
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    if settings.salesforce_org_id is None or settings.salesforce_webhook_token is None:
        return _fault(503, "this webhook is off: set SALESFORCE_ORG_ID and SALESFORCE_WEBHOOK_TOKEN to turn it on")
    token = request.query.get("token", "")
    if not hmac.compare_digest(token.encode(), settings.salesforce_webhook_token.get_secret_value().encode()):
        return _fault(401, "the endpoint URL lacks the right token: end it in ?token= and SALESFORCE_WEBHOOK_TOKEN")
    body = await read_body(request)
    if body is None:
        return _fault(413, f"the body is over {MAX_BODY_BYTES // 1024 // 1024} MiB")
    try:
        message = salesforce.read_outbound_message(body)
    except PayloadError as error:
        return _fault(400, "; ".join(_describe(problem) for problem in error.errors))
    if not salesforce.is_our_organization(message.organization_id, settings.salesforce_org_id):
        return _fault(403, f"organization {message.organization_id} is not the one SALESFORCE_ORG_ID names")
    try:
        events = salesforce.parse_opportunities(
            message,
            owner_email_field=settings.salesforce_owner_email_field,
            reason_field=settings.salesforce_reason_field,
        )
    except PayloadError as error:
        return _fault(400, "; ".join(_describe(problem) for problem in error.errors))
    runtime.metrics.events_received.labels(salesforce.SOURCE).inc(len(events))
    try:
        await runtime.ingest.submit_within(events, ANSWER_WITHIN_SECONDS)
    except IngestFailed:
        return _fault(503, NOT_STORED)
    return web.Response(body=salesforce.build_ack(), content_type="text/xml", charset="utf-8")


async def _queue(request: web.Request, source: str, events: list[PendingEvent]) -> web.Response:
    """Stores the events' fetches, or answers 503 when they are not stored within
    ANSWER_WITHIN_SECONDS. The write is left to end on its own then: cut off mid-statement, it
    would first wait out SQLite's busy timeout to roll back. If it commits after the 503, the CRM's
    retry counts as duplicates, by the events' keys."""
    runtime = request.app[RUNTIME]
    runtime.metrics.events_received.labels(source).inc(len(events))
    storing = asyncio.ensure_future(
        queue_fetches(session_factory=runtime.session_factory, source=source, events=events, now=runtime.clock())
    )
    try:
        async with asyncio.timeout(ANSWER_WITHIN_SECONDS):
            accepted = await asyncio.shield(storing)
    except TimeoutError:
        _late_writes.add(storing)
        storing.add_done_callback(partial(_end_late_write, runtime.crm_jobs))
        logger.warning(
            "%d %s events were not stored within %g s (the database is slow or locked); their sender is told to"
            " retry, and if their transaction still commits, the retry counts as duplicates",
            len(events),
            source,
            ANSWER_WITHIN_SECONDS,
        )
        return json_error(503, NOT_STORED)
    except SQLAlchemyError:
        logger.exception("storing %d %s events failed; their sender is told to retry", len(events), source)
        return json_error(503, NOT_STORED)
    if accepted:
        runtime.crm_jobs.kick()
    return web.json_response({"accepted": accepted, "duplicates": len(events) - accepted})


def _end_late_write(crm_jobs: CrmJobWorker, storing: "asyncio.Task[int]") -> None:
    """Ends a write that outlived its request: the fetches it stored are started now, as its request
    would have started them."""
    _late_writes.discard(storing)
    if storing.cancelled():
        return
    error = storing.exception()
    if error is None:
        if storing.result():
            crm_jobs.kick()
    else:
        logger.warning(
            "a write that outlived its webhook's answer failed (%s): nothing of it was stored, and its sender was"
            " told to retry",
            describe(error),
        )


def _describe(problem: FieldError) -> str:
    where = f"notification {problem.index}" if problem.index is not None else "the message"
    return f"{where}, {problem.field}: {problem.message}" if problem.field else f"{where}: {problem.message}"


def _fault(status: int, message: str) -> web.Response:
    client_error = status < 500
    return web.Response(
        status=status,
        body=salesforce.build_fault(message, client_error=client_error),
        content_type="text/xml",
        charset="utf-8",
    )
