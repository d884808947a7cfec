"""`list_deal_changes` of each CRM against the fake list and search APIs over real HTTP: the calls
made, paging, the deals as DealEvents, HubSpot's 10,000-result cap, 429s waited out or not, and
failures that end a listing after the pages already read."""

import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from bot.crm import hubspot, pipedrive, salesforce
from bot.crm.api import CrmApiError, DealPage
from bot.crm.event import CLOSED_LOST, CLOSED_WON, OPEN
from tests.fake_crm import SALESFORCE_TOKEN, FakeCrm, hubspot_deal, hubspot_time, opportunity, pipedrive_deal
from tests.fake_slack import Failure

HUBSPOT_SEARCHES_PER_SECOND = 5.0
"""HubSpot's search rate limit (HUBSPOT_SEARCHES_PER_SECOND's default)."""

SINCE = datetime(2026, 1, 14, 9, 0, tzinfo=UTC)
PIPEDRIVE_WEBHOOK = Path(__file__).parent / "fixtures" / "crm" / "pipedrive_deal_lost.json"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def read_all(pages: AsyncIterator[DealPage]) -> list[DealPage]:
    return [page async for page in pages]


# --- HubSpot -------------------------------------------------------------------------------------


def hubspot_client(http: aiohttp.ClientSession, fake_crm: FakeCrm) -> hubspot.HubSpotClient:
    return hubspot.HubSpotClient(
        http, api_url=fake_crm.url, token="pat-na1-test-token", searches_per_second=HUBSPOT_SEARCHES_PER_SECOND
    )


def list_hubspot(
    http: aiohttp.ClientSession, fake_crm: FakeCrm, *, since: datetime = SINCE, closed_only: bool = False
) -> AsyncIterator[DealPage]:
    return hubspot.list_deal_changes(
        hubspot_client(http, fake_crm), since=since, closed_only=closed_only, reason_property="closed_lost_reason"
    )


