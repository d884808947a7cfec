"""The CRM jobs over a real database and fake CRM APIs over HTTP, on a clock the test moves: a CRM
outage delays a fetch or a write-back, never loses or doubles it; a 429's Retry-After is honoured;
what retrying cannot fix is recorded as failed with the reason."""

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.api import Connector
from bot.crm.connectors import build_connectors
from bot.crm.event import DealEvent
from bot.reasons import DEFAULT_REASONS, Catalogue
from bot.services import crm_jobs
from bot.services.crm_jobs import PendingEvent, backoff, queue_fetches
from bot.services.deal_events import PromptPolicy, record_deal_events
from bot.services.debriefs import Audience
from bot.services.losses import record_reason
from bot.validation import ReasonForm
from storage.models import CrmJob, CrmJobState, Deal, DealEventRecord, Loss
from tests.bot_client import eventually, rows
from tests.conftest import make_settings
from tests.fake_crm import SALESFORCE_TOKEN, FakeCrm
from tests.fake_slack import Failure

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CATALOGUE = Catalogue(DEFAULT_REASONS)
POLICY = PromptPolicy(bulk_window=timedelta(0), bulk_max=timedelta(0), min_amount=Decimal(0))
EXPLANATION = "Initech undercut us by 30% and bundled onboarding for free."


@pytest.fixture
async def connectors(fake_crm: FakeCrm) -> AsyncIterator[dict[str, Connector]]:
    settings = make_settings(
        "sqlite+aiosqlite://",
        "http://127.0.0.1:9/api/",
        hubspot_token="pat-token",
        hubspot_api_url=fake_crm.url,
        hubspot_explanation_property="closed_lost_explanation",
        pipedrive_api_token="pipedrive-token",
        pipedrive_api_url=fake_crm.url,
        salesforce_instance_url=fake_crm.url,
        salesforce_client_id="consumer-key",
        salesforce_client_secret="consumer-secret",
        salesforce_reason_field="Loss_Reason__c",
        salesforce_explanation_field="Loss_Explanation__c",
    )
    async with aiohttp.ClientSession() as http:
        yield build_connectors(settings, http)


async def run(
    session_factory: async_sessionmaker[AsyncSession],
    connectors: dict[str, Connector],
    at: datetime,
    *,
    process_id: str = "process-a",
) -> int:
    async def record(events: list[DealEvent]) -> object:
        return await record_deal_events(session_factory=session_factory, events=events, received_at=at, policy=POLICY)

    return await crm_jobs.run_due_jobs(
        session_factory=session_factory,
        connectors=connectors,
        catalogue=CATALOGUE,
        clock=lambda: at,
        record=record,
        process_id=process_id,
    )


def hubspot_change(deal_id: int = 1) -> PendingEvent:
    payload: dict[str, Any] = {
        "subscriptionId": 2745113,
        "portalId": 44831207,
        "occurredAt": int((NOW - timedelta(minutes=1)).timestamp() * 1000),
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": deal_id,
        "propertyName": "dealstage",
        "propertyValue": "closedlost",
    }
    return PendingEvent(key=f"2745113:{deal_id}:dealstage:closedlost:{payload['occurredAt']}", payload=payload)


async def queue_hubspot_change(session_factory: async_sessionmaker[AsyncSession], fake_crm: FakeCrm) -> None:
    fake_crm.hubspot_deals["1"] = {"dealname": "Globex", "hubspot_owner_id": "7", "pipeline": "default"}
    fake_crm.hubspot_owners["7"] = "dana@example.com"
    assert (
        await queue_fetches(session_factory=session_factory, source="hubspot", events=[hubspot_change()], now=NOW) == 1
    )


# --- fetching the deal a webhook names ------------------------------------------------------------


