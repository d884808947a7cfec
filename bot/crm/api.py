"""What the CRM API clients share: one JSON call, the one error it raises, and the page of deal
changes that listing a CRM's deals yields (the deals changed since a time, for the sweep; the deals
closed since a time, for the import).

Retrying a failed call is not done here but by the durable CRM jobs (`bot.services.crm_jobs`), which
outlive a restart; an error says whether retrying can help and, for a 429, when the CRM allows it.
Listings (the sweep, the import) space their calls to the CRM's rate limit where it is per second
(`Pacer`), and wait out a short 429 in place (`wait_out_rate_limits`).
"""

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import aiohttp

from bot.crm.event import DealEvent

# Answers about this one request (no such deal, no such field): sending it again cannot succeed.
PERMANENT_STATUSES = frozenset({400, 404, 405, 410, 422})
DEFAULT_RETRY_AFTER_SECONDS = 10.0
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=20)
# A 429 asking for a wait this short is waited out; a longer one (Pipedrive's daily budget spent)
# ends the listing, and the caller comes back later.
LONGEST_RATE_LIMIT_WAIT_SECONDS = 60.0
RATE_LIMIT_WAITS = 5

T = TypeVar("T")


class CrmApiError(Exception):
    """A CRM API call failed; the message says what happened, and never holds a token."""

    def __init__(
        self, message: str, *, status: int | None = None, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True)
class WriteBack:
    """A logged reason as a CRM receives it."""

    deal_id: str
    """The CRM's id of the deal."""
    reason: str
    """The reason's label, with the competitor or missing feature when there is one."""
    explanation: str


@dataclass(frozen=True)
class DealPage:
    """One page of a CRM's deals changed since a time, oldest change first (`list_deal_changes` in
    each CRM module)."""

    events: list[DealEvent]
    """Each deal as a webhook about it would report it now; deals the bot cannot read are left out
    (with a warning), so a page may hold fewer events than the CRM sent, or none."""
    cursor: datetime
    """The newest modification time the listing has reached: once the page's events are committed,
    a later listing can start from here."""


ListDealChanges = Callable[[datetime], AsyncIterator[DealPage]]
"""A CRM's `list_deal_changes` with its client and settings bound: the deals changed since a time."""

ListClosedDeals = Callable[[datetime], AsyncIterator[DealPage]]
"""A CRM's `list_closed_deals` with its client and settings bound: the deals closed (lost or won)
since a time, each dated by its close (see `closed_since`)."""


def closed_since(page: DealPage, since: datetime) -> DealPage:
    """The page's closed deals that closed at or after `since`, each with `changed_at` set to when it
    closed, where the CRM says: a listing finds deals by their last modification, but history counts
    a loss or a win on the day it happened. The time stays the same on every run, and so does the
    event's idempotency key. A deal whose close time the CRM does not give keeps its modification
    time, and so does one whose close time is after it (a close date typed in the future), which
    would otherwise hold every later event about the deal as older.

    A deal the bot already holds was closed by a webhook or the sweep at about that time, or later:
    the imported event is then older, or the same stage again, and changes nothing."""
    dated = [
        dataclasses.replace(event, changed_at=min(event.closed_at, event.changed_at))
        if event.closed_at is not None
        else event
        for event in page.events
    ]
    return DealPage(events=[event for event in dated if event.changed_at >= since], cursor=page.cursor)


@dataclass(frozen=True)
class Connector:
    """What the bot can do with one connected CRM's API."""

    fetch: Callable[[dict[str, Any]], Awaitable[DealEvent]] | None
    """Turns a stored webhook event into the full DealEvent; None when the CRM sends full events."""
    write_back: Callable[[WriteBack], Awaitable[None]] | None
    """Writes a reason to the deal; None when write-back is not configured."""
    list_changes: ListDealChanges
    """The deals changed since a time, for the sweep."""
    list_closed: ListClosedDeals
    """The deals closed since a time, for the import."""


class Pacer:
    """Spaces calls evenly at most `per_second` a second, whichever task makes them: a listing of
    many pages that ran into the limit instead would wait out a whole Retry-After (a second or more)
    for each call refused."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1 / per_second
        self._next_start = 0.0
        """The earliest time.monotonic() the next call may start."""

    async def wait(self) -> None:
        """Returns when the call about to be made may start."""
        now = time.monotonic()
        start = max(now, self._next_start)
        self._next_start = start + self._interval
        await asyncio.sleep(start - now)


async def wait_out_rate_limits(call: Callable[[], Awaitable[T]]) -> T:
    """Makes the call, and again after each 429 whose Retry-After is at most
    LONGEST_RATE_LIMIT_WAIT_SECONDS, up to RATE_LIMIT_WAITS times; any other error is raised. Search
    and list limits are per second (HubSpot's search allows 5 requests a second, Pipedrive's burst
    limit counts over 2 seconds), so a listing of many pages waits a moment rather than starting over."""
    waits = 0
    while True:
        try:
            return await call()
        except CrmApiError as error:
            wait = error.retry_after
            if error.status != 429 or wait is None or wait > LONGEST_RATE_LIMIT_WAIT_SECONDS:
                raise
            if waits == RATE_LIMIT_WAITS:
                raise
            waits += 1
            await asyncio.sleep(wait)


async def call_json(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    crm: str,
    headers: dict[str, str],
    json_body: Any = None,
    data: dict[str, str] | None = None,
) -> Any:
    """Sends one request and returns its JSON answer (None for an empty one), or raises CrmApiError."""
    try:
        async with http.request(
            method, url, headers=headers, json=json_body, data=data, timeout=REQUEST_TIMEOUT
        ) as response:
            text = await response.text()
            if response.status == 429:
                retry_after = _retry_after(response.headers.get("Retry-After"))
                raise CrmApiError(f"{crm} is rate-limiting us (429)", status=429, retry_after=retry_after)
            if response.status >= 400:
                raise CrmApiError(
                    f"{crm} answered {response.status} to {method} {response.url.path}: {text[:300]}",
                    status=response.status,
                    permanent=response.status in PERMANENT_STATUSES,
                )
    except (aiohttp.ClientError, TimeoutError) as error:
        raise CrmApiError(f"{crm} could not be reached: {type(error).__name__}: {error}") from None
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise CrmApiError(f"{crm} answered {method} {response.url.path} with something that is not JSON") from None


def _retry_after(value: str | None) -> float:
    """Retry-After in seconds; the HTTP-date form is rare from APIs and falls back to a default."""
    try:
        return max(float(value or ""), 0.0)
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS
