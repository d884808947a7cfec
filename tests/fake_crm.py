"""Fake HubSpot, Pipedrive and Salesforce APIs over real HTTP, on port 0, in the test's own loop.

One server answers the few calls the bot makes to each CRM, records every call (name, path, query,
headers, body), and can be told to fail a call: a 500, a 429 with `Retry-After`, or a connection
dropped without an answer.

The list and search calls the sweep makes are shaped as ../shared/facts/crm-polling.md shows:
HubSpot's deal search (filters, one ascending sort, pages of at most 200 through `after`, and a 400
for a page past the first 10,000 results), Salesforce's SOQL query (pages through
`nextRecordsUrl`), Pipedrive's API v2 deal list (pages of at most 500 through `next_cursor`).
"""

import asyncio
import base64
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.fake_slack import Failure

SALESFORCE_TOKEN = "00Dfake!salesforce-access-token"
HUBSPOT_SEARCH_LIMIT = 200
HUBSPOT_RESULTS_CAP = 10_000
PIPEDRIVE_LIST_LIMIT = 500
SALESFORCE_BATCH_SIZES = range(200, 2001)


@dataclass
class CrmCall:
    name: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)
    """When the call arrived (time.monotonic)."""


def default_pipelines() -> list[dict[str, Any]]:
    """HubSpot's default sales pipeline, stage ids and metadata as its pipelines API returns them."""

    def stage(stage_id: str, label: str, closed: bool, probability: str) -> dict[str, Any]:
        metadata = {"isClosed": "true" if closed else "false", "probability": probability}
        return {"id": stage_id, "label": label, "displayOrder": 0, "metadata": metadata, "archived": False}

    return [
        {
            "id": "default",
            "label": "Sales Pipeline",
            "stages": [
                stage("appointmentscheduled", "Appointment Scheduled", False, "0.2"),
                stage("contractsent", "Contract Sent", False, "0.9"),
                stage("closedwon", "Closed Won", True, "1.0"),
                stage("closedlost", "Closed Lost", True, "0.0"),
            ],
        }
    ]


