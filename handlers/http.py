"""The plain HTTP routes: Slack's one URL, the generic deal webhook, and the health check."""

from urllib.parse import parse_qsl

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.crm import generic
from bot.crm.generic import MAX_BODY_BYTES, FieldError, PayloadError, is_signed, is_utf8, parse_deal_events
from bot.ingest import ANSWER_WITHIN_SECONDS, IngestFailed
from bot.runtime import RUNTIME
from handlers.webhook_io import field_errors, json_error, read_body

TIMESTAMP_HEADER = "X-Closedlost-Timestamp"
SIGNATURE_HEADER = "X-Closedlost-Signature"
BOLT_APP = web.AppKey("bolt_app", AsyncApp)


def register(web_app: web.Application, bolt_app: AsyncApp | None) -> None:
    # Named for its source: `handlers.metrics` counts its refusals by that name.
    web_app.router.add_post("/webhooks/deals", handle_deals_webhook, name=generic.SOURCE)
    web_app.router.add_get("/healthz", handle_health)
    if bolt_app is not None:
        web_app[BOLT_APP] = bolt_app
        web_app.router.add_post("/slack/events", handle_slack_request)


async def handle_slack_request(request: web.Request) -> web.Response:
    """Everything Slack sends in HTTP mode; Bolt verifies the signature and routes it."""
    bolt_response = await request.app[BOLT_APP].async_dispatch(_read_form_fields(await to_bolt_request(request)))
    return await to_aiohttp_response(bolt_response)


def _read_form_fields(bolt_request: AsyncBoltRequest) -> AsyncBoltRequest:
    """Gives Bolt the fields of a form body that it read as empty.

    Bolt's `parse_body` (slack_bolt/request/internals.py, 1.30) takes any form body with the text
    "payload" anywhere in it for an interactivity request, and returns the JSON of its `payload`
    field, or `{}` when there is none. A slash command is a form without that field, so
    `/closedlost stats payload`, or a command typed in a channel whose name holds "payload", reached
    no listener and Bolt answered 404. Such a body is read here as Bolt reads any other form, and
    the context Bolt derives from the body (user, team, channel, response_url) is derived again.
    The raw body stays as received: Bolt still checks the signature over the bytes Slack signed.
    Socket Mode needs none of this: it hands Bolt the command already parsed.
    """
    if bolt_request.body or bolt_request.content_type != "application/x-www-form-urlencoded":
        return bolt_request
    fields = dict(parse_qsl(bolt_request.raw_body, keep_blank_values=True))
    if "payload" not in fields:
        bolt_request.body = fields
        bolt_request.context = build_async_context(AsyncBoltContext(), fields)
    return bolt_request


async def handle_deals_webhook(request: web.Request) -> web.Response:
    """`POST /webhooks/deals`, as README.md ("The deal webhook") specifies it."""
    runtime = request.app[RUNTIME]
    secret = runtime.settings.deals_webhook_secret
    if secret is None:
        return json_error(503, "this webhook is off: set DEALS_WEBHOOK_SECRET to turn it on")
    body = await read_body(request)
    if body is None:
        return _too_large()

    if not is_utf8(body):
        return field_errors([FieldError(None, None, "the body is not UTF-8: JSON must be")])
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    signature = request.headers.get(SIGNATURE_HEADER)
    if not timestamp or not signature:
        return json_error(401, f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    now = runtime.clock()
    if not is_signed(secret=secret.get_secret_value(), body=body, timestamp=timestamp, signature=signature, now=now):
        return json_error(401, "the signature does not match, or the timestamp is more than 300 s from now")

    try:
        events = parse_deal_events(body, now=now)
    except PayloadError as error:
        return field_errors(error.errors)
    runtime.metrics.events_received.labels(generic.SOURCE).inc(len(events))
    try:
        receipt = await runtime.ingest.submit_within(events, ANSWER_WITHIN_SECONDS)
    except IngestFailed:
        return json_error(503, "the events could not be stored just now; nothing was kept, send them again")
    return web.json_response({"accepted": receipt.accepted, "duplicates": receipt.duplicates}, status=202)


async def handle_health(request: web.Request) -> web.Response:
    """What works and what does not, within about 2 s (README.md, "Other endpoints"): 503 only when
    the database cannot be read or written, the things without which the bot can do nothing.
    A write waiting on a lock, a backlog in the outbox, or a Slack socket still connecting is
    reported, and the check says "degraded" but does not fail: webhooks and workers go on."""
    runtime = request.app[RUNTIME]
    health = await runtime.health.check()
    body: dict[str, object] = {
        "status": "ok",
        "database": {"reads": health.reads.state, "writes": health.writes.state},
        "outbox": {"pending": health.pending_calls, "oldest_pending_seconds": health.oldest_pending_seconds},
    }
    socket_connected = True
    if runtime.slack_socket is not None:
        body["slack_socket"] = await runtime.slack_socket.state()
        socket_connected = body["slack_socket"] == "connected"
    if not health.available:
        return web.json_response({**body, "status": "unavailable", "error": health.unavailable_because()}, status=503)
    if health.degraded or not socket_connected:
        body["status"] = "degraded"
    return web.json_response(body)


def _too_large() -> web.Response:
    return json_error(413, f"the body is over {MAX_BODY_BYTES // 1024 // 1024} MiB: send at most 100 events a request")
