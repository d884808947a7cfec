"""Pipedrive: deal webhooks (v2, and v1) in, the deal's `lost_reason` out.

Pipedrive signs nothing; a webhook carries the HTTP Basic credentials it was created with. The deal
in a webhook names its owner by user id only, so each change is stored as it comes and the owner's
email is looked up afterwards by a CRM job (and remembered).

Webhooks v2: https://pipedrive.readme.io/docs/guide-for-webhooks-v2
API tokens: https://pipedrive.readme.io/docs/core-api-concepts-authentication
"""

import dataclasses
import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime
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

SOURCE = "pipedrive"
STAGES = {"lost": CLOSED_LOST, "won": CLOSED_WON, "open": OPEN}
OWNER_CACHE_SECONDS = 3600.0
MAX_HOST_LENGTH = 253
"""The longest DNS name: a longer `meta.host` is no company's Pipedrive, and its link would not fit."""


def is_authorized(header: str | None, *, user: str, password: str) -> bool:
    """The request's `Authorization: Basic …` carries the webhook's user and password."""
    if not header:
        return False
    try:
        given = aiohttp.BasicAuth.decode(header)
    except ValueError:
        return False
    # Both compared, whatever the first gives, so the time taken tells nothing.
    same_user = hmac.compare_digest(given.login.encode(), user.encode())
    same_password = hmac.compare_digest(given.password.encode(), password.encode())
    return same_user and same_password


@dataclass(frozen=True)
class DealChange:
    """A deal's state from a webhook, all but its owner's email."""

    owner_id: int
    event: DealEvent


def parse_deal_change(body: bytes) -> DealChange | None:
    """The deal change in a webhook body, or None for a webhook about something else (a person, a
    deleted deal), which is valid and ignored."""
    document = load_json(body)
    if not is_storable(document):
        message = "contains a NUL character or a lone surrogate, which cannot be stored"
        raise PayloadError([FieldError(None, None, message)])
    return read_deal_change(document)


def read_deal_change(document: Any) -> DealChange | None:
    """As `parse_deal_change`, from the decoded JSON; v2 has `meta.entity` and `data`, v1
    `meta.object` and `current`."""
    if not isinstance(document, dict) or not isinstance(document.get("meta"), dict):
        raise PayloadError([FieldError(None, "meta", "a Pipedrive webhook is an object with a meta object")])
    meta = document["meta"]
    if "entity" in meta:
        entity, action, deal, owner_field = meta.get("entity"), meta.get("action"), document.get("data"), "owner_id"
    else:
        entity, action, deal, owner_field = meta.get("object"), meta.get("action"), document.get("current"), "user_id"
    if entity != "deal" or action in ("delete", "deleted"):  # a tuple: `action` may be a list
        return None
    if not isinstance(deal, dict):
        raise PayloadError([FieldError(None, "data", "a deal webhook carries the deal (data, or current in v1)")])

    errors: list[FieldError] = []
    deal_id = deal.get("id")
    if not is_id(deal_id):
        errors.append(FieldError(None, "id", "must be the deal's id, a positive integer"))
    owner = deal.get(owner_field)
    owner_id = owner.get("id") if isinstance(owner, dict) else owner  # v1 may expand the user
    if not is_id(owner_id):
        errors.append(FieldError(None, owner_field, "must be the deal owner's user id"))
    title = deal.get("title")
    if not isinstance(title, str) or not title.strip():
        errors.append(FieldError(None, "title", "must be the deal's title, not empty"))
    status = deal.get("status")
    if not isinstance(status, str) or status not in STAGES:
        errors.append(FieldError(None, "status", f"must be open, won or lost: {status!r}"))
    changed_at = _time(deal.get("update_time"))
    if changed_at is None:
        errors.append(FieldError(None, "update_time", "must be the time the deal changed, in UTC"))
    if errors:
        raise PayloadError(errors)
    assert changed_at is not None and isinstance(title, str) and isinstance(status, str) and owner_id is not None
    host = meta.get("host")
    lost_reason = deal.get("lost_reason")
    event = DealEvent(
        source=SOURCE,
        deal_id=str(deal_id),
        name=title.strip(),
        stage=STAGES[status],
        owner_email=None,
        owner_slack_id=None,
        changed_at=changed_at,
        amount=parse_amount(deal.get("value")),
        currency=parse_currency(deal.get("currency")),
        url=f"https://{host}/deal/{deal_id}" if isinstance(host, str) and 0 < len(host) <= MAX_HOST_LENGTH else None,
        crm_reason=lost_reason.strip() or None if isinstance(lost_reason, str) else None,
        raw=document,
    )
    return DealChange(owner_id=owner_id, event=event)


def _time(value: Any) -> datetime | None:
    """v2 sends `2024-06-10T14:51:00Z`, v1 `2024-06-10 14:51:00`; both are UTC."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted out of range
        return None


class PipedriveClient:
    def __init__(self, http: aiohttp.ClientSession, *, api_url: str, token: str) -> None:
        self._http = http
        self._api_url = api_url
        self._headers = {"x-api-token": token}
        self._emails: dict[int, tuple[str | None, float]] = {}

    async def user_email(self, user_id: int) -> str | None:
        """GET /api/v1/users/{id}: the user's email, remembered for an hour."""
        cached = self._emails.get(user_id)
        if cached is not None and time.monotonic() - cached[1] < OWNER_CACHE_SECONDS:
            return cached[0]
        answer = await self._call("GET", f"/api/v1/users/{user_id}")
        user = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(user, dict):
            raise CrmApiError(f"Pipedrive answered user {user_id} without its data")
        email = user.get("email")
        email = email.lower() if isinstance(email, str) and email else None
        self._emails[user_id] = (email, time.monotonic())
        return email

    async def update_deal(self, deal_id: str, fields: dict[str, str]) -> None:
        """PATCH /api/v2/deals/{id}."""
        await self._call("PATCH", f"/api/v2/deals/{deal_id}", json_body=fields)

    async def _call(self, method: str, path: str, json_body: Any = None) -> Any:
        return await call_json(
            self._http, method, self._api_url + path, crm="Pipedrive", headers=self._headers, json_body=json_body
        )


async def fetch_deal_event(client: PipedriveClient, payload: dict[str, Any]) -> DealEvent:
    """The deal change stored from a webhook, with its owner's email."""
    change = read_deal_change(payload)
    if change is None:
        raise CrmApiError("the stored Pipedrive webhook is not a deal change", permanent=True)
    return dataclasses.replace(change.event, owner_email=await client.user_email(change.owner_id))


async def write_back(client: PipedriveClient, reason: WriteBack) -> None:
    await client.update_deal(reason.deal_id, {"lost_reason": reason.reason})
