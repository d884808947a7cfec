"""HubSpot: app webhooks for deal stage changes in, deal properties out.

A webhook names a deal and its new stage, nothing more, so each stage change is stored as it comes
and the deal (name, amount, owner, loss reason) is fetched afterwards by a CRM job. Whether a stage
is lost or won comes from the pipelines' own stage metadata, so custom pipelines need no setting.

Webhooks: https://developers.hubspot.com/docs/apps/legacy-apps/public-apps/create-generic-webhook-subscriptions
Signature v3: https://developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/request-validation
"""

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp

from bot.crm.api import CrmApiError, WriteBack, call_json
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

    def __init__(self, http: aiohttp.ClientSession, *, api_url: str, token: str) -> None:
        self._http = http
        self._api_url = api_url
        self._headers = {"Authorization": f"Bearer {token}"}
        self._stages: dict[str, str] = {}
        self._owners: dict[str, tuple[str | None, float]] = {}

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


async def write_back(
    client: HubSpotClient, reason: WriteBack, *, reason_property: str, explanation_property: str | None
) -> None:
    properties = {reason_property: reason.reason}
    if explanation_property:
        properties[explanation_property] = reason.explanation
    await client.update_deal(reason.deal_id, properties)
