"""HubSpot: app webhooks for deal stage changes in, deal properties out.

A webhook names a deal and its new stage, nothing more, so each stage change is stored as it comes
and the deal (name, amount, owner, loss reason) is fetched afterwards by a CRM job. Whether a stage
is lost or won comes from the pipelines' own stage metadata, so custom pipelines need no setting.

The sweep and the import read deals through the CRM search API instead (`list_deal_changes`).

Webhooks: https://developers.hubspot.com/docs/apps/legacy-apps/public-apps/create-generic-webhook-subscriptions
Signature v3: https://developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/request-validation
Search: https://developers.hubspot.com/docs/api-reference/latest/crm/search-the-crm
"""

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any

import aiohttp

from bot.crm.api import CrmApiError, DealPage, Pacer, WriteBack, call_json, closed_since, wait_out_rate_limits
from bot.crm.event import (
    CLOSED_LOST,
    CLOSED_WON,
    OPEN,
    DealEvent,
    FieldError,
    PayloadError,
    is_id,
    is_storable,
    load_json,
    parse_amount,
    parse_currency,
)

logger = logging.getLogger(__name__)

SOURCE = "hubspot"
SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
SIGNATURE_WINDOW_SECONDS = 300
MAX_EVENTS = 1000
STAGE_PROPERTY = "dealstage"
OWNER_CACHE_SECONDS = 3600.0
LAST_TIME_MS = 253_402_300_800_000
"""10000-01-01T00:00:00Z in milliseconds since 1970: the first time a datetime cannot hold."""
DEAL_PROPERTIES = ("dealname", "amount", "deal_currency_code", "hubspot_owner_id")
MODIFIED_PROPERTY = "hs_lastmodifieddate"
SEARCH_PAGE_SIZE = 200
SEARCH_RESULTS_CAP = 10_000
"""A search query answers its first 10,000 results; asking for a page past them is a 400."""
SEARCH_PACE = 0.96
"""The share of HUBSPOT_SEARCHES_PER_SECOND (HubSpot's search limit, 5 requests a second per account)
that searches are spaced to: a little less, so that a request that reaches HubSpot late does not
make the next ones look one too many."""
MAX_NAME_LENGTH = 500