async def test_hubspot_lists_the_deals_modified_since_oldest_first_200_a_page_as_deal_events(
    http: aiohttp.ClientSession, fake_crm: FakeCrm
) -> None:
    fake_crm.hubspot_owners["61829374"] = "Dana@Example.com"
    fake_crm.hubspot_deals["1"] = hubspot_deal(SINCE - timedelta(milliseconds=1))  # before: not listed
    for number in range(2, 452):
        stage = ("closedlost", "closedwon", "contractsent")[number % 3]
        fake_crm.hubspot_deals[str(number)] = hubspot_deal(SINCE + timedelta(seconds=number), stage=stage)

    pages = await read_all(list_hubspot(http, fake_crm))

    assert [len(page.events) for page in pages] == [200, 200, 50]
    listed = [event for page in pages for event in page.events]
    assert [event.deal_id for event in listed] == [str(number) for number in range(2, 452)]
    assert [page.cursor for page in pages] == [SINCE + timedelta(seconds=s) for s in (201, 401, 451)]
    first = listed[0]  # deal 2: 2 % 3 == 2, an open stage
    assert (first.stage, first.closed_at) == (OPEN, None)
    lost = listed[1]  # deal 3
    assert (lost.source, lost.name, lost.stage, lost.owner_email) == (
        "hubspot",
        "Globex - 250 seats",
        CLOSED_LOST,
        "dana@example.com",
    )
    assert (lost.amount, lost.currency, lost.crm_reason) == (
        Decimal("48000.00"),
        "USD",
        hubspot_deal(SINCE)["closed_lost_reason"],
    )
    assert lost.changed_at == SINCE + timedelta(seconds=3)
    assert lost.closed_at == SINCE + timedelta(seconds=1)
    assert listed[2].stage == CLOSED_WON
    searches = fake_crm.calls_to("hubspot.search")
    assert [call.body.get("after") for call in searches] == [None, "200", "400"]
    assert searches[0].headers["Authorization"] == "Bearer pat-na1-test-token"
    assert searches[0].body["filterGroups"] == [
        {
            "filters": [
                {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(int(SINCE.timestamp() * 1000))}
            ]
        }
    ]
    assert searches[0].body["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
    assert searches[0].body["limit"] == 200
    assert "closed_lost_reason" in searches[0].body["properties"]
    # One owner, looked up once; the pipelines once per listing.
    assert len(fake_crm.calls_to("hubspot.owner")) == 1
    assert len(fake_crm.calls_to("hubspot.pipelines")) == 1


async def test_hubspot_closed_only_asks_for_the_closed_stages_of_every_pipeline(
    http: aiohttp.ClientSession, fake_crm: FakeCrm
) -> None:
    fake_crm.hubspot_pipelines.append(
        {
            "id": "4471202",
            "label": "Renewals",
            "stages": [
                {"id": "98765431", "label": "Talking", "metadata": {"isClosed": "false", "probability": "0.5"}},
                {"id": "98765432", "label": "Churned", "metadata": {"isClosed": "true", "probability": "0.0"}},
            ],
        }
    )
    fake_crm.hubspot_owners["61829374"] = "dana@example.com"
    for number, stage in enumerate(("contractsent", "closedlost", "98765431", "98765432", "closedwon"), start=1):
        fake_crm.hubspot_deals[str(number)] = hubspot_deal(SINCE + timedelta(seconds=number), stage=stage)

    pages = await read_all(list_hubspot(http, fake_crm, closed_only=True))

    listed = [(event.deal_id, event.stage) for page in pages for event in page.events]
    assert listed == [("2", CLOSED_LOST), ("4", CLOSED_LOST), ("5", CLOSED_WON)]
    (search,) = fake_crm.calls_to("hubspot.search")
    stage_filter = search.body["filterGroups"][0]["filters"][1]
    assert stage_filter == {
        "propertyName": "dealstage",
        "operator": "IN",
        "values": ["98765432", "closedlost", "closedwon"],
    }


async def test_hubspot_past_10000_changed_deals_moves_the_window_and_reads_every_deal_once(
    http: aiohttp.ClientSession, fake_crm: FakeCrm
) -> None:
    """Three deals share each millisecond, so the window restarts inside a group of equal times."""
    fake_crm.hubspot_owners["61829374"] = "dana@example.com"
    count = 10_450
    for number in range(count):
        fake_crm.hubspot_deals[str(number + 1)] = hubspot_deal(
            SINCE + timedelta(milliseconds=number // 3), stage="contractsent"
        )

    pages = await read_all(list_hubspot(http, fake_crm))

    listed = [event.deal_id for page in pages for event in page.events]
    assert len(listed) == count and set(listed) == {str(number + 1) for number in range(count)}
    assert [page.cursor for page in pages] == sorted(page.cursor for page in pages)
    searches = fake_crm.calls_to("hubspot.search")
    starts = sorted({int(call.body["filterGroups"][0]["filters"][0]["value"]) for call in searches})
    assert len(starts) == 2  # one restart, from the newest modification time the first window read
    assert starts[1] == int(SINCE.timestamp() * 1000) + (10_000 - 1) // 3
    assert all(int(call.body.get("after", 0)) + call.body["limit"] <= 10_000 for call in searches)


async def test_hubspot_searches_are_spaced_to_the_rate_limit_so_none_is_refused(
    http: aiohttp.ClientSession, fake_crm: FakeCrm
) -> None:
    fake_crm.hubspot_owners["61829374"] = "dana@example.com"
    for number in range(1, 1001):
        fake_crm.hubspot_deals[str(number)] = hubspot_deal(SINCE + timedelta(seconds=number), stage="contractsent")

    pages = await read_all(list_hubspot(http, fake_crm))

    assert sum(len(page.events) for page in pages) == 1000
    arrivals = [call.at for call in fake_crm.calls_to("hubspot.search")]
    assert len(arrivals) == 5
    # Five searches a second at most: each at least a fifth of a second after the one before.
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert min(gaps) >= 1 / HUBSPOT_SEARCHES_PER_SECOND


async def test_hubspot_a_short_429_is_waited_out_and_a_long_one_ends_the_listing_after_the_pages_read(
    http: aiohttp.ClientSession, fake_crm: FakeCrm
) -> None:
    fake_crm.hubspot_owners["61829374"] = "dana@example.com"
    for number in range(1, 451):
        fake_crm.hubspot_deals[str(number)] = hubspot_deal(SINCE + timedelta(seconds=number), stage="contractsent")
    fake_crm.fail("hubspot.search", Failure(429, retry_after=0), Failure(429, retry_after=1))

    pages = await read_all(list_hubspot(http, fake_crm))

    assert sum(len(page.events) for page in pages) == 450
    assert len(fake_crm.calls_to("hubspot.search")) == 3 + 2

    read: list[DealPage] = []
    listing = list_hubspot(http, fake_crm)
    read.append(await anext(listing))
    fake_crm.fail("hubspot.search", Failure(429, retry_after=3600))
    with pytest.raises(CrmApiError) as raised:
        read.append(await anext(listing))
    assert (raised.value.status, raised.value.retry_after) == (429, 3600)
    assert [len(page.events) for page in read] == [200]


async def test_hubspot_a_500_or_a_dropped_connection_ends_the_listing_after_the_pages_read(
    http: aiohttp.ClientSession, fake_crm: FakeCrm
) -> None:
    fake_crm.hubspot_owners["61829374"] = "dana@example.com"
    for number in range(1, 451):
        fake_crm.hubspot_deals[str(number)] = hubspot_deal(SINCE + timedelta(seconds=number), stage="contractsent")

    failures = {
        "answered 500": lambda: fake_crm.fail("hubspot.search", Failure(500)),
        "could not be reached": lambda: fake_crm.drop("hubspot.search"),
    }
    for message, fail in failures.items():
        listing = list_hubspot(http, fake_crm)
        first = await anext(listing)
        fail()
        with pytest.raises(CrmApiError, match=message) as raised:
            await anext(listing)
        assert not raised.value.permanent
        assert first.cursor == SINCE + timedelta(seconds=200)


async def test_hubspot_a_deal_in_an_unknown_stage_is_left_out_and_a_departed_owner_is_no_owner(
    http: aiohttp.ClientSession, fake_crm: FakeCrm
) -> None:
    fake_crm.hubspot_owners["61829374"] = "dana@example.com"
    fake_crm.hubspot_deals["1"] = hubspot_deal(SINCE + timedelta(seconds=1), stage="deleted-stage")
    fake_crm.hubspot_deals["2"] = hubspot_deal(SINCE + timedelta(seconds=2), owner="404404")

    (page,) = await read_all(list_hubspot(http, fake_crm))

    assert [(event.deal_id, event.owner_email) for event in page.events] == [("2", None)]
    assert page.cursor == SINCE + timedelta(seconds=2)


# --- Salesforce ----------------------------------------------------------------------------------


def salesforce_client(http: aiohttp.ClientSession, fake_crm: FakeCrm) -> salesforce.SalesforceClient:
    return salesforce.SalesforceClient(http, instance_url=fake_crm.url, client_id="id", client_secret="secret")


async def test_salesforce_queries_opportunities_by_systemmodstamp_following_next_records_url(
    http: aiohttp.ClientSession, fake_crm: FakeCrm
) -> None:
    fake_crm.salesforce_opportunities["old"] = {**opportunity(0, SINCE - timedelta(seconds=1)), "Id": "old"}
    for number in range(1, 1101):
        fake_crm.salesforce_opportunities[str(number)] = opportunity(
            number, SINCE + timedelta(seconds=number), closed=number % 2 == 0, won=number % 4 == 0
        )

    pages = await read_all(
        salesforce.list_deal_changes(salesforce_client(http, fake_crm), since=SINCE, reason_field="Loss_Reason__c")
    )

    assert [len(page.events) for page in pages] == [500, 500, 100]
    assert [page.cursor for page in pages] == [SINCE + timedelta(seconds=s) for s in (500, 1000, 1100)]
    listed = [event for page in pages for event in page.events]
    assert [event.stage for event in listed[:4]] == [OPEN, CLOSED_LOST, OPEN, CLOSED_WON]
    lost = listed[1]
    assert (lost.source, lost.deal_id, lost.name, lost.owner_email) == (
        "salesforce",
        "006RO00000Q0000002",
        "Northwind - platform renewal",
        "dana.rep@example.com",
    )
    assert (lost.amount, lost.crm_reason, lost.url) == (
        Decimal("18000.00"),
        "Price",
        f"{fake_crm.url}/006RO00000Q0000002",
    )
    assert lost.changed_at == SINCE + timedelta(seconds=1)  # LastModifiedDate, as the outbound message gives
    (query,) = fake_crm.calls_to("salesforce.query")
    assert query.query["q"] == (
        "SELECT Id, Name, Amount, IsClosed, IsWon, LastModifiedDate, SystemModstamp, Owner.Email, Loss_Reason__c"
        " FROM Opportunity WHERE SystemModstamp >= 2026-01-14T09:00:00Z ORDER BY SystemModstamp ASC, Id ASC"
    )
    assert query.headers["Authorization"] == f"Bearer {SALESFORCE_TOKEN}"
    assert query.headers["Sforce-Query-Options"] == "batchSize=500"
    assert len(fake_crm.calls_to("salesforce.query_more")) == 2
    assert len(fake_crm.calls_to("salesforce.token")) == 1


async def test_salesforce_closed_only_and_an_unsafe_reason_field_name(
    http: aiohttp.ClientSession, fake_crm: FakeCrm
) -> None:
    fake_crm.salesforce_opportunities["1"] = opportunity(1, SINCE, closed=False)
    fake_crm.salesforce_opportunities["2"] = opportunity(2, SINCE, closed=True)
    client = salesforce_client(http, fake_crm)

    (page,) = await read_all(salesforce.list_deal_changes(client, since=SINCE, closed_only=True, reason_field=None))

    assert [event.deal_id for event in page.events] == ["006RO00000Q0000002"]
    assert page.events[0].crm_reason is None
    assert "AND IsClosed = true" in fake_crm.calls_to("salesforce.query")[0].query["q"]
    with pytest.raises(CrmApiError, match="not a field's API name"):
        await read_all(salesforce.list_deal_changes(client, since=SINCE, reason_field="Id FROM User --"))
    assert len(fake_crm.calls_to("salesforce.query")) == 1


# --- Pipedrive -----------------------------------------------------------------------------------


def pipedrive_client(http: aiohttp.ClientSession, fake_crm: FakeCrm) -> pipedrive.PipedriveClient:
    return pipedrive.PipedriveClient(http, api_url=fake_crm.url, token="pipedrive-api-token")


async def test_pipedrive_lists_deals_updated_since_following_next_cursor(
    http: aiohttp.ClientSession, fake_crm: FakeCrm
) -> None:
    fake_crm.pipedrive_users.update({120045: "Dana@Example.com", 120046: "sam@example.com"})
    fake_crm.pipedrive_deals[1] = pipedrive_deal(1, SINCE - timedelta(seconds=1))
    for number in range(2, 1102):
        status = ("open", "won", "lost")[number % 3]
        fake_crm.pipedrive_deals[number] = pipedrive_deal(
            number, SINCE + timedelta(seconds=number), status=status, owner_id=120045 + number % 2
        )

    pages = await read_all(pipedrive.list_deal_changes(pipedrive_client(http, fake_crm), since=SINCE))

    assert [len(page.events) for page in pages] == [500, 500, 100]
    assert [page.cursor for page in pages] == [SINCE + timedelta(seconds=s) for s in (501, 1001, 1101)]
    listed = [event for page in pages for event in page.events]
    lost = listed[0]  # deal 2
    assert (lost.deal_id, lost.stage, lost.owner_email, lost.crm_reason) == (
        "2",
        CLOSED_LOST,
        "dana@example.com",
        "Chose a competitor on price",
    )
    assert (lost.amount, lost.currency, lost.changed_at) == (Decimal("18000.00"), "EUR", SINCE + timedelta(seconds=2))
    assert lost.closed_at == SINCE
    assert {event.stage for event in listed} == {OPEN, CLOSED_WON, CLOSED_LOST}
    calls = fake_crm.calls_to("pipedrive.deals")
    assert calls[0].query == {
        "updated_since": "2026-01-14T09:00:00Z",
        "sort_by": "update_time",
        "sort_direction": "asc",
        "limit": "500",
    }
    assert calls[0].headers["x-api-token"] == "pipedrive-api-token"
    assert [call.query.get("cursor") is not None for call in calls] == [False, True, True]
    assert len(fake_crm.calls_to("pipedrive.user")) == 2  # each owner once


async def test_pipedrive_a_listed_deal_has_the_idempotency_key_of_the_webhook_about_the_same_change(
    http: aiohttp.ClientSession, fake_crm: FakeCrm
) -> None:
    webhook = json.loads(PIPEDRIVE_WEBHOOK.read_bytes())
    fake_crm.pipedrive_users[webhook["data"]["owner_id"]] = "dana@example.com"
    fake_crm.pipedrive_deals[webhook["data"]["id"]] = webhook["data"]
    change = pipedrive.parse_deal_change(PIPEDRIVE_WEBHOOK.read_bytes())
    assert change is not None
    since = change.event.changed_at - timedelta(minutes=5)

    (page,) = await read_all(pipedrive.list_deal_changes(pipedrive_client(http, fake_crm), since=since))

    (listed,) = page.events
    assert listed.idempotency_key == change.event.idempotency_key
    assert (listed.stage, listed.changed_at, listed.crm_reason) == (
        change.event.stage,
        change.event.changed_at,
        change.event.crm_reason,
    )


async def test_pipedrive_closed_only_and_archived_deals(http: aiohttp.ClientSession, fake_crm: FakeCrm) -> None:
    fake_crm.pipedrive_users[120045] = "dana@example.com"
    fake_crm.pipedrive_deals[1] = pipedrive_deal(1, SINCE, status="open")
    fake_crm.pipedrive_deals[2] = pipedrive_deal(2, SINCE, status="won")
    fake_crm.pipedrive_archived_deals[3] = pipedrive_deal(3, SINCE, status="lost")
    client = pipedrive_client(http, fake_crm)

    (page,) = await read_all(pipedrive.list_deal_changes(client, since=SINCE, closed_only=True))
    (archived,) = await read_all(pipedrive.list_deal_changes(client, since=SINCE, archived=True))

    assert [(event.deal_id, event.stage) for event in page.events] == [("2", CLOSED_WON)]
    assert page.cursor == SINCE  # the open deal was read too
    assert [event.deal_id for event in archived.events] == ["3"]


async def test_pipedrive_a_short_429_is_waited_out_and_a_deal_that_cannot_be_read_is_left_out(
    http: aiohttp.ClientSession, fake_crm: FakeCrm
) -> None:
    fake_crm.pipedrive_users[120045] = "dana@example.com"
    fake_crm.pipedrive_deals[1] = {**pipedrive_deal(1, SINCE), "title": ""}
    fake_crm.pipedrive_deals[2] = pipedrive_deal(2, SINCE + timedelta(seconds=1))
    fake_crm.fail("pipedrive.deals", Failure(429, retry_after=1))

    (page,) = await read_all(pipedrive.list_deal_changes(pipedrive_client(http, fake_crm), since=SINCE))

    assert [event.deal_id for event in page.events] == ["2"]
    assert len(fake_crm.calls_to("pipedrive.deals")) == 2


# --- The import's listing --------------------------------------------------------------------------


async def test_hubspot_closed_deals_are_dated_by_their_close_and_kept_from_since_on(
    http: aiohttp.ClientSession, fake_crm: FakeCrm
) -> None:
    fake_crm.hubspot_owners["61829374"] = "dana@example.com"
    modified = SINCE + timedelta(days=3)
    fake_crm.hubspot_deals["1"] = hubspot_deal(modified, closedate=hubspot_time(SINCE + timedelta(days=1)))
    fake_crm.hubspot_deals["2"] = hubspot_deal(modified, closedate=hubspot_time(SINCE - timedelta(days=1)))
    fake_crm.hubspot_deals["3"] = hubspot_deal(
        modified, stage="closedwon", closedate=hubspot_time(SINCE + timedelta(days=9))
    )
    fake_crm.hubspot_deals["4"] = hubspot_deal(modified, stage="contractsent")
    client = hubspot_client(http, fake_crm)

    pages = await read_all(hubspot.list_closed_deals(client, since=SINCE, reason_property="closed_lost_reason"))

    dated = {event.deal_id: (event.stage, event.changed_at) for page in pages for event in page.events}
    # Closed before SINCE: left out; a close date after the last change (typed in the future): the change.
    assert dated == {"1": (CLOSED_LOST, SINCE + timedelta(days=1)), "3": (CLOSED_WON, modified)}