def hubspot_time(moment: datetime) -> str:
    """A date-time property as HubSpot writes it: `2026-01-14T16:02:13.512Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def salesforce_time(moment: datetime) -> str:
    """A dateTime field as Salesforce's REST API writes it: `2026-01-14T16:02:13.000+0000`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def pipedrive_time(moment: datetime) -> str:
    """A time as Pipedrive's API v2 writes it: `2026-01-14T16:02:13Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hubspot_deal(
    modified: datetime, *, stage: str = "closedlost", owner: str = "61829374", **properties: str
) -> dict[str, Any]:
    """A deal's properties as HubSpot stores them, last modified at `modified`; its `closedate` is
    2 s before (HubSpot sets it when a deal enters a closed stage). `properties` override."""
    deal = {
        "dealname": "Globex - 250 seats",
        "amount": "48000",
        "deal_currency_code": "usd",
        "hubspot_owner_id": owner,
        "dealstage": stage,
        "pipeline": "default",
        "closedate": hubspot_time(modified - timedelta(seconds=2)),
        "closed_lost_reason": "Went with a cheaper competitor (Initech)",
        "hs_lastmodifieddate": hubspot_time(modified),
    }
    deal.update(properties)
    return deal


def opportunity(number: int, modified: datetime, *, closed: bool = True, won: bool = False) -> dict[str, Any]:
    """An Opportunity's fields, SystemModstamp `modified`, LastModifiedDate a second before, and
    CloseDate the day of `modified` (in UTC)."""
    return {
        "Id": f"006RO00000Q{number:07d}",
        "Name": "Northwind - platform renewal",
        "Amount": 18000.0,
        "IsClosed": closed,
        "IsWon": won,
        "LastModifiedDate": salesforce_time(modified - timedelta(seconds=1)),
        "SystemModstamp": salesforce_time(modified),
        "Owner.Email": "Dana.Rep@Example.com",
        "Loss_Reason__c": "Price",
        "CloseDate": modified.astimezone(UTC).date().isoformat(),
    }


def pipedrive_deal(number: int, updated: datetime, *, status: str = "lost", owner_id: int = 120045) -> dict[str, Any]:
    """A deal as API v2 lists it, updated at `updated` and closed 2 s before unless open."""
    return {
        "id": number,
        "title": "Northwind - platform renewal",
        "owner_id": owner_id,
        "pipeline_id": 1,
        "stage_id": 5,
        "value": 18000,
        "currency": "EUR",
        "status": status,
        "lost_reason": "Chose a competitor on price" if status == "lost" else None,
        "close_time": pipedrive_time(updated - timedelta(seconds=2)) if status != "open" else None,
        "update_time": pipedrive_time(updated),
        "is_archived": False,
        "is_deleted": False,
        "custom_fields": {},
    }


@dataclass
class FakeCrm:
    hubspot_deals: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Deal id to its properties, as strings, as HubSpot stores them (`hs_lastmodifieddate` for the
    search, written with `hubspot_time`)."""
    hubspot_owners: dict[str, str] = field(default_factory=dict)
    hubspot_pipelines: list[dict[str, Any]] = field(default_factory=default_pipelines)
    pipedrive_users: dict[int, str] = field(default_factory=dict)
    pipedrive_deals: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Deal id to the deal as API v2 returns it (`update_time` written with `pipedrive_time`)."""
    pipedrive_archived_deals: dict[int, dict[str, Any]] = field(default_factory=dict)
    """The archived deals, which only `GET /api/v2/deals/archived` lists."""
    salesforce_opportunities: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Opportunity id to its fields (`SystemModstamp` and `LastModifiedDate` written with
    `salesforce_time`; `Owner.Email` as a key of its own); a query returns the fields it selects."""
    salesforce_fields: set[str] = field(
        default_factory=lambda: {
            "Id",
            "Name",
            "Amount",
            "IsClosed",
            "IsWon",
            "LastModifiedDate",
            "SystemModstamp",
            "Owner.Email",
            "Loss_Reason__c",
            "CloseDate",
        }
    )
    """The Opportunity fields the org has: selecting another is a 400 INVALID_FIELD."""
    calls: list[CrmCall] = field(default_factory=list)
    url: str = ""
    _failures: dict[str, list[Failure | None]] = field(default_factory=dict)
    _drops: dict[str, int] = field(default_factory=dict)
    _salesforce_cursors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _locators: itertools.count = field(default_factory=lambda: itertools.count(1))
    _held: dict[str, asyncio.Future[Failure | None]] = field(default_factory=dict)
    _held_after: dict[str, int] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        routes = [
            ("GET", "/crm/v3/objects/deals/{id}", "hubspot.deal", self._hubspot_deal),
            ("PATCH", "/crm/v3/objects/deals/{id}", "hubspot.update_deal", self._ok),
            ("GET", "/crm/v3/pipelines/deals", "hubspot.pipelines", self._hubspot_pipelines),
            ("GET", "/crm/v3/owners/{id}", "hubspot.owner", self._hubspot_owner),
            ("GET", "/api/v1/users/{id}", "pipedrive.user", self._pipedrive_user),
            ("PATCH", "/api/v2/deals/{id}", "pipedrive.update_deal", self._ok),
            ("POST", "/services/oauth2/token", "salesforce.token", self._salesforce_token),
            ("PATCH", "/services/data/{version}/sobjects/Opportunity/{id}", "salesforce.update", self._no_content),
            ("POST", "/crm/v3/objects/deals/search", "hubspot.search", self._hubspot_search),
            ("GET", "/api/v2/deals", "pipedrive.deals", self._pipedrive_deals),
            ("GET", "/api/v2/deals/archived", "pipedrive.archived_deals", self._pipedrive_deals),
            ("GET", "/services/data/{version}/query", "salesforce.query", self._salesforce_query),
            ("GET", "/services/data/{version}/query/{locator}", "salesforce.query_more", self._salesforce_query_more),
        ]
        for method, path, name, answer in routes:
            app.router.add_route(method, path, self._recording(name, answer))
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def fail(self, name: str, *failures: Failure, after: int = 0) -> None:
        """The next calls named `name`, once `after` more have been answered as usual, get these
        answers, in order; then it works again."""
        self._failures.setdefault(name, []).extend([None] * after + list(failures))

    def drop(self, name: str, times: int = 1) -> None:
        """The next `times` calls named `name` are received (and recorded) and their connection is
        closed without an answer."""
        self._drops[name] = self._drops.get(name, 0) + times

    def hold(self, name: str, *, after: int = 0) -> asyncio.Future[Failure | None]:
        """The next call named `name`, once `after` more have been answered as usual, is recorded,
        then answered only when the test sets the returned future: as usual with None, or with the
        Failure given (a slow CRM)."""
        self._held[name] = asyncio.get_running_loop().create_future()
        self._held_after[name] = after
        return self._held[name]

    def calls_to(self, name: str) -> list[CrmCall]:
        return [call for call in self.calls if call.name == name]

    def _recording(self, name: str, answer: Any) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            text = await request.text()
            if request.content_type == "application/json" and text:
                body: Any = json.loads(text)
            elif request.content_type == "application/x-www-form-urlencoded":
                body = dict(await request.post())
            else:
                body = text
            self.calls.append(CrmCall(name, request.path, dict(request.query), dict(request.headers), body))
            if self._drops.get(name):
                self._drops[name] -= 1
                assert request.transport is not None
                request.transport.close()
                return web.Response()
            pending = self._failures.get(name, [])
            held = None
            if self._held_after.get(name, 0) > 0:
                self._held_after[name] -= 1
            elif name in self._held:
                held = self._held.pop(name)
            if held is not None:
                answer_with = await held
                if answer_with is not None:
                    pending = [answer_with]
            failure = pending.pop(0) if pending else None
            if failure is not None:
                headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
                return web.json_response(
                    {"message": failure.error or "failing"}, status=failure.status, headers=headers
                )
            return await answer(request)

        return handle

    async def _hubspot_deal(self, request: web.Request) -> web.Response:
        deal_id = request.match_info["id"]
        if deal_id not in self.hubspot_deals:
            return web.json_response({"status": "error", "category": "OBJECT_NOT_FOUND"}, status=404)
        wanted = request.query.get("properties", "").split(",")
        stored = self.hubspot_deals[deal_id]
        properties = {name: stored.get(name) for name in wanted if name}
        return web.json_response({"id": deal_id, "properties": properties, "archived": False})

    async def _hubspot_pipelines(self, request: web.Request) -> web.Response:
        return web.json_response({"results": self.hubspot_pipelines})

    async def _hubspot_owner(self, request: web.Request) -> web.Response:
        email = self.hubspot_owners.get(request.match_info["id"])
        if email is None:
            return web.json_response({"status": "error", "category": "OBJECT_NOT_FOUND"}, status=404)
        return web.json_response({"id": request.match_info["id"], "email": email, "firstName": "Dana"})

    async def _pipedrive_user(self, request: web.Request) -> web.Response:
        email = self.pipedrive_users.get(int(request.match_info["id"]))
        if email is None:
            return web.json_response({"success": False, "error": "User not found"}, status=404)
        return web.json_response({"success": True, "data": {"id": int(request.match_info["id"]), "email": email}})

    async def _salesforce_token(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"access_token": SALESFORCE_TOKEN, "instance_url": self.url, "token_type": "Bearer", "scope": "api"}
        )

    async def _hubspot_search(self, request: web.Request) -> web.Response:
        """Filters of one group ANDed (GTE on a date-time property, given in epoch milliseconds; IN),
        one ascending sort (ties by id), `limit` up to 200, `after` an offset, and a 400 for any page
        reaching past the first 10,000 results."""
        body = await request.json()
        limit, after = int(body.get("limit", 10)), int(body.get("after", 0))
        if not 0 < limit <= HUBSPOT_SEARCH_LIMIT or len(body.get("filterGroups", [])) > 5:
            return web.json_response({"status": "error", "category": "VALIDATION_ERROR"}, status=400)
        if after + limit > HUBSPOT_RESULTS_CAP:
            message = f"Cannot page beyond {HUBSPOT_RESULTS_CAP} results"
            return web.json_response(
                {"status": "error", "category": "VALIDATION_ERROR", "message": message}, status=400
            )
        (group,) = body["filterGroups"]
        (sort,) = body["sorts"]
        assert sort["direction"] == "ASCENDING"
        matching = [
            (deal_id, deal)
            for deal_id, deal in self.hubspot_deals.items()
            if all(_hubspot_filter_matches(deal, rule) for rule in group["filters"])
        ]
        matching.sort(key=lambda item: (_epoch_ms(item[1].get(sort["propertyName"])), int(item[0])))
        page = matching[after : after + limit]
        results = [
            {
                "id": deal_id,
                "properties": {name: deal.get(name) for name in body["properties"]},
                "createdAt": deal.get("createdate"),
                "updatedAt": deal.get("hs_lastmodifieddate"),
                "archived": False,
            }
            for deal_id, deal in page
        ]
        answer: dict[str, Any] = {"total": len(matching), "results": results}
        if after + limit < len(matching):
            following = str(after + limit)
            answer["paging"] = {"next": {"after": following, "link": f"?after={following}"}}
        return web.json_response(answer)

    async def _pipedrive_deals(self, request: web.Request) -> web.Response:
        """`updated_since` (RFC 3339), `sort_by=update_time`, `sort_direction=asc`, `status` (a comma
        list), `limit` up to 500, and an opaque `cursor`."""
        query = request.query
        limit = int(query.get("limit", 100))
        if not 0 < limit <= PIPEDRIVE_LIST_LIMIT or query.get("sort_by") != "update_time":
            return web.json_response({"success": False, "error": "bad request"}, status=400)
        since = datetime.fromisoformat(query["updated_since"]) if "updated_since" in query else None
        statuses = set(query["status"].split(",")) if "status" in query else {"open", "won", "lost"}
        stored = self.pipedrive_archived_deals if request.path.endswith("/archived") else self.pipedrive_deals
        deals = [
            deal
            for deal in stored.values()
            if deal["status"] in statuses and (since is None or datetime.fromisoformat(deal["update_time"]) >= since)
        ]
        deals.sort(key=lambda deal: (deal["update_time"], deal["id"]), reverse=query.get("sort_direction") == "desc")
        start = int(base64.b64decode(query["cursor"])) if "cursor" in query else 0
        page = deals[start : start + limit]
        following = base64.b64encode(str(start + limit).encode()).decode() if start + limit < len(deals) else None
        return web.json_response({"success": True, "data": page, "additional_data": {"next_cursor": following}})

    async def _salesforce_query(self, request: web.Request) -> web.Response:
        """`SELECT fields FROM Opportunity WHERE SystemModstamp >= T [AND IsClosed = true] ORDER BY
        SystemModstamp ASC, Id ASC`, the selected fields only (a field the org lacks is a 400), in
        batches of `Sforce-Query-Options: batchSize` (200 to 2,000)."""
        if request.headers.get("Authorization") != f"Bearer {SALESFORCE_TOKEN}":
            return web.json_response([{"errorCode": "INVALID_SESSION_ID"}], status=401)
        match = re.fullmatch(
            r"SELECT (?P<fields>.+) FROM Opportunity WHERE SystemModstamp >= (?P<since>\S+)"
            r"(?P<closed> AND IsClosed = true)? ORDER BY SystemModstamp ASC, Id ASC",
            request.query["q"],
        )
        if match is None:
            return web.json_response([{"errorCode": "MALFORMED_QUERY", "message": request.query["q"]}], status=400)
        fields = [name.strip() for name in match["fields"].split(",")]
        unknown = [name for name in fields if name not in self.salesforce_fields]
        if unknown:
            return web.json_response(
                [{"errorCode": "INVALID_FIELD", "message": f"No such column {unknown[0]}"}], status=400
            )
        since = datetime.fromisoformat(match["since"])
        records = [
            _salesforce_record(opportunity, fields)
            for opportunity in sorted(
                self.salesforce_opportunities.values(), key=lambda o: (o["SystemModstamp"], o["Id"])
            )
            if datetime.fromisoformat(opportunity["SystemModstamp"]) >= since
            and (match["closed"] is None or opportunity["IsClosed"])
        ]
        return self._salesforce_batch(request, records)

    async def _salesforce_query_more(self, request: web.Request) -> web.Response:
        records = self._salesforce_cursors.pop(request.match_info["locator"], None)
        if records is None:
            return web.json_response([{"errorCode": "INVALID_QUERY_LOCATOR"}], status=400)
        return self._salesforce_batch(request, records)

    def _salesforce_batch(self, request: web.Request, records: list[dict[str, Any]]) -> web.Response:
        options = request.headers.get("Sforce-Query-Options", "batchSize=2000")
        size = int(options.removeprefix("batchSize="))
        assert size in SALESFORCE_BATCH_SIZES, options
        batch, rest = records[:size], records[size:]
        answer: dict[str, Any] = {"totalSize": len(records), "done": not rest, "records": batch}
        if rest:
            locator = f"01gFAKE{next(self._locators):08d}-{size}"
            self._salesforce_cursors[locator] = rest
            answer["nextRecordsUrl"] = f"/services/data/{request.match_info['version']}/query/{locator}"
        return web.json_response(answer)

    async def _ok(self, request: web.Request) -> web.Response:
        return web.json_response({"success": True})

    async def _no_content(self, request: web.Request) -> web.Response:
        return web.Response(status=204)


def _epoch_ms(value: Any) -> int:
    return int(datetime.fromisoformat(value).timestamp() * 1000) if isinstance(value, str) else 0


def _hubspot_filter_matches(deal: dict[str, Any], rule: dict[str, Any]) -> bool:
    value = deal.get(rule["propertyName"])
    if rule["operator"] == "GTE":
        return value is not None and _epoch_ms(value) >= int(rule["value"])
    if rule["operator"] == "IN":
        return value in rule["values"]
    raise AssertionError(f"the fake HubSpot search does not know the operator {rule['operator']}")


def _salesforce_record(opportunity: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "attributes": {"type": "Opportunity", "url": f"/services/data/v61.0/sobjects/Opportunity/{opportunity['Id']}"}
    }
    for name in fields:
        if name == "Owner.Email":
            email = opportunity.get("Owner.Email")
            record["Owner"] = {"attributes": {"type": "User"}, "Email": email} if email is not None else None
        else:
            record[name] = opportunity.get(name)
    return record
