"""A fake HubSpot CRM API holding many closed deals, for the sync benchmark (bench/sync.py).

It answers what the bot reads from HubSpot (../shared/facts/crm-polling.md, "1. HubSpot"):

- `POST /crm/v3/objects/deals/search`: filters of a group ANDed, groups ORed (at most 5); EQ, NEQ,
  IN, NOT_IN on any property, GT, GTE, LT, LTE, BETWEEN on the date-time ones (epoch milliseconds);
  one ascending or descending sort; `limit` up to 200 and `after` an offset as a string; a 400 for
  a page reaching past the first 10,000 results of a query; `{total, results, paging.next.after}`
  with every property a string. Limited, it takes SEARCHES_PER_SECOND searches in any second and
  answers the others 429 with `Retry-After: 1`, as HubSpot's search limit does.
- `GET /crm/v3/pipelines/deals`: the default sales pipeline (closedwon, closedlost).
- `GET /crm/v3/owners/{id}`: an owner with an email.

Its deals close one after the other over YEARS years up to now, each modified 2 s after it closed:
70% lost, 30% won; most losses carry a `closed_lost_reason`, some of them a value REASON_ALIASES
must map, some one no alias knows. Seeded: every run holds the same deals.
"""

import bisect
import json
import random
import time
from collections import Counter, deque
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from harness import serve

SEARCHES_PER_SECOND = 5
PAGE_LIMIT = 200
RESULTS_CAP = 10_000
YEARS = 4
OWNERS = 200
DATE_PROPERTIES = ("closedate", "hs_lastmodifieddate", "createdate")
REASONS = (
    ("price", 25),
    ("competitor", 20),
    ("Timing", 12),
    ("Went dark", 15),  # mapped by REASON_ALIASES (bench/sync.py) to no_decision
    ("Budget cut", 10),  # mapped to price
    ("Other - see notes", 8),  # no alias: reported as unmapped
    ("", 10),
)


def owner_email(owner_id: str) -> str:
    return f"owner{owner_id}@example.com"


def hubspot_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_deals(count: int, now: datetime) -> list[dict[str, str]]:
    """The deals' properties, in the order they closed."""
    rng = random.Random(2026)
    reasons, weights = zip(*REASONS, strict=True)
    start = now - timedelta(days=YEARS * 365)
    step = (now - timedelta(hours=1) - start) / count
    deals = []
    for number in range(count):
        closed = start + step * number
        lost = rng.random() < 0.7
        deals.append(
            {
                "hs_object_id": str(40_000_000_000 + number),
                "dealname": f"Deal {number} - platform renewal",
                "amount": str(rng.randrange(1_000, 250_000)),
                "deal_currency_code": rng.choices(("USD", "EUR", "GBP"), (7, 2, 1))[0],
                "hubspot_owner_id": str(88_000_000 + rng.randrange(OWNERS)),
                "dealstage": "closedlost" if lost else "closedwon",
                "pipeline": "default",
                "closedate": hubspot_time(closed),
                "createdate": hubspot_time(closed - timedelta(days=rng.randrange(10, 200))),
                "hs_lastmodifieddate": hubspot_time(closed + timedelta(seconds=2)),
                "closed_lost_reason": rng.choices(reasons, weights)[0] if lost else "",
            }
        )
    return deals


def epoch_ms(value: str) -> int:
    return int(datetime.fromisoformat(value).timestamp() * 1000)


def pipelines() -> dict[str, Any]:
    def stage(stage_id: str, label: str, closed: bool, probability: str) -> dict[str, Any]:
        metadata = {"isClosed": "true" if closed else "false", "probability": probability}
        return {"id": stage_id, "label": label, "displayOrder": 0, "metadata": metadata, "archived": False}

    stages = [
        stage("appointmentscheduled", "Appointment Scheduled", False, "0.2"),
        stage("contractsent", "Contract Sent", False, "0.9"),
        stage("closedwon", "Closed Won", True, "1.0"),
        stage("closedlost", "Closed Lost", True, "0.0"),
    ]
    return {"results": [{"id": "default", "label": "Sales Pipeline", "stages": stages, "archived": False}]}


