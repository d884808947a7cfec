"""POST /webhooks/hubspot over real HTTP, signed as HubSpot signs (v3), with the deal fetched from a
fake HubSpot API: the documented delivery, refusals that store nothing, duplicates and reordered
deliveries, custom pipelines."""

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm import hubspot
from storage.models import CrmJob, CrmJobState, Deal, DealEventRecord, Loss
from tests.bot_client import BotClient, eventually
from tests.conftest import make_settings, serve
from tests.fake_crm import FakeCrm
from tests.fake_slack import FakeSlack

FIXTURE = Path(__file__).parent / "fixtures" / "crm" / "hubspot_dealstage.json"
SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
PUBLIC_URL = "https://bot.example.com"
DEAL_ID = "18472639201"
# One second after the fixture's events occurred, when HubSpot sent them.
DELIVERED_AT_MS = 1718031061000


class Clock:
    """The bot's clock, set by the test: HubSpot's signatures expire after 300 s."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def sign_hubspot(*, method: str, uri: str, body: bytes, timestamp_ms: int, secret: str = SECRET) -> dict[str, str]:
    """The headers HubSpot sends: v3, base64 HMAC-SHA256 over method + URI + body + timestamp (ms).
    Computed as HubSpot's own SDK does (hubspot/utils/signature.py), not with the bot's code."""
    source = f"{method}{uri}{body.decode('utf-8')}{timestamp_ms}"
    digest = hmac.new(secret.encode("utf-8"), source.encode("utf-8"), hashlib.sha256).digest()
    return {
        "X-HubSpot-Signature-v3": base64.b64encode(digest).decode(),
        "X-HubSpot-Request-Timestamp": str(timestamp_ms),
        "Content-Type": "application/json",
    }


def stage_change(*, deal_id: int = int(DEAL_ID), stage: str, occurred_at_ms: int, attempt: int = 0) -> dict[str, Any]:
    return {
        "eventId": 3817264051,  # HubSpot's eventId is not unique; the bot must not rely on it
        "subscriptionId": 2745113,
        "portalId": 44831207,
        "appId": 3190455,
        "occurredAt": occurred_at_ms,
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": attempt,
        "objectId": deal_id,
        "propertyName": "dealstage",
        "propertyValue": stage,
        "changeSource": "CRM_UI",
        "sourceId": "userId:61829374",
    }


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.fromtimestamp(DELIVERED_AT_MS / 1000, tz=UTC))


@pytest.fixture
async def hubspot_bot(
    database_url: str,
    fake_slack: FakeSlack,
    fake_crm: FakeCrm,
    session_factory: async_sessionmaker[AsyncSession],
    clock: Clock,
) -> AsyncIterator[BotClient]:
    fake_crm.hubspot_deals[DEAL_ID] = {
        "dealname": "Globex - 250 seats",
        "amount": "48000",
        "deal_currency_code": "USD",
        "hubspot_owner_id": "61829374",
        "closed_lost_reason": "Went with a cheaper competitor (Initech)",
        "pipeline": "default",
        "dealstage": "closedlost",
    }
    fake_crm.hubspot_owners["61829374"] = "Dana@Example.com"
    settings = make_settings(
        database_url,
        fake_slack.url,
        public_url=PUBLIC_URL,
        hubspot_client_secret=SECRET,
        hubspot_token="pat-na1-test-token",
        hubspot_api_url=fake_crm.url,
    )
    async with serve(settings, fake_slack, session_factory, clock=clock) as client:
        yield client


async def post_hubspot(bot: BotClient, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with bot.http.post("/webhooks/hubspot", data=body, headers=headers) as response:
        return response.status, await response.json()


async def post_signed(bot: BotClient, events: list[dict[str, Any]], clock: Clock) -> tuple[int, Any]:
    body = json.dumps(events).encode()
    timestamp_ms = int(clock.now.timestamp() * 1000)
    headers = sign_hubspot(method="POST", uri=f"{PUBLIC_URL}/webhooks/hubspot", body=body, timestamp_ms=timestamp_ms)
    return await post_hubspot(bot, body, headers)


async def jobs_done(bot: BotClient, count: int) -> list[CrmJob]:
    async def done() -> list[CrmJob] | None:
        jobs = await bot.rows(CrmJob)
        finished = len(jobs) == count and all(job.state != CrmJobState.PENDING for job in jobs)
        return jobs if finished else None

    return await eventually(done, what=f"{count} CRM jobs to finish")


# --- the signature -------------------------------------------------------------------------------


def test_the_signer_reproduces_hubspots_published_v3_test_vector_and_the_bot_accepts_it() -> None:
    """HubSpot's SDK test vector (tests/spec/utils/test_signature.py in hubspot-api-python)."""
    body = b"{'example_field':'example_value'}"
    uri = "https://www.example.com/webhook_uri"

    headers = sign_hubspot(method="POST", uri=uri, body=body, timestamp_ms=1693657560000)

    assert headers["X-HubSpot-Signature-v3"] == "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="
    at = datetime.fromtimestamp(1693657560, tz=UTC)
    arguments = {"secret": SECRET, "method": "POST", "uri": uri, "body": body, "timestamp": "1693657560000"}
    assert hubspot.is_signed(**arguments, signature="K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=", now=at)
    assert not hubspot.is_signed(**arguments, signature="K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Z=", now=at)
    assert not hubspot.is_signed(
        **arguments, signature="K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=", now=at + timedelta(seconds=301)
    )