async def test_a_hubspot_outage_delays_the_fetch_which_is_recorded_once_when_hubspot_recovers(
    session_factory: async_sessionmaker[AsyncSession], fake_crm: FakeCrm, connectors: dict[str, Connector]
) -> None:
    await queue_hubspot_change(session_factory, fake_crm)
    fake_crm.fail("hubspot.deal", Failure(500), Failure(503))

    assert await run(session_factory, connectors, NOW) == 1
    (job,) = await rows(session_factory, CrmJob)
    assert (job.state, job.attempts, job.due_at) == (CrmJobState.PENDING, 1, NOW + backoff(1))
    assert "HubSpot answered 500" in (job.last_error or "")
    assert await run(session_factory, connectors, NOW + backoff(1) - timedelta(seconds=1)) == 0
    assert await run(session_factory, connectors, NOW + backoff(1)) == 1
    assert await rows(session_factory, Deal) == []

    assert await run(session_factory, connectors, NOW + timedelta(hours=1)) == 1
    assert await run(session_factory, connectors, NOW + timedelta(days=1)) == 0

    (job,) = await rows(session_factory, CrmJob)
    assert (job.state, job.attempts) == (CrmJobState.DONE, 3)
    (deal,) = await rows(session_factory, Deal)
    assert (deal.name, deal.stage, deal.owner_email) == ("Globex", "closed_lost", "dana@example.com")
    assert len(await rows(session_factory, DealEventRecord)) == 1
    assert len(await rows(session_factory, Loss)) == 1
    assert len(fake_crm.calls_to("hubspot.deal")) == 3


async def test_a_429_is_retried_when_retry_after_says(
    session_factory: async_sessionmaker[AsyncSession], fake_crm: FakeCrm, connectors: dict[str, Connector]
) -> None:
    await queue_hubspot_change(session_factory, fake_crm)
    fake_crm.fail("hubspot.owner", Failure(429, retry_after=7))

    await run(session_factory, connectors, NOW)

    (job,) = await rows(session_factory, CrmJob)
    assert (job.state, job.due_at) == (CrmJobState.PENDING, NOW + timedelta(seconds=7))
    assert "429" in (job.last_error or "")
    assert await run(session_factory, connectors, NOW + timedelta(seconds=7)) == 1
    assert [deal.owner_email for deal in await rows(session_factory, Deal)] == ["dana@example.com"]


async def test_a_deal_deleted_before_it_could_be_fetched_is_recorded_as_failed_with_the_reason(
    session_factory: async_sessionmaker[AsyncSession], fake_crm: FakeCrm, connectors: dict[str, Connector]
) -> None:
    await queue_fetches(session_factory=session_factory, source="hubspot", events=[hubspot_change(404)], now=NOW)

    await run(session_factory, connectors, NOW)

    (job,) = await rows(session_factory, CrmJob)
    assert job.state == CrmJobState.FAILED
    assert "HubSpot answered 404" in (job.last_error or "")
    assert job.payload == hubspot_change(404).payload  # kept, not dropped
    assert await run(session_factory, connectors, NOW + timedelta(days=1)) == 0
    assert await rows(session_factory, Deal) == []


async def test_a_fetch_that_keeps_failing_is_given_up_after_the_last_attempt_with_the_reason(
    session_factory: async_sessionmaker[AsyncSession], fake_crm: FakeCrm, connectors: dict[str, Connector]
) -> None:
    await queue_hubspot_change(session_factory, fake_crm)
    fake_crm.fail("hubspot.deal", *[Failure(500)] * crm_jobs.MAX_ATTEMPTS)

    for attempt in range(crm_jobs.MAX_ATTEMPTS):
        assert await run(session_factory, connectors, NOW + timedelta(days=attempt)) == 1

    (job,) = await rows(session_factory, CrmJob)
    assert (job.state, job.attempts) == (CrmJobState.FAILED, crm_jobs.MAX_ATTEMPTS)
    assert "HubSpot answered 500" in (job.last_error or "")


async def test_a_pipedrive_owner_lookup_outage_delays_the_event(
    session_factory: async_sessionmaker[AsyncSession], fake_crm: FakeCrm, connectors: dict[str, Connector]
) -> None:
    fake_crm.pipedrive_users[42] = "sam@example.com"
    payload = {
        "meta": {"action": "change", "entity": "deal", "version": "2.0", "host": "acme.pipedrive.com"},
        "data": {"id": 5, "title": "Initech", "owner_id": 42, "status": "lost", "update_time": "2026-11-23T09:00:00Z"},
    }
    event = PendingEvent(key="pipedrive:deal:5:closed_lost:2026-11-23T09:00:00+00:00", payload=payload)
    await queue_fetches(session_factory=session_factory, source="pipedrive", events=[event], now=NOW)
    fake_crm.fail("pipedrive.user", Failure(502))

    await run(session_factory, connectors, NOW)
    assert await rows(session_factory, Deal) == []
    await run(session_factory, connectors, NOW + timedelta(hours=1))

    (deal,) = await rows(session_factory, Deal)
    assert (deal.external_id, deal.owner_email, deal.stage) == ("5", "sam@example.com", "closed_lost")