class Search:
    """The deals in closing order, which is also the order of every date-time property: a range
    filter on one is a slice found by bisection, and only the slice's deals are checked further."""

    def __init__(self, deals: list[dict[str, str]]) -> None:
        self.deals = deals
        self.keys = {name: [epoch_ms(deal[name]) for deal in deals] for name in ("closedate", "hs_lastmodifieddate")}
        self._last: tuple[str, list[int]] | None = None  # the matches of the last query, for its next pages

    def matching(self, groups: list[dict[str, Any]], sorts: list[Any]) -> list[int]:
        key = json.dumps([groups, sorts], sort_keys=True)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        found: set[int] = set()
        for group in groups or [{"filters": []}]:
            found.update(self._group(group["filters"]))
        ordered = sorted(found)
        if sorts:
            sort = sorts[0] if isinstance(sorts[0], dict) else {"propertyName": sorts[0].lstrip("-")}
            name = sort["propertyName"]
            if name not in self.keys:
                ordered.sort(key=lambda index: self.deals[index].get(name, ""))
            descending = sort.get("direction") == "DESCENDING" or str(sorts[0]).startswith("-")
            if descending:
                ordered.reverse()
        self._last = (key, ordered)
        return ordered

    def _group(self, filters: list[dict[str, Any]]) -> list[int]:
        low, high = 0, len(self.deals)
        others = []
        for rule in filters:
            name, operator = rule["propertyName"], rule["operator"]
            keys = self.keys.get(name)
            if keys is None or operator not in ("GT", "GTE", "LT", "LTE", "BETWEEN"):
                others.append(rule)
                continue
            value = int(rule["value"])
            if operator == "GT":
                low = max(low, bisect.bisect_right(keys, value))
            elif operator == "GTE":
                low = max(low, bisect.bisect_left(keys, value))
            elif operator == "LT":
                high = min(high, bisect.bisect_left(keys, value))
            elif operator == "LTE":
                high = min(high, bisect.bisect_right(keys, value))
            else:
                low = max(low, bisect.bisect_left(keys, value))
                high = min(high, bisect.bisect_right(keys, int(rule["highValue"])))
        return [index for index in range(low, high) if all(_matches(self.deals[index], rule) for rule in others)]


def _matches(deal: dict[str, str], rule: dict[str, Any]) -> bool:
    value = deal.get(rule["propertyName"])
    match rule["operator"]:
        case "EQ":
            return value == rule["value"]
        case "NEQ":
            return value != rule["value"]
        case "IN":
            return value in rule["values"]
        case "NOT_IN":
            return value not in rule["values"]
        case "HAS_PROPERTY":
            return bool(value)
        case "NOT_HAS_PROPERTY":
            return not value
    raise web.HTTPBadRequest(text=json.dumps({"status": "error", "category": "VALIDATION_ERROR"}))


def run_fake_hubspot(pipe: Any, count: int, limited: bool) -> None:
    """Serves `count` deals; `limited`: SEARCHES_PER_SECOND searches a second. Commands: "calls"
    (requests per route, and the 429s)."""
    search = Search(make_deals(count, datetime.now(UTC)))
    calls: Counter[str] = Counter()
    recent: deque[float] = deque()

    async def deals_search(request: web.Request) -> web.Response:
        calls["search"] += 1
        if limited:
            now = time.monotonic()
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) >= SEARCHES_PER_SECOND:
                calls["429"] += 1
                error = {
                    "status": "error",
                    "category": "RATE_LIMITS",
                    "message": "You have reached your secondly limit.",
                }
                return web.json_response(error, status=429, headers={"Retry-After": "1"})
            recent.append(now)
        body = await request.json()
        limit, after = int(body.get("limit", 10)), int(body.get("after") or 0)
        groups = body.get("filterGroups", [])
        if not 0 < limit <= PAGE_LIMIT or len(groups) > 5:
            return web.json_response({"status": "error", "category": "VALIDATION_ERROR"}, status=400)
        if after + limit > RESULTS_CAP:
            message = f"Cannot page beyond {RESULTS_CAP} results"
            return web.json_response(
                {"status": "error", "category": "VALIDATION_ERROR", "message": message}, status=400
            )
        matching = search.matching(groups, body.get("sorts", []))
        wanted = body.get("properties") or ["dealname", "amount", "closedate", "pipeline", "dealstage"]
        results = []
        for index in matching[after : after + limit]:
            deal = search.deals[index]
            results.append(
                {
                    "id": deal["hs_object_id"],
                    "properties": {name: deal.get(name) or None for name in wanted},
                    "createdAt": deal["createdate"],
                    "updatedAt": deal["hs_lastmodifieddate"],
                    "archived": False,
                }
            )
        answer: dict[str, Any] = {"total": len(matching), "results": results}
        if after + limit < len(matching):
            following = str(after + limit)
            answer["paging"] = {"next": {"after": following, "link": f"?after={following}"}}
        return web.json_response(answer)

    async def deal_pipelines(request: web.Request) -> web.Response:
        calls["pipelines"] += 1
        return web.json_response(pipelines())

    async def owner(request: web.Request) -> web.Response:
        calls["owners"] += 1
        owner_id = request.match_info["id"]
        return web.json_response({"id": owner_id, "email": owner_email(owner_id), "type": "PERSON", "archived": False})

    app = web.Application()
    app.router.add_post("/crm/v3/objects/deals/search", deals_search)
    app.router.add_post("/crm/v3/objects/0-3/search", deals_search)
    app.router.add_get("/crm/v3/pipelines/deals", deal_pipelines)
    app.router.add_get("/crm/v3/owners/{id}", owner)
    serve(app, pipe, {"calls": lambda: dict(calls)})