# --- accepted ------------------------------------------------------------------------------------


async def test_the_documented_delivery_becomes_a_deal_fetched_from_hubspot_and_a_prompt(
    hubspot_bot: BotClient, fake_crm: FakeCrm
) -> None:
    body = FIXTURE.read_bytes()
    headers = sign_hubspot(method="POST", uri=f"{PUBLIC_URL}/webhooks/hubspot", body=body, timestamp_ms=DELIVERED_AT_MS)
    # The v3 signature of this exact file, as HubSpot's own SDK computes it (hubspot-api-python,
    # hubspot/utils/signature.py).
    assert headers["X-HubSpot-Signature-v3"] == "MCOyEMIEaVQwIW8k3PCEJ0pf8xbmZnIB05VEp377KDc="

    status, answer = await post_hubspot(hubspot_bot, body, headers)

    # The dealstage change is taken; the closed_lost_reason change is a valid event left out.
    assert (status, answer) == (200, {"accepted": 1, "duplicates": 0})
    (job,) = await jobs_done(hubspot_bot, 1)
    assert job.state == CrmJobState.DONE
    (deal,) = await hubspot_bot.rows(Deal)
    assert (deal.source, deal.external_id, deal.name, deal.stage) == (
        "hubspot",
        DEAL_ID,
        "Globex - 250 seats",
        "closed_lost",
    )
    assert (deal.amount, deal.currency, deal.owner_email) == (Decimal("48000.00"), "USD", "dana@example.com")
    assert deal.crm_reason == "Went with a cheaper competitor (Initech)"
    assert deal.url == f"https://app.hubspot.com/contacts/44831207/deal/{DEAL_ID}"
    (record,) = await hubspot_bot.rows(DealEventRecord)
    assert record.changed_at == datetime(2024, 6, 10, 14, 51, 0, 482000, tzinfo=UTC)
    (prompt,) = await hubspot_bot.slack.wait_for("chat.postMessage")
    assert prompt["channel"] == "U0DANA001"
    (deal_call,) = fake_crm.calls_to("hubspot.deal")
    assert deal_call.headers["Authorization"] == "Bearer pat-na1-test-token"
    assert "closed_lost_reason" in deal_call.query["properties"].split(",")


