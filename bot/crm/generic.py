"""The generic deal webhook's wire format (README.md, "The deal webhook"): signature, then one event or an array.

Parsing checks every field of every event and reports them all at once, so a CRM admin fixes a
payload in one round trip; a batch with any bad event is refused whole.
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from slack_sdk.signature import SignatureVerifier

from bot.crm.event import DealEvent, FieldError, PayloadError, is_storable, load_json, parse_amount

SOURCE = "generic"
MAX_BODY_BYTES = 1024 * 1024
MAX_EVENTS = 100
SIGNATURE_WINDOW_SECONDS = 300
# A clock a few minutes fast at the CRM is tolerated; a date far ahead would freeze the deal's order.
FUTURE_TOLERANCE = timedelta(minutes=5)

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SLACK_USER_PATTERN = re.compile(r"^[UW][A-Z0-9]{2,31}$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")


class _Clock:
    """Adapts the bot's clock to the `now()` that slack_sdk's verifier asks for."""

    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> float:
        return self._now.timestamp()


def is_signed(*, secret: str, body: bytes, timestamp: str, signature: str, now: datetime) -> bool:
    """Slack's v0 scheme with our header names: hex HMAC-SHA256 of `v0:{timestamp}:{body}`, 300 s window."""
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    verifier = SignatureVerifier(secret, clock=_Clock(now))  # type: ignore[arg-type]
    return verifier.is_valid(body=body, timestamp=timestamp, signature=signature)


def is_utf8(body: bytes) -> bool:
    """JSON is UTF-8 (RFC 8259 §8.1), and the signature check needs text."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def parse_deal_events(body: bytes, *, now: datetime) -> list[DealEvent]:
    document = load_json(body)
    if isinstance(document, dict):
        items: list[Any] = [document]
    elif isinstance(document, list):
        items = document
        if not items:
            raise PayloadError([FieldError(None, None, "the array is empty: send 1 to 100 events")])
        if len(items) > MAX_EVENTS:
            message = f"the array has {len(items)} events: send at most {MAX_EVENTS} a request"
            raise PayloadError([FieldError(None, None, message)])
    else:
        raise PayloadError([FieldError(None, None, "the body must be a JSON object or an array of them")])

    events: list[DealEvent] = []
    errors: list[FieldError] = []
    for index, item in enumerate(items):
        event_or_errors = parse_event(item, index, now)
        if isinstance(event_or_errors, DealEvent):
            events.append(event_or_errors)
        else:
            errors.extend(event_or_errors)
    if errors:
        raise PayloadError(errors)
    return events


def parse_event(item: Any, index: int, now: datetime) -> DealEvent | list[FieldError]:
    """One event of a webhook body (or one row of an imported file, `bot.crm.csv_import`): the
    DealEvent, or every problem found, each naming the event's `index` and its field."""
    if not isinstance(item, dict):
        return [FieldError(index, None, "each event must be a JSON object")]
    unstorable = [name for name, value in item.items() if not is_storable(name) or not is_storable(value)]
    if unstorable:
        message = "contains a NUL character or a lone surrogate, which cannot be stored"
        return [FieldError(index, name, message) for name in unstorable]
    errors: list[FieldError] = []

    def fail(field: str, message: str) -> None:
        errors.append(FieldError(index, field, message))

    deal_id = _identifier(item.get("deal_id"))
    if deal_id is None:
        fail("deal_id", "required: the CRM's id of the deal, a string or an integer of 1 to 255 characters")
    name = _text(item.get("name"), 500)
    if name is None:
        fail("name", "required: the deal's name, 1 to 500 characters")
    stage = item.get("stage")
    # Checked once normalised: in lower case, İ is two characters.
    stage = _text(normalise_stage(stage), 100) if isinstance(stage, str) else None
    if stage is None:
        fail("stage", "required: closed_lost, closed_won or the name of an open stage")

    owner_email = item.get("owner_email")
    owner_slack_id = item.get("owner_slack_id")
    if owner_email is None and owner_slack_id is None:
        fail("owner_email", "required: the deal owner's email (or give owner_slack_id)")
    if owner_email is not None and (
        # The length stored is the lower case's, which can be longer: İ is two characters in it.
        not isinstance(owner_email, str) or len(owner_email.lower()) > 320 or not EMAIL_PATTERN.match(owner_email)
    ):
        fail("owner_email", f"not an email address: {owner_email!r}")
    if owner_slack_id is not None and (
        not isinstance(owner_slack_id, str) or not SLACK_USER_PATTERN.match(owner_slack_id)
    ):
        fail("owner_slack_id", f"not a Slack user id such as U0123ABCD: {owner_slack_id!r}")

    amount = parse_amount(item.get("amount"))
    if amount is None and item.get("amount") is not None:
        fail("amount", 'must be a number of 0 or more, such as 48000 or "48000.50"')
    currency = item.get("currency")
    if currency is not None:
        if isinstance(currency, str) and CURRENCY_PATTERN.match(currency.upper()):
            currency = currency.upper()
        else:
            fail("currency", f"must be a three-letter ISO 4217 code such as USD: {currency!r}")

    account = item.get("account")
    if account is not None and _text(account, 500) is None:
        fail("account", "must be text of 1 to 500 characters")

    changed_at = _timestamp(item.get("changed_at"))
    if item.get("changed_at") is not None:
        if changed_at is None:
            fail("changed_at", "must be an ISO 8601 time with its offset, such as 2026-11-20T15:04:05Z")
        elif changed_at > now + FUTURE_TOLERANCE:
            fail("changed_at", f"is in the future: {item['changed_at']}")

    url = item.get("url")
    if url is not None and not _is_web_url(url):
        fail("url", f"must be an http:// or https:// link: {url!r}")

    event_id = item.get("event_id")
    if event_id is not None:
        event_id = _identifier(event_id)
        if event_id is None:
            fail("event_id", "must be a string or an integer of at most 255 characters")

    prompt = True if item.get("prompt") is None else item["prompt"]  # null is as good as left out
    if not isinstance(prompt, bool):
        fail("prompt", f"must be true or false: {prompt!r}")

    if errors:
        return errors
    assert deal_id is not None and name is not None and stage is not None
    return DealEvent(
        source=SOURCE,
        deal_id=deal_id,
        name=name,
        stage=stage,
        owner_email=owner_email.lower() if owner_email is not None else None,
        owner_slack_id=owner_slack_id,
        changed_at=changed_at or now,
        amount=amount,
        currency=currency,
        account=account.strip() if account is not None else None,
        url=url,
        event_id=event_id,
        prompt=prompt,
        raw=item,
    )


def normalise_stage(stage: str) -> str:
    """`Closed Lost`, `closed-lost` and `closed_lost` are one stage: CRMs and admins spell it all ways."""
    return re.sub(r"[\s-]+", "_", stage.strip().lower())


def _identifier(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    return _text(str(value) if isinstance(value, int) else value, 255)


def _text(value: Any, max_length: int) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if 0 < len(value) <= max_length else None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted out of range
        return None


def _is_web_url(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 2000:
        return False
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)