def signature_v3(*, secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """base64 HMAC-SHA256 of method + URI + body + timestamp, keyed with the app's client secret."""
    message = method.encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def is_signed(
    *, secret: str, method: str, uri: str, body: bytes, timestamp: str, signature: str, now: datetime
) -> bool:
    """The v3 signature matches and its timestamp (milliseconds) is within 300 s of now."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    if abs(now.timestamp() - int(timestamp) / 1000) > SIGNATURE_WINDOW_SECONDS:
        return False
    expected = signature_v3(secret=secret, method=method, uri=uri, body=body, timestamp=timestamp)
    return hmac.compare_digest(expected.encode(), signature.encode())


@dataclass(frozen=True)
class StageChange:
    """A `deal.propertyChange` of `dealstage`, as stored until its deal is fetched."""

    key: str
    """HubSpot's `eventId` is not unique: the key is the subscription, deal, property, value and time."""
    payload: dict[str, Any]


def parse_stage_changes(body: bytes) -> list[StageChange]:
    """The deal stage changes in a webhook body (a JSON array). Other events (`deal.creation`,
    `deal.deletion`, changes of other properties) are valid and left out."""
    document = load_json(body)
    if not is_storable(document):
        message = "contains a NUL character or a lone surrogate, which cannot be stored"
        raise PayloadError([FieldError(None, None, message)])
    if not isinstance(document, list) or not document:
        raise PayloadError([FieldError(None, None, "the body must be a JSON array of events")])
    if len(document) > MAX_EVENTS:
        raise PayloadError([FieldError(None, None, f"the array has more than {MAX_EVENTS} events")])
    changes: list[StageChange] = []
    errors: list[FieldError] = []
    for index, item in enumerate(document):
        if not isinstance(item, dict) or not isinstance(item.get("subscriptionType"), str):
            errors.append(FieldError(index, "subscriptionType", "each event must be an object with a subscriptionType"))
            continue
        if item["subscriptionType"] != "deal.propertyChange" or item.get("propertyName") != STAGE_PROPERTY:
            continue
        problems = [
            FieldError(index, name, message)
            for name, valid, message in (
                ("objectId", is_id(item.get("objectId")), "must be the deal's id, a positive integer"),
                ("subscriptionId", is_id(item.get("subscriptionId")), "must be a positive integer"),
                ("portalId", is_id(item.get("portalId")), "must be a positive integer"),
                ("occurredAt", _is_time(item.get("occurredAt")), "must be a time in milliseconds since 1970"),
                ("propertyValue", _is_stage(item.get("propertyValue")), "must be a stage id of 1 to 100 characters"),
            )
            if not valid
        ]
        if problems:
            errors.extend(problems)
            continue
        changes.append(StageChange(key=_event_key(item), payload=item))
    if errors:
        raise PayloadError(errors)
    return changes


def _event_key(item: dict[str, Any]) -> str:
    # The composite HubSpot's docs advise, without attemptNumber so that a retried delivery matches.
    return ":".join(
        str(item[name]) for name in ("subscriptionId", "objectId", "propertyName", "propertyValue", "occurredAt")
    )


def _is_time(value: Any) -> bool:
    """Milliseconds since 1970 that a datetime can hold: before the year 10000."""
    return is_id(value) and value < LAST_TIME_MS


def _is_stage(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 100


class HubSpotClient:
    """The few CRM API calls the bot makes, with a private app's (or an app's) access token."""

    def __init__(self, http: aiohttp.ClientSession, *, api_url: str, token: str, searches_per_second: float) -> None:
        self._http = http
        self._api_url = api_url
        self._headers = {"Authorization": f"Bearer {token}"}
        self._stages: dict[str, str] = {}
        self._owners: dict[str, tuple[str | None, float]] = {}
        self._searches = Pacer(searches_per_second * SEARCH_PACE)

    async def deal(self, deal_id: str, properties: list[str]) -> dict[str, Any]:
        """GET /crm/v3/objects/deals/{id}: the deal's properties (a value is a string or None)."""
        answer = await self._call("GET", f"/crm/v3/objects/deals/{deal_id}?properties={','.join(properties)}")
        properties_found = answer.get("properties") if isinstance(answer, dict) else None
        if not isinstance(properties_found, dict):
            raise CrmApiError(f"HubSpot answered deal {deal_id} without its properties")
        return properties_found

    async def stage_outcome(self, stage_id: str) -> str:
        """CLOSED_LOST, CLOSED_WON or OPEN, from the pipelines'
        stage metadata (`isClosed`, and `probability` 1.0 for won). Fetched again when a stage is
        not known, which is how a new pipeline or stage gets picked up."""
        if stage_id not in self._stages:
            self._stages = await self._fetch_stages()
        if stage_id not in self._stages:
            raise CrmApiError(f"HubSpot has no deal stage {stage_id!r} in any pipeline", permanent=True)
        return self._stages[stage_id]

    async def owner_email(self, owner_id: str) -> str | None:
        """GET /crm/v3/owners/{id}: the owner's email, remembered for an hour."""
        cached = self._owners.get(owner_id)
        if cached is not None and time.monotonic() - cached[1] < OWNER_CACHE_SECONDS:
            return cached[0]
        answer = await self._call("GET", f"/crm/v3/owners/{owner_id}")
        email = answer.get("email") if isinstance(answer, dict) else None
        email = email.lower() if isinstance(email, str) and email else None
        self._owners[owner_id] = (email, time.monotonic())
        return email

    async def update_deal(self, deal_id: str, properties: dict[str, str]) -> None:
        """PATCH /crm/v3/objects/deals/{id}."""
        await self._call("PATCH", f"/crm/v3/objects/deals/{deal_id}", json_body={"properties": properties})

    async def search_deals(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /crm/v3/objects/deals/search: `{"total", "results", "paging"?}`, paced to the search
        rate limit (a 429 is still raised, for another process's searches count against it too)."""
        await self._searches.wait()
        answer = await self._call("POST", "/crm/v3/objects/deals/search", json_body=body)
        if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
            raise CrmApiError("HubSpot answered a deal search without a list of results")
        return answer

    async def stage_outcomes(self) -> dict[str, str]:
        """Every deal stage of every pipeline and its outcome (CLOSED_LOST, CLOSED_WON or OPEN),
        fetched afresh, so that a listing sees the pipelines as they are now."""
        self._stages = await self._fetch_stages()
        return dict(self._stages)

    async def _fetch_stages(self) -> dict[str, str]:
        answer = await self._call("GET", "/crm/v3/pipelines/deals")
        stages: dict[str, str] = {}
        for pipeline in answer.get("results", []) if isinstance(answer, dict) else []:
            for stage in pipeline.get("stages", []):
                metadata = stage.get("metadata") or {}
                stages[str(stage["id"])] = _outcome(metadata)
        return stages

    async def _call(self, method: str, path: str, json_body: Any = None) -> Any:
        return await call_json(
            self._http, method, self._api_url + path, crm="HubSpot", headers=self._headers, json_body=json_body
        )


def _outcome(metadata: dict[str, Any]) -> str:
    if str(metadata.get("isClosed")).lower() != "true":
        return OPEN
    try:
        won = Decimal(str(metadata.get("probability"))) >= 1
    except InvalidOperation:
        won = False
    return CLOSED_WON if won else CLOSED_LOST


async def fetch_deal_event(client: HubSpotClient, payload: dict[str, Any], *, reason_property: str) -> DealEvent:
    """The stage change stored from a webhook, completed with the deal as HubSpot has it now."""
    deal_id = str(payload["objectId"])
    properties = await client.deal(deal_id, [name for name in (*DEAL_PROPERTIES, reason_property) if name])
    owner_id = properties.get("hubspot_owner_id")
    reason = (properties.get(reason_property) or "").strip() if reason_property else ""
    stage = await client.stage_outcome(str(payload["propertyValue"]))
    return DealEvent(
        source=SOURCE,
        deal_id=deal_id,
        name=(properties.get("dealname") or "").strip() or f"HubSpot deal {deal_id}",
        stage=stage,
        owner_email=await client.owner_email(owner_id) if owner_id else None,
        owner_slack_id=None,
        changed_at=datetime.fromtimestamp(payload["occurredAt"] / 1000, tz=UTC),
        amount=parse_amount(properties.get("amount")),
        url=f"https://app.hubspot.com/contacts/{payload['portalId']}/deal/{deal_id}",
        currency=parse_currency(properties.get("deal_currency_code")),
        crm_reason=reason or None,
        event_id=_event_key(payload),
        raw=payload,
    )


async def list_deal_changes(
    client: HubSpotClient, *, since: datetime, closed_only: bool = False, reason_property: str
) -> AsyncIterator[DealPage]:
    """The deals modified at or after `since` (`hs_lastmodifieddate`), oldest first, 200 a page, each
    as the DealEvent a webhook about it would make now: `changed_at` is the modification time, so a
    webhook about an earlier stage change that arrives later changes nothing. `closed_only` keeps the
    deals in a closed stage (lost or won). The owner's email comes from the owners API (remembered
    by the client); a deal in a stage no pipeline has is left out with a warning.

    A search query answers at most 10,000 results, so before its next page would pass them the query
    starts again from the newest modification time read, leaving out the deals already read at that
    very time. Searches are paced to the rate limit (`HubSpotClient.search_deals`), short 429s are
    waited out; other failures raise CrmApiError, after the pages already yielded.
    """
    stages = await wait_out_rate_limits(client.stage_outcomes)
    properties = [*DEAL_PROPERTIES, "dealstage", "closedate", MODIFIED_PROPERTY]
    if reason_property:
        properties.append(reason_property)
    closed_stages = sorted(stage for stage, outcome in stages.items() if outcome != OPEN)
    if closed_only and not closed_stages:
        return
    start = _epoch_ms(since)
    skipped_at_start: set[str] = set()
    after: str | None = None
    read = 0
    newest, read_at_newest = start, set[str]()
    while True:
        filters: list[dict[str, Any]] = [{"propertyName": MODIFIED_PROPERTY, "operator": "GTE", "value": str(start)}]
        if closed_only:
            filters.append({"propertyName": "dealstage", "operator": "IN", "values": closed_stages})
        body: dict[str, Any] = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": MODIFIED_PROPERTY, "direction": "ASCENDING"}],
            "properties": properties,
            "limit": SEARCH_PAGE_SIZE,
        }
        if after is not None:
            body["after"] = after
        answer = await wait_out_rate_limits(partial(client.search_deals, body))
        results = answer["results"]
        read += len(results)
        events = []
        for result in results:
            deal_id, deal, modified = _search_result(result)
            modified_ms = _epoch_ms(modified)
            if modified_ms == start and deal_id in skipped_at_start:
                continue
            if modified_ms > newest:
                newest, read_at_newest = modified_ms, set()
            read_at_newest.add(deal_id)
            event = await _listed_deal_event(client, deal_id, deal, modified, stages, reason_property, result)
            if event is not None:
                events.append(event)
        if results:
            yield DealPage(events=events, cursor=datetime.fromtimestamp(newest / 1000, tz=UTC))
        after = _next_after(answer)
        if after is None:
            return
        if read + SEARCH_PAGE_SIZE > SEARCH_RESULTS_CAP:
            if newest == start:
                at = datetime.fromtimestamp(newest / 1000, tz=UTC).isoformat()
                raise CrmApiError(
                    f"more than {SEARCH_RESULTS_CAP} HubSpot deals were modified in the same millisecond ({at}): "
                    "the search cannot page past them"
                )
            start, skipped_at_start, after, read = newest, read_at_newest, None, 0


async def list_closed_deals(client: HubSpotClient, *, since: datetime, reason_property: str) -> AsyncIterator[DealPage]:
    """The deals in a closed stage (lost or won) whose `closedate` is at or after `since`, dated by
    it (`closed_since`), found among the closed deals modified since then, with the same paging,
    10,000-result windows and 429 waits as `list_deal_changes`."""
    async for page in list_deal_changes(client, since=since, closed_only=True, reason_property=reason_property):
        yield closed_since(page, since)


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _search_result(result: Any) -> tuple[str, dict[str, Any], datetime]:
    """A result's deal id, properties and modification time; a result without them is HubSpot
    answering something else than documented, which no later page can make up for."""
    properties = result.get("properties") if isinstance(result, dict) else None
    if not isinstance(properties, dict) or not isinstance(result.get("id"), str | int):
        raise CrmApiError("HubSpot answered a deal search with a result that has no id or properties")
    modified = _time(properties.get(MODIFIED_PROPERTY))
    if modified is None:
        raise CrmApiError(f"HubSpot answered deal {result['id']} without a valid {MODIFIED_PROPERTY}")
    return str(result["id"]), properties, modified


def _next_after(answer: dict[str, Any]) -> str | None:
    paging = answer.get("paging")
    next_page = paging.get("next") if isinstance(paging, dict) else None
    after = next_page.get("after") if isinstance(next_page, dict) else None
    return str(after) if isinstance(after, str | int) and str(after) else None


async def _listed_deal_event(
    client: HubSpotClient,
    deal_id: str,
    deal: dict[str, Any],
    modified: datetime,
    stages: dict[str, str],
    reason_property: str,
    result: dict[str, Any],
) -> DealEvent | None:
    stage = stages.get(str(deal.get("dealstage")))
    if stage is None:
        stage_id = deal.get("dealstage")
        logger.warning("HubSpot deal %s is in stage %r, which no pipeline has: left out", deal_id, stage_id)
        return None
    if not is_storable(result):
        logger.warning("HubSpot deal %s holds text that cannot be stored (a NUL character): left out", deal_id)
        return None
    owner_id = deal.get("hubspot_owner_id")
    reason = (deal.get(reason_property) or "").strip() if reason_property else ""
    return DealEvent(
        source=SOURCE,
        deal_id=deal_id,
        name=(deal.get("dealname") or "").strip()[:MAX_NAME_LENGTH] or f"HubSpot deal {deal_id}",
        stage=stage,
        owner_email=await _owner_email(client, str(owner_id)) if owner_id else None,
        owner_slack_id=None,
        changed_at=modified,
        amount=parse_amount(deal.get("amount")),
        currency=parse_currency(deal.get("deal_currency_code")),
        crm_reason=reason or None,
        closed_at=_time(deal.get("closedate")) if stage != OPEN else None,
        raw=result,
    )


async def _owner_email(client: HubSpotClient, owner_id: str) -> str | None:
    """The owner's email; None for an owner HubSpot no longer has, so that one departed owner does
    not stop a listing."""
    try:
        return await wait_out_rate_limits(lambda: client.owner_email(owner_id))
    except CrmApiError as error:
        if error.status != 404:
            raise
        logger.warning("HubSpot has no owner %s: their deals are recorded without an owner", owner_id)
        return None


def _time(value: Any) -> datetime | None:
    """A HubSpot date-time property (`2026-01-14T16:02:13.512Z`), in UTC; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


async def write_back(
    client: HubSpotClient, reason: WriteBack, *, reason_property: str, explanation_property: str | None
) -> None:
    properties = {reason_property: reason.reason}
    if explanation_property:
        properties[explanation_property] = reason.explanation
    await client.update_deal(reason.deal_id, properties)
