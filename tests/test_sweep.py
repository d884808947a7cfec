"""The sweep end to end: the bot's own server with SWEEP_EVERY on, fake CRM list and search APIs over
real HTTP, the fake Slack. A change made only in the CRM prompts the rep; the same change also sent
by webhook has one effect; a deal reopened in the CRM cancels its loss; history is left to the
import; two processes sweep once per interval; a CRM failing mid-sweep loses nothing."""

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import utc_now
from bot.crm import hubspot
from bot.crm.api import DealPage
from bot.ingest import IngestQueue
from bot.metrics import Metrics
from bot.periods import week_of
from bot.reasons import DEFAULT_REASONS, Catalogue
from bot.services import sweeps
from bot.services.deal_events import PromptPolicy
from bot.services.digest import build_digest
from bot.views.digest import build_digest_message, render_text
from storage import sweep_queries
from storage.models import CrmJob, CrmJobState, Deal, DealEventRecord, Loss, LossState, SweepCursor, WebhookMiss
from tests.bot_client import BotClient, eventually, rows
from tests.conftest import make_settings, serve
from tests.fake_crm import FakeCrm, hubspot_deal, hubspot_time, opportunity
from tests.fake_slack import Failure, FakeSlack
from tests.test_socket_mode import log_reason_click

HUBSPOT_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
PUBLIC_URL = "https://bot.example.com"
PIPEDRIVE_USER, PIPEDRIVE_PASSWORD = "closedlost", "a-long-webhook-password"
PIPEDRIVE_WEBHOOK = Path(__file__).parent / "fixtures" / "crm" / "pipedrive_deal_lost.json"
DANA_OWNER = "61829374"


def now() -> datetime:
    return datetime.now(UTC)