async def test_a_deal_name_and_owner_email_longer_than_their_columns_are_cut_to_fit_and_stored(
    hubspot_bot: BotClient, fake_crm: FakeCrm, clock: Clock
) -> None:
    """HubSpot takes deal names of any length; PostgreSQL refused one over 500 characters, and the
    fetch was retried for a day and dropped. Runs on PostgreSQL too, which enforces the lengths."""
    name = "Globex - " + "250 seats, " * 500
    email = "Dana." + "d" * 400 + "@Example.com"
    reason = "Went with a cheaper competitor. " * 3000  # a text column: kept whole
    fake_crm.hubspot_deals[DEAL_ID].update(dealname=name[:5000], closed_lost_reason=reason)
    fake_crm.hubspot_owners["61829374"] = email

    status, _ = await post_signed(
        hubspot_bot, [stage_change(stage="closedlost", occurred_at_ms=DELIVERED_AT_MS)], clock
    )

    assert status == 200
    (job,) = await jobs_done(hubspot_bot, 1)
    assert (job.state, job.last_error) == (CrmJobState.DONE, None)
    (deal,) = await hubspot_bot.rows(Deal)
    assert (deal.name, deal.owner_email, deal.crm_reason) == (name[:500], email.lower()[:320], reason.strip())
    assert len(await hubspot_bot.rows(Loss)) == 1


