"""`GET /metrics` on METRICS_PORT, scraped over real HTTP: the counters move where the work happens,
the backlog gauges read the database at each scrape, the public port never serves them, and each
app counts its own work."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.metrics import Metrics, SlackCallCounter
from storage.models import CrmJob, CrmJobKind, CrmJobState, Message, MessageKind, OutboxKind, OutboxMessage, OutboxState
from tests.bot_client import BotClient, deal, sign_deals
from tests.bot_process import bot_process, free_port
from tests.conftest import make_settings, serve
from tests.fake_slack import Failure, FakeSlack
from tests.seed import DANA

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class MetricsBot:
    def __init__(self, client: BotClient, url: str) -> None:
        self.client = client
        self.url = url

    async def scrape(self) -> Samples:
        async with aiohttp.ClientSession() as http, http.get(self.url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            text = await response.text()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a labelled series not counted yet (Prometheus reads it the same)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


@asynccontextmanager
async def serve_with_metrics(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> AsyncIterator[MetricsBot]:
    """The bot's app with METRICS_PORT set to a free port on 127.0.0.1."""
    port = free_port()
    settings = make_settings(database_url, fake_slack.url, host="127.0.0.1", metrics_port=port)
    async with serve(settings, fake_slack, session_factory) as client:
        yield MetricsBot(client, f"http://127.0.0.1:{port}/metrics")