@pytest.mark.parametrize("late_answer", [None, Failure(500)], ids=["fetched", "to retry"])
async def test_a_process_whose_claim_ran_out_records_nothing_of_the_job_another_process_took_over(
    session_factory: async_sessionmaker[AsyncSession],
    fake_crm: FakeCrm,
    connectors: dict[str, Connector],
    caplog: pytest.LogCaptureFixture,
    late_answer: Failure | None,
) -> None:
    """HubSpot answers the first process after its claim (CLAIM_FOR) ran out; by then the second
    process has claimed the job and done it."""
    await queue_hubspot_change(session_factory, fake_crm)
    slow = fake_crm.hold("hubspot.deal")
    first = asyncio.create_task(run(session_factory, connectors, NOW, process_id="first"))
    await eventually(lambda: fake_crm.calls_to("hubspot.deal"), what="the first process to call HubSpot")
    (job,) = await rows(session_factory, CrmJob)
    assert (job.claimed_by, job.claimed_until) == ("first", NOW + crm_jobs.CLAIM_FOR)

    later = NOW + crm_jobs.CLAIM_FOR + timedelta(minutes=1)
    assert await run(session_factory, connectors, later, process_id="second") == 1
    slow.set_result(late_answer)
    with caplog.at_level(logging.WARNING, logger="bot.services.crm_jobs"):
        assert await first == 1
    assert "was taken over by another process" in caplog.text

    (job,) = await rows(session_factory, CrmJob)
    assert (job.state, job.attempts, job.done_at, job.last_error) == (CrmJobState.DONE, 1, later, None)
    assert job.claimed_by == "second"
    assert len(await rows(session_factory, DealEventRecord)) == 1
    assert len(await rows(session_factory, Loss)) == 1


# --- writing reasons back -------------------------------------------------------------------------


async def log_reason(
    session_factory: async_sessionmaker[AsyncSession], *, source: str, code: str = "competitor", revision: int = 0
) -> None:
    """A lost deal of `source` whose owner logs a reason (revision 0) or edits it."""
    if revision == 0:
        event = DealEvent(
            source=source,
            deal_id="0065g00000LmNoPAAV",
            name="Globex",
            stage="closed_lost",
            owner_email=None,
            owner_slack_id="U0DANA001",
            changed_at=NOW - timedelta(hours=1),
        )
        await record_deal_events(session_factory=session_factory, events=[event], received_at=NOW, policy=POLICY)
    (loss,) = await rows(session_factory, Loss)
    await record_reason(
        session_factory=session_factory,
        loss_id=loss.id,
        revision=revision,
        form=ReasonForm(
            reason_code=code,
            detail="Initech" if code == "competitor" else None,
            explanation=EXPLANATION,
            revisit_on=None,
        ),
        catalogue=CATALOGUE,
        user_id="U0DANA001",
        view_id=None,
        now=NOW,
        write_back_to={"hubspot", "pipedrive", "salesforce"},
        audience=Audience(),
        competitor_merges={},
    )


async def test_a_pipedrive_outage_delays_the_write_back_which_is_written_once_on_recovery(
    session_factory: async_sessionmaker[AsyncSession], fake_crm: FakeCrm, connectors: dict[str, Connector]
) -> None:
    await log_reason(session_factory, source="pipedrive")
    fake_crm.fail("pipedrive.update_deal", Failure(500), Failure(500))

    await run(session_factory, connectors, NOW)
    await run(session_factory, connectors, NOW + timedelta(minutes=5))
    (job,) = await rows(session_factory, CrmJob)
    assert (job.state, job.attempts) == (CrmJobState.PENDING, 2)
    await run(session_factory, connectors, NOW + timedelta(hours=1))
    await run(session_factory, connectors, NOW + timedelta(days=1))

    writes = fake_crm.calls_to("pipedrive.update_deal")
    assert len(writes) == 3  # two refused, one written
    assert writes[-1].path == "/api/v2/deals/0065g00000LmNoPAAV"
    assert writes[-1].body == {"lost_reason": "Lost to a competitor: Initech"}
    assert writes[-1].headers["x-api-token"] == "pipedrive-token"
    (job,) = await rows(session_factory, CrmJob)
    assert job.state == CrmJobState.DONE