async def test_without_public_url_the_signed_uri_is_the_one_the_bot_was_called_on(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    settings = make_settings(
        database_url, fake_slack.url, hubspot_client_secret=SECRET, hubspot_token="t", hubspot_api_url=fake_crm.url
    )
    async with serve(settings, fake_slack, session_factory) as bot:
        body = json.dumps([stage_change(stage="closedlost", occurred_at_ms=1718031060482)]).encode()
        uri = str(bot.http._base_url) + "/webhooks/hubspot"  # type: ignore[operator]
        timestamp_ms = int(datetime.now(UTC).timestamp() * 1000)

        status, _ = await post_hubspot(
            bot, body, sign_hubspot(method="POST", uri=uri, body=body, timestamp_ms=timestamp_ms)
        )
        wrong_uri = sign_hubspot(
            method="POST", uri=f"{PUBLIC_URL}/webhooks/hubspot", body=body, timestamp_ms=timestamp_ms
        )
        refused, _ = await post_hubspot(bot, body, wrong_uri)

    assert (status, refused) == (200, 401)


async def test_creations_deletions_and_other_properties_are_answered_and_ignored(
    hubspot_bot: BotClient, clock: Clock
) -> None:
    creation = {**stage_change(stage="x", occurred_at_ms=1), "subscriptionType": "deal.creation"}
    deletion = {**stage_change(stage="x", occurred_at_ms=1), "subscriptionType": "deal.deletion"}
    for key in ("propertyName", "propertyValue"):
        del creation[key], deletion[key]
    amount = {**stage_change(stage="x", occurred_at_ms=1), "propertyName": "amount", "propertyValue": "100"}

    status, answer = await post_signed(hubspot_bot, [creation, deletion, amount], clock)

    assert (status, answer) == (200, {"accepted": 0, "duplicates": 0})
    assert await hubspot_bot.rows(CrmJob) == []


async def test_a_custom_pipeline_whose_lost_stage_is_a_numeric_id_needs_no_setting(
    hubspot_bot: BotClient, fake_crm: FakeCrm, clock: Clock
) -> None:
    fake_crm.hubspot_pipelines.append(
        {
            "id": "4471202",
            "label": "Renewals",
            "stages": [
                {"id": "98765431", "label": "Talking", "metadata": {"isClosed": "false", "probability": "0.5"}},
                {"id": "98765432", "label": "Churned", "metadata": {"isClosed": "true", "probability": "0.0"}},
                {"id": "98765433", "label": "Renewed", "metadata": {"isClosed": "true", "probability": "1.0"}},
            ],
        }
    )
    fake_crm.hubspot_deals["222"] = {"dealname": "Renewal", "hubspot_owner_id": "61829374", "pipeline": "4471202"}
    occurred = DELIVERED_AT_MS - 1000
    events = [
        stage_change(stage="98765432", occurred_at_ms=occurred),
        stage_change(deal_id=222, stage="98765433", occurred_at_ms=occurred),
    ]

    status, _ = await post_signed(hubspot_bot, events, clock)

    assert status == 200
    await jobs_done(hubspot_bot, 2)
    stages = {deal.external_id: deal.stage for deal in await hubspot_bot.rows(Deal)}
    assert stages == {DEAL_ID: "closed_lost", "222": "closed_won"}
    assert len(await hubspot_bot.rows(Loss)) == 1


async def test_a_redelivery_and_an_older_event_arriving_late_have_one_effect_and_the_newest_stage_wins(
    hubspot_bot: BotClient, clock: Clock
) -> None:
    lost = stage_change(stage="closedlost", occurred_at_ms=DELIVERED_AT_MS - 1000)
    earlier = stage_change(stage="contractsent", occurred_at_ms=DELIVERED_AT_MS - 60_000)

    first = await post_signed(hubspot_bot, [lost], clock)
    again = await post_signed(hubspot_bot, [{**lost, "attemptNumber": 1, "eventId": 999}], clock)
    late = await post_signed(hubspot_bot, [earlier], clock)

    assert (first, again, late) == (
        (200, {"accepted": 1, "duplicates": 0}),
        (200, {"accepted": 0, "duplicates": 1}),
        (200, {"accepted": 1, "duplicates": 0}),
    )
    await jobs_done(hubspot_bot, 2)
    (deal,) = await hubspot_bot.rows(Deal)
    assert deal.stage == "closed_lost"
    assert [(record.stage, record.applied) for record in await hubspot_bot.rows(DealEventRecord)] == [
        ("closed_lost", True),
        ("open", False),
    ]
    assert len(await hubspot_bot.rows(Loss)) == 1
    await hubspot_bot.slack.wait_for("chat.postMessage")
    assert len(hubspot_bot.slack.calls_to("chat.postMessage")) == 1


# --- refused, and nothing stored -----------------------------------------------------------------


async def assert_nothing_stored(bot: BotClient) -> None:
    assert await bot.rows(CrmJob) == []
    assert await bot.rows(DealEventRecord) == []
    assert await bot.rows(Deal) == []


async def test_a_bad_signature_is_refused_and_nothing_stored(hubspot_bot: BotClient) -> None:
    body = FIXTURE.read_bytes()
    headers = sign_hubspot(
        method="POST", uri=f"{PUBLIC_URL}/webhooks/hubspot", body=body, timestamp_ms=DELIVERED_AT_MS, secret="other"
    )

    status, answer = await post_hubspot(hubspot_bot, body, headers)

    assert status == 401 and "signature" in answer["error"]
    await assert_nothing_stored(hubspot_bot)


async def test_a_body_changed_after_signing_is_refused(hubspot_bot: BotClient) -> None:
    body = FIXTURE.read_bytes()
    headers = sign_hubspot(method="POST", uri=f"{PUBLIC_URL}/webhooks/hubspot", body=body, timestamp_ms=DELIVERED_AT_MS)

    status, _ = await post_hubspot(hubspot_bot, body.replace(b"closedlost", b"closedwon"), headers)

    assert status == 401
    await assert_nothing_stored(hubspot_bot)


async def test_a_stale_timestamp_is_refused_even_when_correctly_signed(hubspot_bot: BotClient, clock: Clock) -> None:
    body = FIXTURE.read_bytes()
    stale = DELIVERED_AT_MS - 301_000
    headers = sign_hubspot(method="POST", uri=f"{PUBLIC_URL}/webhooks/hubspot", body=body, timestamp_ms=stale)

    status, answer = await post_hubspot(hubspot_bot, body, headers)

    assert status == 401 and "300 s" in answer["error"]
    await assert_nothing_stored(hubspot_bot)


async def test_a_timestamp_in_seconds_instead_of_milliseconds_is_refused(hubspot_bot: BotClient) -> None:
    body = FIXTURE.read_bytes()
    seconds = DELIVERED_AT_MS // 1000
    headers = sign_hubspot(method="POST", uri=f"{PUBLIC_URL}/webhooks/hubspot", body=body, timestamp_ms=seconds)

    status, _ = await post_hubspot(hubspot_bot, body, headers)

    assert status == 401
    await assert_nothing_stored(hubspot_bot)


async def test_missing_signature_headers_are_refused(hubspot_bot: BotClient) -> None:
    status, answer = await post_hubspot(hubspot_bot, FIXTURE.read_bytes(), {"Content-Type": "application/json"})

    assert status == 401 and "X-HubSpot-Signature-v3" in answer["error"]
    await assert_nothing_stored(hubspot_bot)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(b"not json", None, id="not-json"),
        pytest.param(b'{"objectId": 1}', None, id="an-object-not-an-array"),
        pytest.param(b"[]", None, id="empty-array"),
        pytest.param(
            json.dumps([{**stage_change(stage="closedlost", occurred_at_ms=1), "objectId": "abc"}]).encode(),
            "objectId",
            id="bad-deal-id",
        ),
        pytest.param(
            json.dumps([{**stage_change(stage="closedlost", occurred_at_ms=1), "occurredAt": None}]).encode(),
            "occurredAt",
            id="no-time",
        ),
        pytest.param(json.dumps([["not", "an", "event"]]).encode(), "subscriptionType", id="not-an-object"),
        pytest.param(
            json.dumps([stage_change(stage="closed\x00lost", occurred_at_ms=1)]).encode(), None, id="nul-character"
        ),
        # Read, queued and then failing in every fetch: no datetime holds a time after the year 9999.
        pytest.param(
            json.dumps([stage_change(stage="closedlost", occurred_at_ms=2**62)]).encode(),
            "occurredAt",
            id="time-after-year-9999",
        ),
        # Queued on SQLite; PostgreSQL's json type has no NaN or Infinity (and 1e400 is Infinity to Python).
        pytest.param(
            json.dumps([{**stage_change(stage="closedlost", occurred_at_ms=1), "appId": float("nan")}]).encode(),
            None,
            id="nan",
        ),
        pytest.param(
            json.dumps([stage_change(stage="closedlost", occurred_at_ms=1)]).encode().replace(b"3190455", b"1e400"),
            None,
            id="1e400",
        ),
        pytest.param(
            json.dumps([stage_change(stage="closedlost", occurred_at_ms=1)]).encode()[:-2]
            + b', "nested": '
            + b"[" * 600
            + b"]" * 600
            + b"}]",
            None,
            id="nested-600-deep",
        ),
    ],
)
async def test_a_malformed_body_is_refused_naming_the_problem_and_nothing_stored(
    hubspot_bot: BotClient, body: bytes, field: str | None
) -> None:
    headers = sign_hubspot(method="POST", uri=f"{PUBLIC_URL}/webhooks/hubspot", body=body, timestamp_ms=DELIVERED_AT_MS)

    status, answer = await post_hubspot(hubspot_bot, body, headers)

    assert status == 400
    assert [error["field"] for error in answer["errors"]] == [field]
    await assert_nothing_stored(hubspot_bot)


async def test_the_route_answers_503_until_hubspot_is_configured(bot: BotClient) -> None:
    async with bot.http.post("/webhooks/hubspot", data=FIXTURE.read_bytes()) as response:
        assert response.status == 503
        assert "HUBSPOT_CLIENT_SECRET" in (await response.json())["error"]
    assert await bot.rows(CrmJob) == []