def ms(moment: datetime) -> datetime:
    """The time to the millisecond, as HubSpot keeps it."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


async def hubspot_events(bot: BotClient) -> list[DealEventRecord]:
    """The stored events of the one HubSpot deal, oldest first."""
    (deal,) = [deal for deal in await bot.rows(Deal) if deal.source == "hubspot"]
    return sorted((event for event in await bot.rows(DealEventRecord) if event.deal_id == deal.id), key=lambda e: e.id)


def hubspot_settings(database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, **overrides: Any) -> Any:
    fake_crm.hubspot_owners[DANA_OWNER] = "Dana@Example.com"
    values = {"sweep_every": "1s", "hubspot_token": "pat-na1-test-token", "hubspot_api_url": fake_crm.url}
    return make_settings(database_url, fake_slack.url, **{**values, **overrides})


def with_hubspot_webhook() -> dict[str, str]:
    return {"hubspot_client_secret": HUBSPOT_SECRET, "public_url": PUBLIC_URL}


async def swept_since(
    session_factory: async_sessionmaker[AsyncSession], source: str, moment: datetime, every: timedelta
) -> SweepCursor:
    """Waits for a sweep of `source` that began at or after `moment` to end; returns its cursor row."""

    async def swept() -> SweepCursor | None:
        cursors = {cursor.source: cursor for cursor in await rows(session_factory, SweepCursor)}
        cursor = cursors.get(source)
        ended = cursor is not None and cursor.claimed_by is None
        return cursor if ended and cursor.due_at - every >= moment else None  # type: ignore[union-attr]

    return await eventually(swept, what=f"a {source} sweep begun after {moment.isoformat()}")


async def post_hubspot_stage_change(bot: BotClient, deal_id: str, stage: str, occurred_at: datetime) -> int:
    """A `deal.propertyChange` of `dealstage`, signed as HubSpot signs (v3) with the time now."""
    event = {
        "eventId": 3817264051,
        "subscriptionId": 2745113,
        "portalId": 44831207,
        "appId": 3190455,
        "occurredAt": int(occurred_at.timestamp() * 1000),
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": int(deal_id),
        "propertyName": "dealstage",
        "propertyValue": stage,
        "changeSource": "CRM_UI",
        "sourceId": "userId:61829374",
    }
    body = json.dumps([event]).encode()
    timestamp = str(int(time.time() * 1000))
    source = f"POST{PUBLIC_URL}/webhooks/hubspot{body.decode()}{timestamp}"
    signature = base64.b64encode(hmac.new(HUBSPOT_SECRET.encode(), source.encode(), hashlib.sha256).digest()).decode()
    headers = {
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": timestamp,
        "Content-Type": "application/json",
    }
    async with bot.http.post("/webhooks/hubspot", data=body, headers=headers) as response:
        return response.status


async def jobs_done(bot: BotClient, count: int) -> None:
    async def done() -> bool:
        jobs = await bot.rows(CrmJob)
        return len(jobs) == count and all(job.state == CrmJobState.DONE for job in jobs)

    await eventually(done, what=f"{count} CRM jobs to be done")


def prompts_to(bot: BotClient, user: str) -> list[dict[str, Any]]:
    return [call for call in bot.slack.calls_to("chat.postMessage") if call["channel"] == user]


# --- HubSpot: a change only in the CRM ---------------------------------------------------------------


async def test_a_deal_lost_only_in_hubspot_prompts_its_rep_after_one_sweep(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    modified = now() - timedelta(minutes=1)
    fake_crm.hubspot_deals["18472639201"] = hubspot_deal(modified)
    # One sweep only: the first, as the bot starts.
    settings = hubspot_settings(database_url, fake_slack, fake_crm, sweep_every="1h")

    async with serve(settings, fake_slack, session_factory) as bot:
        (prompt,) = await bot.slack.wait_for("chat.postMessage")
        assert prompt["channel"] == "U0DANA001"
        assert "Globex - 250 seats" in prompt["text"]

        cursor = await swept_since(session_factory, "hubspot", modified, timedelta(hours=1))
        (deal,) = await bot.rows(Deal)
        (event,) = await bot.rows(DealEventRecord)
        (loss,) = await bot.rows(Loss)

    assert (deal.source, deal.external_id, deal.stage, deal.owner_email) == (
        "hubspot",
        "18472639201",
        "closed_lost",
        "dana@example.com",
    )
    assert deal.crm_reason == "Went with a cheaper competitor (Initech)"
    assert (event.via, event.applied) == ("sweep", True)
    assert loss.state == LossState.AWAITING
    assert cursor.last_error is None and cursor.due_at > now() + timedelta(minutes=50)
    assert len(fake_crm.calls_to("hubspot.search")) == 1
    # No HubSpot webhook is configured: nothing was missed.
    assert await rows(session_factory, WebhookMiss) == []


async def test_a_change_swept_first_then_delivered_by_webhook_prompts_once_and_counts_as_missed(
    database_url: str,
    fake_slack: FakeSlack,
    fake_crm: FakeCrm,
    session_factory: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    modified = now() - timedelta(minutes=1)
    fake_crm.hubspot_deals["18472639201"] = hubspot_deal(modified)
    settings = hubspot_settings(database_url, fake_slack, fake_crm, sweep_every="1h", **with_hubspot_webhook())

    with caplog.at_level(logging.WARNING, logger="bot.services.sweeps"):
        async with serve(settings, fake_slack, session_factory) as bot:
            await bot.slack.wait_for("chat.postMessage")
            # HubSpot's webhook about the change, late: it occurred when the deal was closed.
            status = await post_hubspot_stage_change(bot, "18472639201", "closedlost", modified - timedelta(seconds=2))
            assert status == 200
            await jobs_done(bot, 1)
            await bot.settle_worker()

            assert len(prompts_to(bot, "U0DANA001")) == 1
            events = await hubspot_events(bot)
            # The webhook's change is older than the state the sweep read: kept, not applied.
            assert [(event.via, event.applied) for event in events] == [("sweep", True), ("webhook", False)]
            assert len([loss for loss in await bot.rows(Loss) if loss.deal_id == events[0].deal_id]) == 1

    (miss,) = await rows(session_factory, WebhookMiss)
    assert (miss.source, miss.stage_changes) == ("hubspot", 1)
    warnings = [record.getMessage() for record in caplog.records if "only through the sweep" in record.getMessage()]
    assert warnings == [
        "HubSpot: 1 stage change(s) reached us only through the sweep: is the HubSpot webhook delivering?"
    ]

    today = now().date()
    utc = ZoneInfo("UTC")
    week = week_of(today, tz=utc, today=today)
    digest = await build_digest(
        session_factory=session_factory,
        catalogue=Catalogue(DEFAULT_REASONS),
        week=week,
        now=now(),
        tz=utc,
        currency="USD",
    )
    assert digest.webhook_misses == [("HubSpot", 1)]
    text = render_text(build_digest_message(digest, Catalogue(DEFAULT_REASONS)))
    assert "HubSpot: 1 stage change reached us only through the sweep: check its webhook." in text


async def test_a_change_delivered_by_webhook_then_swept_prompts_once_and_is_not_a_miss(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    closed = now() - timedelta(seconds=30)
    # Last modified before the sweep's window: the first sweeps do not see it.
    fake_crm.hubspot_deals["18472639201"] = hubspot_deal(closed - timedelta(hours=1))
    settings = hubspot_settings(database_url, fake_slack, fake_crm, **with_hubspot_webhook())

    async with serve(settings, fake_slack, session_factory) as bot:
        assert await post_hubspot_stage_change(bot, "18472639201", "closedlost", closed) == 200
        await jobs_done(bot, 1)
        await bot.slack.wait_for("chat.postMessage")
        # Now the search finds it, modified since (a note added, say), still closed-lost.
        modified = closed + timedelta(seconds=5)
        fake_crm.hubspot_deals["18472639201"]["hs_lastmodifieddate"] = hubspot_time(modified)
        await swept_since(session_factory, "hubspot", now(), timedelta(seconds=1))
        await bot.settle_worker()

        assert len(prompts_to(bot, "U0DANA001")) == 1
        events = await hubspot_events(bot)
        # The swept state is newer and applies, but the deal was already lost: no second loss.
        assert [(event.via, event.applied) for event in events] == [("webhook", True), ("sweep", True)]
        assert len([loss for loss in await bot.rows(Loss) if loss.deal_id == events[0].deal_id]) == 1

    assert await rows(session_factory, WebhookMiss) == []


async def test_a_deal_reopened_only_in_hubspot_cancels_its_loss_and_the_dm_says_so(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_crm.hubspot_deals["18472639201"] = hubspot_deal(now() - timedelta(minutes=1))
    settings = hubspot_settings(database_url, fake_slack, fake_crm)

    async with serve(settings, fake_slack, session_factory) as bot:
        _, posted_at = await bot.prompt()

        async def prompted() -> bool:
            (loss,) = await bot.rows(Loss)
            return loss.prompted_at is not None

        await eventually(prompted, what="the prompt to be recorded")
        fake_crm.hubspot_deals["18472639201"].update(dealstage="contractsent", hs_lastmodifieddate=hubspot_time(now()))

        (update,) = await bot.slack.wait_for("chat.update")
        (loss,) = await bot.rows(Loss)
        (deal,) = await bot.rows(Deal)

    assert (update["channel"], update["ts"]) == posted_at
    assert "no reason is needed" in update["text"]
    assert loss.state == LossState.CANCELLED
    assert deal.stage == "open"


async def test_a_deal_closed_before_the_sweep_began_is_history_and_nobody_is_asked(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    modified = now() - timedelta(minutes=1)
    # Lost a year ago, touched a minute ago; and an open deal, touched a second later.
    fake_crm.hubspot_deals["1"] = hubspot_deal(modified, closedate=hubspot_time(modified - timedelta(days=365)))
    fake_crm.hubspot_deals["2"] = hubspot_deal(modified + timedelta(seconds=1), stage="contractsent")
    settings = hubspot_settings(database_url, fake_slack, fake_crm, sweep_every="1h")

    async with serve(settings, fake_slack, session_factory) as bot:
        await swept_since(session_factory, "hubspot", modified, timedelta(hours=1))
        await bot.settle_worker()
        deals = await bot.rows(Deal)

    assert sorted(deal.external_id for deal in deals if deal.source == "hubspot") == ["2"]
    assert prompts_to(bot, "U0DANA001") == []


async def test_with_socket_mode_and_the_sweep_nothing_needs_to_reach_the_bot(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """README.md, "Running without a webhook": no webhook secret, no signing secret, no public URL."""
    fake_crm.hubspot_deals["18472639201"] = hubspot_deal(now() - timedelta(minutes=1))
    settings = hubspot_settings(
        database_url,
        fake_slack,
        fake_crm,
        sweep_every="1h",
        slack_app_token="xapp-1-test",
        slack_signing_secret=None,
        deals_webhook_secret=None,
    )

    async with serve(settings, fake_slack, session_factory) as bot:
        message, (channel, ts) = await bot.prompt()
        await fake_slack.send_envelope("interactive", log_reason_click(message, channel, ts))
        (opened,) = await fake_slack.wait_for("views.open")
        refused = {}
        for path in ("/webhooks/deals", "/webhooks/hubspot", "/slack/events"):
            async with bot.http.post(path, data=b"[]") as response:
                refused[path] = response.status

    assert message["channel"] == "U0DANA001"
    assert opened["trigger_id"] == "1234.5678.trigger"
    assert refused == {"/webhooks/deals": 503, "/webhooks/hubspot": 503, "/slack/events": 404}


# --- Pipedrive and Salesforce ------------------------------------------------------------------------


async def test_a_deal_lost_only_in_pipedrive_is_prompted_and_its_late_webhook_is_a_duplicate(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    webhook = json.loads(PIPEDRIVE_WEBHOOK.read_bytes())
    deal = {**webhook["data"], "update_time": now().strftime("%Y-%m-%dT%H:%M:%SZ")}
    deal["close_time"] = deal["lost_time"] = deal["update_time"]
    webhook["data"] = deal
    fake_crm.pipedrive_deals[deal["id"]] = deal
    fake_crm.pipedrive_users[deal["owner_id"]] = "dana@example.com"
    settings = make_settings(
        database_url,
        fake_slack.url,
        sweep_every="1h",
        pipedrive_webhook_user=PIPEDRIVE_USER,
        pipedrive_webhook_password=PIPEDRIVE_PASSWORD,
        pipedrive_api_token="pipedrive-api-token",
        pipedrive_api_url=fake_crm.url,
    )

    async with serve(settings, fake_slack, session_factory) as bot:
        (prompt,) = await bot.slack.wait_for("chat.postMessage")
        assert prompt["channel"] == "U0DANA001"
        token = base64.b64encode(f"{PIPEDRIVE_USER}:{PIPEDRIVE_PASSWORD}".encode()).decode()
        headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
        async with bot.http.post("/webhooks/pipedrive", data=json.dumps(webhook), headers=headers) as response:
            assert response.status == 200
        await jobs_done(bot, 1)
        await bot.settle_worker()

        assert len(prompts_to(bot, "U0DANA001")) == 1
        pipedrive_events = [event for event in await bot.rows(DealEventRecord) if "owner_id" in event.payload]
        assert [event.via for event in pipedrive_events] == ["sweep"]  # the webhook's was the same key

    (miss,) = await rows(session_factory, WebhookMiss)
    assert (miss.source, miss.stage_changes) == ("pipedrive", 1)


async def test_an_opportunity_lost_only_in_salesforce_is_prompted_with_its_owner_from_the_query(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_crm.salesforce_opportunities["1"] = {**opportunity(1, now()), "Owner.Email": "dana@example.com"}
    settings = make_settings(
        database_url,
        fake_slack.url,
        sweep_every="1h",
        salesforce_instance_url=fake_crm.url,
        salesforce_client_id="id",
        salesforce_client_secret="secret",
    )

    async with serve(settings, fake_slack, session_factory) as bot:
        (prompt,) = await bot.slack.wait_for("chat.postMessage")
        (deal,) = await bot.rows(Deal)

    assert prompt["channel"] == "U0DANA001"
    assert (deal.source, deal.external_id, deal.stage) == ("salesforce", "006RO00000Q0000001", "closed_lost")
    assert deal.url == f"{fake_crm.url}/006RO00000Q0000001"


# --- two processes -----------------------------------------------------------------------------------


async def test_two_processes_sweep_each_crm_once_per_interval_and_prompt_once(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_crm.hubspot_deals["18472639201"] = hubspot_deal(now() - timedelta(minutes=1))
    settings = hubspot_settings(database_url, fake_slack, fake_crm, sweep_every="2s")

    async with serve(settings, fake_slack, session_factory) as first, serve(settings, fake_slack, session_factory):

        def sweeps_begun() -> list[float]:
            """Each sweep of HubSpot begins by reading the pipelines."""
            return [call.at for call in fake_crm.calls_to("hubspot.pipelines")]

        await eventually(lambda: len(sweeps_begun()) >= 3, what="three sweeps")
        await first.settle_worker()

    begun = sweeps_begun()
    gaps = [later - earlier for earlier, later in zip(begun, begun[1:], strict=False)]
    # Each sweep SWEEP_EVERY (2 s) after the last, whichever process ran it; not two at once.
    assert min(gaps) > 1.0, gaps
    assert len(prompts_to(first, "U0DANA001")) == 1


# --- the claim and the cursor, one sweep at a time ------------------------------------------------------


class Clock:
    def __init__(self, at: datetime) -> None:
        self.now = at

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def sweeping(session_factory: async_sessionmaker[AsyncSession], fake_crm: FakeCrm) -> AsyncIterator["Sweeping"]:
    """The sweep of HubSpot run by hand, on a clock of its own, into the real ingest queue."""
    clock = Clock(utc_now())
    fake_crm.hubspot_owners[DANA_OWNER] = "dana@example.com"
    ingest = IngestQueue(
        session_factory=session_factory,
        clock=clock,
        policy=PromptPolicy(bulk_window=timedelta(0), bulk_max=timedelta(0), min_amount=Decimal(0)),
        on_messages_queued=lambda: None,
        on_losses_opened=lambda: None,
        metrics=Metrics(),
    )
    ingesting = asyncio.create_task(ingest.run())
    async with aiohttp.ClientSession() as http:
        client = hubspot.HubSpotClient(http, api_url=fake_crm.url, token="pat-na1-test-token", searches_per_second=5.0)
        yield Sweeping(session_factory, fake_crm, clock, ingest, client)
    ingesting.cancel()


class Sweeping:
    EVERY = timedelta(minutes=10)

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        fake_crm: FakeCrm,
        clock: Clock,
        ingest: IngestQueue,
        client: hubspot.HubSpotClient,
    ) -> None:
        self.session_factory, self.fake_crm, self.clock, self.ingest, self.client = (
            session_factory,
            fake_crm,
            clock,
            ingest,
            client,
        )

    def list_changes(self, since: datetime) -> AsyncIterator[DealPage]:
        return hubspot.list_deal_changes(self.client, since=since, reason_property="closed_lost_reason")

    async def sweep(self, process_id: str = "process-a") -> bool:
        return await sweeps.sweep_crm(
            session_factory=self.session_factory,
            source="hubspot",
            list_changes=self.list_changes,
            record=self.ingest.submit,
            policy=sweeps.SweepPolicy(every=self.EVERY, webhook_sources=frozenset()),
            process_id=process_id,
            clock=self.clock,
            stopping=lambda: False,
        )

    async def start(self) -> datetime:
        """The first sweep (its cursor: now), then SWEEP_EVERY later; returns when the first began."""
        first = self.clock.now
        assert await self.sweep()
        self.clock.now += self.EVERY
        return first

    def add_deals(self, count: int, after: datetime) -> list[datetime]:
        """`count` open deals modified 10 ms apart from just after `after`; their times."""
        times = [ms(after) + timedelta(milliseconds=10 * number) for number in range(1, count + 1)]
        for number, modified in enumerate(times, start=1):
            self.fake_crm.hubspot_deals[str(number)] = hubspot_deal(modified, stage="contractsent")
        return times

    async def cursor(self) -> SweepCursor:
        (cursor,) = await rows(self.session_factory, SweepCursor)
        return cursor

    async def stored(self) -> tuple[int, int]:
        """Deals and deal events stored."""
        return len(await rows(self.session_factory, Deal)), len(await rows(self.session_factory, DealEventRecord))


FAILURES = {
    "a 500": lambda crm: crm.fail("hubspot.search", Failure(500)),
    "a dropped connection": lambda crm: crm.drop("hubspot.search"),
    "429s past the waits allowed": lambda crm: crm.fail("hubspot.search", *[Failure(429, retry_after=0)] * 6),
}


@pytest.mark.parametrize("failure", FAILURES, ids=list(FAILURES))
async def test_a_crm_failing_mid_sweep_keeps_the_cursor_at_what_was_committed_and_the_next_sweep_reads_on(
    sweeping: Sweeping, failure: str
) -> None:
    times = sweeping.add_deals(450, after=await sweeping.start())
    started = sweeping.clock.now
    listing_failed = False

    original = sweeping.list_changes

    async def fail_after_first_page(since: datetime) -> AsyncIterator[DealPage]:
        nonlocal listing_failed
        async for page in original(since):
            yield page
            if not listing_failed:
                listing_failed = True
                FAILURES[failure](sweeping.fake_crm)

    sweeping.list_changes = fail_after_first_page  # type: ignore[method-assign]

    assert await sweeping.sweep()

    cursor = await sweeping.cursor()
    assert cursor.cursor == ms(times[199])
    assert cursor.last_error is not None and cursor.claimed_by is None
    assert cursor.due_at == started + Sweeping.EVERY
    assert await sweeping.stored() == (200, 200)
    assert not await sweeping.sweep()  # not due yet

    sweeping.clock.now = started + Sweeping.EVERY
    assert await sweeping.sweep()

    cursor = await sweeping.cursor()
    assert cursor.cursor == ms(times[-1])
    assert cursor.last_error is None
    assert await sweeping.stored() == (450, 450)  # every deal once, each change recorded once


async def test_a_long_retry_after_delays_the_next_sweep_until_the_crm_allows(sweeping: Sweeping) -> None:
    sweeping.add_deals(3, after=await sweeping.start())
    sweeping.fake_crm.fail("hubspot.search", Failure(429, retry_after=3600))
    started = sweeping.clock.now

    assert await sweeping.sweep()

    cursor = await sweeping.cursor()
    assert cursor.due_at == started + timedelta(seconds=3600)
    assert "429" in (cursor.last_error or "")
    sweeping.clock.now = started + Sweeping.EVERY
    assert not await sweeping.sweep()
    sweeping.clock.now = started + timedelta(seconds=3600)
    assert await sweeping.sweep()
    assert await sweeping.stored() == (3, 3)


async def test_a_short_429_mid_sweep_is_waited_out_within_the_sweep(sweeping: Sweeping) -> None:
    times = sweeping.add_deals(450, after=await sweeping.start())
    sweeping.fake_crm.fail("hubspot.search", Failure(429, retry_after=1))

    assert await sweeping.sweep()

    cursor = await sweeping.cursor()
    assert (cursor.cursor, cursor.last_error) == (ms(times[-1]), None)
    assert await sweeping.stored() == (450, 450)


async def test_of_two_processes_sweeping_at_once_one_sweeps_and_a_dead_ones_claim_runs_out(
    sweeping: Sweeping,
) -> None:
    sweeping.add_deals(450, after=await sweeping.start())
    started = sweeping.clock.now
    searched = len(sweeping.fake_crm.calls_to("hubspot.search"))

    swept = await asyncio.gather(sweeping.sweep("process-a"), sweeping.sweep("process-b"))

    assert sorted(swept) == [False, True]
    assert len(sweeping.fake_crm.calls_to("hubspot.search")) - searched == 3  # one sweep of three pages
    assert await asyncio.gather(sweeping.sweep("process-a"), sweeping.sweep("process-b")) == [False, False]

    # A process takes the next sweep and dies holding it: the others wait out its claim.
    sweeping.clock.now = started + Sweeping.EVERY
    async with sweeping.session_factory() as session, session.begin():
        taken = await sweep_queries.claim_sweep(
            session,
            source="hubspot",
            process_id="dead",
            now=sweeping.clock.now,
            until=sweeping.clock.now + sweeps.CLAIM_FOR,
        )
    assert taken is not None
    assert not await sweeping.sweep("process-b")
    sweeping.clock.now += sweeps.CLAIM_FOR + timedelta(seconds=1)
    assert await sweeping.sweep("process-b")
