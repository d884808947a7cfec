"""The bot's Prometheus metrics, served on METRICS_PORT (see `handlers.metrics`).

Each app has its own registry, created with it: a process serves the counts of its own work (with
several processes, Prometheus scrapes each and adds them up), and tests that build several apps in
one process never see each other's counts. The counters are incremented where the work happens;
the gauges about the database (the outbox, the CRM jobs) are set from it at each scrape.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.crm.connectors import SOURCES
from storage.models import MessageKind

RATE_LIMITED = "rate_limited"
NO_ANSWER = "no_answer"
FILE_UPLOAD = "file_upload"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.events_received = Counter(
            "closedlost_deal_events_received",
            "Deal events in webhook requests that were verified and read (duplicates included), per source.",
            ["source"],
            registry=registry,
        )
        self.requests_refused = Counter(
            "closedlost_webhook_requests_refused",
            "Webhook requests answered with an error (bad signature, bad body, too large, off), per source and status.",
            ["source", "status"],
            registry=registry,
        )
        self.losses_opened = Counter(
            "closedlost_losses_opened",
            "Losses recorded that await a reason (excluded ones are not counted).",
            registry=registry,
        )
        self.messages_posted = Counter(
            "closedlost_messages_posted",
            "Messages Slack accepted, per kind: prompt, reminder, escalation, revisit, debrief, route, digest.",
            ["kind"],
            registry=registry,
        )
        self.reasons_logged = Counter(
            "closedlost_reasons_logged",
            "Reasons stored from the modals, one per deal (edits included).",
            registry=registry,
        )
        self.slack_calls = Counter(
            "closedlost_slack_calls",
            f"Slack Web API requests, each try counted, per method ({FILE_UPLOAD} for a file's upload) and "
            f"outcome: ok, Slack's error code, {RATE_LIMITED} (an HTTP 429), http_<status>, or {NO_ANSWER}.",
            ["method", "outcome"],
            registry=registry,
        )
        self.outbox_pending = Gauge(
            "closedlost_outbox_pending", "Slack calls waiting in the outbox.", registry=registry
        )
        self.outbox_oldest_pending_age = Gauge(
            "closedlost_outbox_oldest_pending_age_seconds",
            "How long the oldest Slack call still waiting in the outbox has waited (0 when none waits).",
            registry=registry,
        )
        self.crm_jobs = Gauge(
            "closedlost_crm_jobs", "CRM jobs (fetches, write-backs) pending or failed.", ["state"], registry=registry
        )
        self.sweep_last_success = Gauge(
            "closedlost_sweep_last_success_timestamp_seconds",
            "When each CRM's sweep last finished, as a Unix time.",
            ["crm"],
            registry=registry,
        )
        # Series that exist from the start at 0, so that a rate over them is defined before the first event.
        for source in SOURCES:
            self.events_received.labels(source)
        for kind in MessageKind:
            self.messages_posted.labels(kind.value)

    def observe_backlog(
        self, *, outbox_pending: int, oldest_pending_age: float, crm_jobs_pending: int, crm_jobs_failed: int
    ) -> None:
        self.outbox_pending.set(outbox_pending)
        self.outbox_oldest_pending_age.set(oldest_pending_age)
        self.crm_jobs.labels("pending").set(crm_jobs_pending)
        self.crm_jobs.labels("failed").set(crm_jobs_failed)


class SlackCallCounter(AsyncRetryHandler):
    """Counts every answer to a request of the Slack client, each try of it included.

    slack_sdk shows each answer (and each failure to get one) to the client's retry handlers in
    turn, until one of them asks for another try; this one, first in the list, counts it and never
    asks, so the 429s the rate-limit handler then waits out are counted too, which a wrapper around
    the call (seeing only the last answer) would miss.
    https://docs.slack.dev/tools/python-slack-sdk/web#retryhandler
    """

    def __init__(self, metrics: Metrics, *, base_url: str) -> None:
        super().__init__(max_retry_count=0)
        self._metrics = metrics
        self._base_url = base_url

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        # A file goes to the one-time URL files.getUploadURLExternal gave, not to a Web API method:
        # counted under one name, so that its URLs do not each make a series.
        method = request.url.removeprefix(self._base_url) if request.url.startswith(self._base_url) else FILE_UPLOAD
        self._metrics.slack_calls.labels(method, _outcome(response)).inc()
        return False


def _outcome(response: HttpResponse | None) -> str:
    if response is None:
        return NO_ANSWER
    if response.status_code == 429:
        return RATE_LIMITED
    if not isinstance(response.body, dict):
        return "ok" if response.status_code == 200 else f"http_{response.status_code}"
    if response.body.get("ok"):
        return "ok"
    return str(response.body.get("error") or f"http_{response.status_code}")
