"""POST /webhooks/pipedrive over real HTTP with the HTTP Basic credentials Pipedrive sends, v2 and v1
payloads, and the owner's email looked up in a fake Pipedrive API."""

import base64
import copy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import CrmJob, CrmJobState, Deal, DealEventRecord, Loss
from tests.bot_client import BotClient, eventually
from tests.conftest import make_settings, serve
from tests.fake_crm import FakeCrm
from tests.fake_slack import FakeSlack

FIXTURES = Path(__file__).parent / "fixtures" / "crm"
V2 = FIXTURES / "pipedrive_deal_lost.json"
V1 = FIXTURES / "pipedrive_deal_lost_v1.json"
USER, PASSWORD = "closedlost", "a-long-webhook-password"


def basic_auth(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    """The header Pipedrive sends for a webhook created with http_auth_user / http_auth_password."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


@pytest.fixture
async def pipedrive_bot(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> AsyncIterator[BotClient]:
    fake_crm.pipedrive_users[21876999] = "Dana@Example.com"
    settings = make_settings(
        database_url,
        fake_slack.url,
        pipedrive_webhook_user=USER,
        pipedrive_webhook_password=PASSWORD,
        pipedrive_api_token="pipedrive-api-token",
        pipedrive_api_url=fake_crm.url,
    )
    async with serve(settings, fake_slack, session_factory) as client:
        yield client


async def post_pipedrive(bot: BotClient, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with bot.http.post("/webhooks/pipedrive", data=body, headers=headers or basic_auth()) as response:
        return response.status, await response.json()


async def jobs_done(bot: BotClient, count: int) -> list[CrmJob]:
    async def done() -> list[CrmJob] | None:
        jobs = await bot.rows(CrmJob)
        return jobs if len(jobs) == count and all(job.state != CrmJobState.PENDING for job in jobs) else None

    return await eventually(done, what=f"{count} CRM jobs to finish")


def v2_change(*, status: str, update_time: str, attempt: int = 1, deal_id: int = 8812) -> bytes:
    document = json.loads(V2.read_bytes())
    document["meta"]["attempt"] = attempt
    document["meta"]["entity_id"] = document["data"]["id"] = deal_id
    document["data"].update(status=status, update_time=update_time)
    if status != "lost":
        document["data"].update(lost_reason=None, lost_time=None)
    return json.dumps(document).encode()


@pytest.mark.parametrize("body", [V2.read_bytes(), V1.read_bytes()], ids=["v2", "v1"])
async def test_a_lost_deal_is_stored_with_its_owner_looked_up_and_prompted(
    pipedrive_bot: BotClient, fake_crm: FakeCrm, body: bytes
) -> None:
    status, answer = await post_pipedrive(pipedrive_bot, body)

    assert (status, answer) == (200, {"accepted": 1, "duplicates": 0})
    (job,) = await jobs_done(pipedrive_bot, 1)
    assert job.state == CrmJobState.DONE
    (deal,) = await pipedrive_bot.rows(Deal)
    assert (deal.source, deal.external_id, deal.name, deal.stage) == (
        "pipedrive",
        "8812",
        "Globex - 250 seats",
        "closed_lost",
    )
    assert (deal.amount, deal.currency, deal.owner_email) == (Decimal("48000.00"), "USD", "dana@example.com")
    assert deal.crm_reason == "Went with a cheaper competitor (Initech)"
    assert deal.url == "https://acme-sales.pipedrive.com/deal/8812"
    assert deal.stage_changed_at == datetime(2024, 6, 10, 14, 51, tzinfo=UTC)
    (lookup,) = fake_crm.calls_to("pipedrive.user")
    assert (lookup.path, lookup.headers["x-api-token"]) == ("/api/v1/users/21876999", "pipedrive-api-token")
    (prompt,) = await pipedrive_bot.slack.wait_for("chat.postMessage")
    assert prompt["channel"] == "U0DANA001"


async def test_a_title_and_owner_email_longer_than_their_columns_are_cut_to_fit_and_stored(
    pipedrive_bot: BotClient, fake_crm: FakeCrm
) -> None:
    """Stored rather than refused (Pipedrive bans a webhook that keeps failing); on PostgreSQL too,
    which enforces the column lengths."""
    document = json.loads(V2.read_bytes())
    title = "Globex - " + "250 seats, " * 500
    reason = "Went with a cheaper competitor. " * 3000  # a text column: kept whole
    document["data"].update(title=title[:5000], lost_reason=reason)
    email = "Dana." + "d" * 400 + "@Example.com"
    fake_crm.pipedrive_users[21876999] = email

    status, answer = await post_pipedrive(pipedrive_bot, json.dumps(document).encode())

    assert (status, answer) == (200, {"accepted": 1, "duplicates": 0})
    (job,) = await jobs_done(pipedrive_bot, 1)
    assert (job.state, job.last_error) == (CrmJobState.DONE, None)
    (deal,) = await pipedrive_bot.rows(Deal)
    assert (deal.name, deal.owner_email, deal.crm_reason) == (title[:500], email.lower()[:320], reason.strip())
    assert len(await pipedrive_bot.rows(Loss)) == 1


async def test_the_owners_email_is_looked_up_once_for_several_deals(
    pipedrive_bot: BotClient, fake_crm: FakeCrm
) -> None:
    for deal_id in (1, 2, 3):
        status, _ = await post_pipedrive(
            pipedrive_bot, v2_change(status="lost", update_time="2024-06-10T14:51:00Z", deal_id=deal_id)
        )
        assert status == 200
        await jobs_done(pipedrive_bot, deal_id)

    assert len(await pipedrive_bot.rows(Deal)) == 3
    assert len(fake_crm.calls_to("pipedrive.user")) == 1


async def test_a_retried_delivery_and_an_older_change_arriving_late_have_one_effect_and_the_newest_wins(
    pipedrive_bot: BotClient,
) -> None:
    lost = v2_change(status="lost", update_time="2024-06-10T14:51:00Z")
    retried = v2_change(status="lost", update_time="2024-06-10T14:51:00Z", attempt=2)
    older = v2_change(status="open", update_time="2024-06-07T08:20:14Z")

    answers = [await post_pipedrive(pipedrive_bot, body) for body in (lost, retried, older)]

    assert answers == [
        (200, {"accepted": 1, "duplicates": 0}),
        (200, {"accepted": 0, "duplicates": 1}),
        (200, {"accepted": 1, "duplicates": 0}),
    ]
    await jobs_done(pipedrive_bot, 2)
    (deal,) = await pipedrive_bot.rows(Deal)
    assert deal.stage == "closed_lost"
    assert [(r.stage, r.applied) for r in await pipedrive_bot.rows(DealEventRecord)] == [
        ("closed_lost", True),
        ("open", False),
    ]
    assert len(await pipedrive_bot.rows(Loss)) == 1


async def test_other_objects_and_deleted_deals_are_answered_and_ignored(pipedrive_bot: BotClient) -> None:
    person = json.loads(V2.read_bytes())
    person["meta"]["entity"] = "person"
    deleted = json.loads(V2.read_bytes())
    deleted["meta"]["action"] = "delete"

    for document in (person, deleted):
        assert await post_pipedrive(pipedrive_bot, json.dumps(document).encode()) == (
            200,
            {"accepted": 0, "duplicates": 0},
        )
    assert await pipedrive_bot.rows(CrmJob) == []


# --- refused, and nothing stored -----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(basic_auth(password="wrong-password"), id="wrong-password"),
        pytest.param(basic_auth(user="someone-else"), id="wrong-user"),
        pytest.param({"Content-Type": "application/json"}, id="no-credentials"),
        pytest.param({"Authorization": "Basic %%%not-base64"}, id="garbled"),
    ],
)
async def test_wrong_credentials_are_refused_and_nothing_stored(
    pipedrive_bot: BotClient, headers: dict[str, str]
) -> None:
    status, answer = await post_pipedrive(pipedrive_bot, V2.read_bytes(), headers)

    assert status == 401 and "password" in answer["error"]
    assert await pipedrive_bot.rows(CrmJob) == []


def v2_with(part: str, **fields: Any) -> bytes:
    """The v2 fixture with `fields` of its `part` ("meta" or "data") replaced."""
    document = json.loads(V2.read_bytes())
    document[part].update(fields)
    return json.dumps(document).encode()


def without(field: str) -> bytes:
    document = copy.deepcopy(json.loads(V2.read_bytes()))
    del document["data"][field]
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(b"not json", None, id="not-json"),
        pytest.param(b"[]", "meta", id="no-meta"),
        pytest.param(V2.read_bytes().replace(b"Globex", b"Glo\\ud800bex"), None, id="lone-surrogate"),
        pytest.param(without("owner_id"), "owner_id", id="no-owner"),
        pytest.param(without("update_time"), "update_time", id="no-time"),
        pytest.param(v2_change(status="gone", update_time="2024-06-10T14:51:00Z"), "status", id="unknown-status"),
        pytest.param(v2_with("data", status=["lost"]), "status", id="status-a-list"),
        # A valid time whose instant in UTC falls before the year 1.
        pytest.param(v2_with("data", update_time="0001-01-01T00:00:00+01:00"), "update_time", id="time-before-year-1"),
        # Queued on SQLite; PostgreSQL's json type has no NaN or Infinity (and 1e400 is Infinity to Python).
        pytest.param(v2_with("data", value=float("nan")), None, id="nan"),
        pytest.param(V2.read_bytes().replace(b'"value": 48000', b'"value": 1e400'), None, id="1e400"),
        pytest.param(
            V2.read_bytes().replace(b'"visible_to": 3', b'"visible_to": ' + b"[" * 600 + b"]" * 600),
            None,
            id="nested-600-deep",
        ),
    ],
)
async def test_a_malformed_body_is_refused_naming_the_field_and_nothing_stored(
    pipedrive_bot: BotClient, body: bytes, field: str | None
) -> None:
    status, answer = await post_pipedrive(pipedrive_bot, body)

    assert status == 400
    assert [error["field"] for error in answer["errors"]] == [field]
    assert await pipedrive_bot.rows(CrmJob) == []


async def test_a_change_whose_action_is_not_text_is_read_as_a_change(pipedrive_bot: BotClient) -> None:
    status, answer = await post_pipedrive(pipedrive_bot, v2_with("meta", action=["change"]))

    assert (status, answer) == (200, {"accepted": 1, "duplicates": 0})


@pytest.mark.parametrize(
    ("body", "column"),
    [
        # No DNS name is longer than 253 characters; a link to this one would not fit its column.
        pytest.param(v2_with("meta", host="h" * 3000), "url", id="host-longer-than-a-dns-name"),
        # ISO 4217 codes are ASCII; ß is SS in upper case, one letter too many for the column.
        pytest.param(v2_with("data", currency="ßab"), "currency", id="currency-not-ascii"),
    ],
)
async def test_a_value_that_cannot_be_what_it_names_is_left_out_and_the_deal_stored(
    pipedrive_bot: BotClient, body: bytes, column: str
) -> None:
    status, _ = await post_pipedrive(pipedrive_bot, body)

    assert status == 200
    (job,) = await jobs_done(pipedrive_bot, 1)
    assert job.state == CrmJobState.DONE
    (deal,) = await pipedrive_bot.rows(Deal)
    assert (deal.external_id, getattr(deal, column)) == ("8812", None)


async def test_the_route_answers_503_until_pipedrive_is_configured(bot: BotClient) -> None:
    status, answer = await post_pipedrive(bot, V2.read_bytes())

    assert status == 503 and "PIPEDRIVE_WEBHOOK_USER" in answer["error"]
    assert await bot.rows(CrmJob) == []