async def test_a_hubspot_write_back_waits_out_a_429(
    session_factory: async_sessionmaker[AsyncSession], fake_crm: FakeCrm, connectors: dict[str, Connector]
) -> None:
    await log_reason(session_factory, source="hubspot")
    fake_crm.fail("hubspot.update_deal", Failure(429, retry_after=10))

    await run(session_factory, connectors, NOW)
    assert await run(session_factory, connectors, NOW + timedelta(seconds=9)) == 0
    await run(session_factory, connectors, NOW + timedelta(seconds=10))

    writes = fake_crm.calls_to("hubspot.update_deal")
    assert len(writes) == 2
    assert writes[-1].body == {
        "properties": {"closed_lost_reason": "Lost to a competitor: Initech", "closed_lost_explanation": EXPLANATION}
    }
    assert writes[-1].headers["Authorization"] == "Bearer pat-token"


async def test_a_salesforce_write_back_gets_a_token_by_client_credentials_and_renews_it_when_refused(
    session_factory: async_sessionmaker[AsyncSession], fake_crm: FakeCrm, connectors: dict[str, Connector]
) -> None:
    await log_reason(session_factory, source="salesforce")
    await run(session_factory, connectors, NOW)
    await log_reason(session_factory, source="salesforce", code="price", revision=1)
    fake_crm.fail("salesforce.update", Failure(401))  # the token expired meanwhile
    await run(session_factory, connectors, NOW)

    (token_request, *_) = fake_crm.calls_to("salesforce.token")
    assert token_request.body == {
        "grant_type": "client_credentials",
        "client_id": "consumer-key",
        "client_secret": "consumer-secret",
    }
    assert len(fake_crm.calls_to("salesforce.token")) == 2
    writes = fake_crm.calls_to("salesforce.update")
    assert [write.body for write in writes] == [
        {"Loss_Reason__c": "Lost to a competitor: Initech", "Loss_Explanation__c": EXPLANATION},
        {"Loss_Reason__c": "Price / budget", "Loss_Explanation__c": EXPLANATION},
        {"Loss_Reason__c": "Price / budget", "Loss_Explanation__c": EXPLANATION},
    ]
    assert writes[0].path == "/services/data/v61.0/sobjects/Opportunity/0065g00000LmNoPAAV"
    assert writes[0].headers["Authorization"] == f"Bearer {SALESFORCE_TOKEN}"
    assert [job.state for job in await rows(session_factory, CrmJob)] == [CrmJobState.DONE, CrmJobState.DONE]


async def test_an_edit_made_before_the_write_back_ran_is_written_once_with_the_newest_reason(
    session_factory: async_sessionmaker[AsyncSession], fake_crm: FakeCrm, connectors: dict[str, Connector]
) -> None:
    await log_reason(session_factory, source="pipedrive")
    await log_reason(session_factory, source="pipedrive", code="price", revision=1)

    await run(session_factory, connectors, NOW)

    assert [call.body for call in fake_crm.calls_to("pipedrive.update_deal")] == [{"lost_reason": "Price / budget"}]
    assert len(await rows(session_factory, CrmJob)) == 1


async def test_a_write_back_refused_for_good_is_recorded_as_failed_with_the_reason(
    session_factory: async_sessionmaker[AsyncSession], fake_crm: FakeCrm, connectors: dict[str, Connector]
) -> None:
    await log_reason(session_factory, source="pipedrive")
    fake_crm.fail("pipedrive.update_deal", Failure(400, error="lost_reason must be one of the predefined reasons"))

    await run(session_factory, connectors, NOW)

    (job,) = await rows(session_factory, CrmJob)
    assert job.state == CrmJobState.FAILED
    assert "predefined reasons" in (job.last_error or "")
