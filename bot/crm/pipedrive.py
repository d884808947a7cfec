"""Pipedrive: deal webhooks (v2, and v1) in, the deal's `lost_reason` out.

Pipedrive signs nothing; a webhook carries the HTTP Basic credentials it was created with. The deal
in a webhook names its owner by user id only, so each change is stored as it comes and the owner's
email is looked up afterwards by a CRM job (and remembered). The sweep and the import list deals
with API v2 (`list_deal_changes`), whose deals have the same fields as a v2 webhook's.

Webhooks v2: https://pipedrive.readme.io/docs/guide-for-webhooks-v2
API tokens: https://pipedrive.readme.io/docs/core-api-concepts-authentication
"""

import dataclasses
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bot.crm.api import CrmApiError, DealPage, WriteBack, call_json, closed_since, wait_out_rate_limits
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

SOURCE = "pipedrive"
STAGES = {"lost": CLOSED_LOST, "won": CLOSED_WON, "open": OPEN}
OWNER_CACHE_SECONDS = 3600.0
MAX_HOST_LENGTH = 253
"""The longest DNS name: a longer `meta.host` is no company's Pipedrive, and its link would not fit."""
LIST_PAGE_SIZE = 500


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
    host = meta.get("host")
    return _read_deal(deal, owner_field=owner_field, host=host if isinstance(host, str) else None, raw=document)


def _read_deal(deal: dict[str, Any], *, owner_field: str, host: str | None, raw: dict[str, Any]) -> DealChange:
    """A deal as the API gives it (v2's fields; v1's `user_id` owner) as a DealChange; `host` is the
    company's Pipedrive domain, for the deal's link."""
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
    lost_reason = deal.get("lost_reason")
    closed_at = _time(deal.get("close_time") or deal.get(f"{status}_time")) if status != "open" else None
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
        closed_at=closed_at,
        raw=raw,
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

    async def list_deals(self, query: dict[str, str], *, archived: bool = False) -> dict[str, Any]:
        """GET /api/v2/deals (or /api/v2/deals/archived): `{"data": [...], "additional_data": {"next_cursor"}}`."""
        path = "/api/v2/deals/archived" if archived else "/api/v2/deals"
        answer = await self._call("GET", f"{path}?{urlencode(query)}")
        if not isinstance(answer, dict) or not isinstance(answer.get("data") or [], list):
            raise CrmApiError("Pipedrive answered a deal list without a list of deals")
        return answer

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


async def list_deal_changes(
    client: PipedriveClient, *, since: datetime, closed_only: bool = False, archived: bool = False
) -> AsyncIterator[DealPage]:
    """The deals updated at or after `since` (`update_time`), oldest first, 500 a page, each as the
    DealEvent a webhook about it would make (the same `update_time`, so the same idempotency key),
    with its owner's email (the users API, remembered by the client). `closed_only` keeps the lost
    and won deals; `archived` lists the archived deals instead, which the main list leaves out. A
    deal that cannot be read is left out with a warning.

    Short 429s are waited out; other failures raise CrmApiError, after the pages already yielded.
    https://developers.pipedrive.com/docs/api/v1/Deals#getDeals (API v2)
    """
    query = {
        "updated_since": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sort_by": "update_time",
        "sort_direction": "asc",
        "limit": str(LIST_PAGE_SIZE),
    }
    newest = since
    while True:
        answer = await wait_out_rate_limits(partial(client.list_deals, query, archived=archived))
        deals = answer.get("data") or []
        events = []
        for deal in deals:
            change = _listed_deal_change(deal)
            if change is None:
                continue
            newest = max(newest, change.event.changed_at)
            if closed_only and change.event.stage == OPEN:
                continue
            owner_email = await _user_email(client, change.owner_id)
            events.append(dataclasses.replace(change.event, owner_email=owner_email))
        if deals:
            yield DealPage(events=events, cursor=newest)
        cursor = (answer.get("additional_data") or {}).get("next_cursor")
        if not isinstance(cursor, str) or not cursor:
            return
        query = {**query, "cursor": cursor}


async def list_closed_deals(client: PipedriveClient, *, since: datetime) -> AsyncIterator[DealPage]:
    """The lost and won deals, archived ones included, closed (`close_time`) at or after `since`,
    dated by it (`closed_since`), with the paging and 429 waits of `list_deal_changes`."""
    for archived in (False, True):
        async for page in list_deal_changes(client, since=since, closed_only=True, archived=archived):
            yield closed_since(page, since)


def _listed_deal_change(deal: Any) -> DealChange | None:
    if not isinstance(deal, dict) or not is_storable(deal):
        logger.warning("Pipedrive listed a deal that is not an object of storable text: left out")
        return None
    try:
        return _read_deal(deal, owner_field="owner_id", host=None, raw=deal)
    except PayloadError as error:
        logger.warning("Pipedrive deal %s cannot be read (%s): left out", deal.get("id"), error)
        return None


async def _user_email(client: PipedriveClient, user_id: int) -> str | None:
    """The user's email; None for a user Pipedrive no longer has, so that one departed owner does
    not stop a listing."""
    try:
        return await wait_out_rate_limits(partial(client.user_email, user_id))
    except CrmApiError as error:
        if error.status != 404:
            raise
        logger.warning("Pipedrive has no user %s: their deals are recorded without an owner", user_id)
        return None


async def write_back(client: PipedriveClient, reason: WriteBack) -> None:
    await client.update_deal(reason.deal_id, {"lost_reason": reason.reason})