@pytest.fixture
async def metrics_bot(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> AsyncIterator[MetricsBot]:
    async with serve_with_metrics(database_url, fake_slack, session_factory) as bot:
        yield bot


async def test_a_webhook_a_prompt_a_429_a_refusal_and_a_reason_each_move_their_counter(
    metrics_bot: MetricsBot,
) -> None:
    bot = metrics_bot.client
    before = await metrics_bot.scrape()
    bot.slack.fail("chat.postMessage", Failure(status=429, retry_after=1))

    assert (await bot.post_deals(deal())).status == 202
    body = json.dumps(deal(deal_id="forged")).encode()
    forged = await bot.post_deals(body, headers=sign_deals(body, secret="not-the-secret"))
    assert forged.status == 401
    prompt, where = await bot.prompt(2)  # the first try got the 429
    (log,) = [e for b in prompt["blocks"] for e in b.get("elements", []) if e.get("action_id") == "log_reason"]
    modal = await bot.open_modal(user_id=DANA, value=log["value"], message=where)
    saved = await bot.submit(
        user_id=DANA,
        view=modal,
        values={"reason_select": "price", "explanation_input": "Their budget was cut by half for next year."},
    )
    assert saved.status == 200
    after = await metrics_bot.scrape()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("closedlost_deal_events_received_total", source="generic") == 1  # the forged one is not read
    assert moved("closedlost_webhook_requests_refused_total", source="generic", status="401") == 1
    assert moved("closedlost_losses_opened_total") == 1
    assert moved("closedlost_messages_posted_total", kind="prompt") == 1
    assert moved("closedlost_reasons_logged_total") == 1
    assert moved("closedlost_slack_calls_total", method="chat.postMessage", outcome="rate_limited") == 1
    assert moved("closedlost_slack_calls_total", method="chat.postMessage", outcome="ok") == 1
    assert moved("closedlost_slack_calls_total", method="users.lookupByEmail", outcome="ok") == 1
    assert moved("closedlost_slack_calls_total", method="views.open", outcome="ok") == 1
    assert value(before, "closedlost_messages_posted_total", kind="prompt") == 0
    assert value(after, "closedlost_deal_events_received_total", source="hubspot") == 0
    assert ("closedlost_deal_events_received_total", frozenset({("source", "hubspot")})) in after  # at 0 from start


async def test_a_slack_error_is_counted_under_its_code(metrics_bot: MetricsBot) -> None:
    bot = metrics_bot.client

    assert (await bot.post_deals(deal(owner_email="ghost@example.com"))).status == 202
    await bot.settle_worker()

    after = await metrics_bot.scrape()
    assert value(after, "closedlost_slack_calls_total", method="users.lookupByEmail", outcome="users_not_found") == 1
    assert value(after, "closedlost_messages_posted_total", kind="prompt") == 1  # the settle deal's only


async def test_the_backlog_gauges_read_the_database_at_each_scrape(
    metrics_bot: MetricsBot, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    empty = await metrics_bot.scrape()
    assert value(empty, "closedlost_outbox_pending") == 0
    assert value(empty, "closedlost_outbox_oldest_pending_age_seconds") == 0
    assert value(empty, "closedlost_crm_jobs", state="pending") == 0
    now = datetime.now(UTC)
    tomorrow = now + timedelta(days=1)
    async with session_factory() as session, session.begin():
        message = Message(kind=MessageKind.DIGEST, post_to="C0DIGEST1", created_at=now, page=0)
        session.add(message)
        await session.flush()
        # Waiting out a backoff until tomorrow: no worker takes it meanwhile.
        session.add(
            OutboxMessage(
                kind=OutboxKind.POST,
                message_id=message.id,
                state=OutboxState.PENDING,
                due_at=tomorrow,
                attempts=1,
                created_at=now - timedelta(hours=1),
            )
        )
        for state in (CrmJobState.PENDING, CrmJobState.FAILED, CrmJobState.FAILED, CrmJobState.DONE):
            session.add(
                CrmJob(kind=CrmJobKind.WRITE_BACK, source="hubspot", state=state, due_at=tomorrow, created_at=now)
            )

    scraped = await metrics_bot.scrape()

    assert value(scraped, "closedlost_outbox_pending") == 1
    assert 3600 <= value(scraped, "closedlost_outbox_oldest_pending_age_seconds") < 3600 + 60
    assert value(scraped, "closedlost_crm_jobs", state="pending") == 1
    assert value(scraped, "closedlost_crm_jobs", state="failed") == 2


async def test_no_crm_is_swept_yet_so_the_sweep_gauge_has_no_series(metrics_bot: MetricsBot) -> None:
    async with aiohttp.ClientSession() as http, http.get(metrics_bot.url) as response:
        text = await response.text()

    assert "# TYPE closedlost_sweep_last_success_timestamp_seconds gauge" in text
    assert "closedlost_sweep_last_success_timestamp_seconds{" not in text


async def test_the_public_port_does_not_serve_the_metrics(metrics_bot: MetricsBot) -> None:
    async with metrics_bot.client.http.get("/metrics") as response:
        assert response.status == 404


async def test_two_apps_in_one_process_each_count_their_own_work(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    async with (
        serve_with_metrics(database_url, fake_slack, session_factory) as first,
        serve_with_metrics(database_url, fake_slack, session_factory) as second,
    ):
        assert (await first.client.post_deals(deal())).status == 202

        counted = [
            value(await bot.scrape(), "closedlost_deal_events_received_total", source="generic")
            for bot in (first, second)
        ]

    assert counted == [1, 0]


async def test_closedlost_serve_serves_the_metrics_on_metrics_port(database_url: str, fake_slack: FakeSlack) -> None:
    port, metrics_port = free_port(), free_port()

    async with bot_process(database_url, fake_slack.url, port, METRICS_PORT=str(metrics_port)):
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
                assert response.status == 200
                text = await response.text()
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 404

    assert 'closedlost_deal_events_received_total{source="generic"} 0.0' in text
    assert "closedlost_outbox_pending 0.0" in text


@pytest.mark.parametrize(
    ("url", "response", "method", "outcome"),
    [
        (
            "https://slack.com/api/chat.postMessage",
            HttpResponse(status_code=200, headers={}, body={"ok": True}),
            "chat.postMessage",
            "ok",
        ),
        (
            "https://slack.com/api/chat.postMessage",
            HttpResponse(status_code=200, headers={}, body={"ok": False, "error": "not_in_channel"}),
            "chat.postMessage",
            "not_in_channel",
        ),
        (
            "https://slack.com/api/views.publish",
            HttpResponse(status_code=502, headers={}, data=b"Bad Gateway"),
            "views.publish",
            "http_502",
        ),
        ("https://slack.com/api/users.info", None, "users.info", "no_answer"),
        # The one-time URL of files.getUploadURLExternal: one series for every upload, not one each.
        (
            "https://files.slack.com/upload/v1/CwABAAAAXgsAAQAAAAxGMDhaVUoxQlgyNEQ",
            HttpResponse(status_code=200, headers={}, data=b"OK - 58"),
            "file_upload",
            "ok",
        ),
    ],
)
async def test_each_answer_is_counted_by_method_and_outcome(
    url: str, response: HttpResponse | None, method: str, outcome: str
) -> None:
    metrics = Metrics()
    counter = SlackCallCounter(metrics, base_url="https://slack.com/api/")

    retry = await counter.can_retry_async(
        state=RetryState(), request=HttpRequest(method="POST", url=url, headers={}), response=response
    )

    assert retry is False
    counted = metrics.registry.get_sample_value("closedlost_slack_calls_total", {"method": method, "outcome": outcome})
    assert counted == 1
