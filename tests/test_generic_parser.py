"""Unit tests of the generic deal webhook's wire format (README.md, "The deal webhook"): parsing and signature."""

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from bot.crm.event import DealEvent
from bot.crm.generic import PayloadError, is_signed, parse_deal_events
from tests.bot_client import deal

NOW = datetime(2026, 11, 20, 16, 0, 0, tzinfo=UTC)
SECRET = "whsec-test-secret"


def event(**overrides: Any) -> dict[str, Any]:
    """A valid event; an override of None removes that field."""
    fields = deal(**{"event_id": "evt-1", **overrides})
    return {key: value for key, value in fields.items() if value is not None}


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def errors_of(raw: bytes) -> list[tuple[int | None, str | None]]:
    with pytest.raises(PayloadError) as caught:
        parse_deal_events(raw, now=NOW)
    return [(error.index, error.field) for error in caught.value.errors]


def messages_of(raw: bytes) -> list[str]:
    with pytest.raises(PayloadError) as caught:
        parse_deal_events(raw, now=NOW)
    return [error.message for error in caught.value.errors]


# --- valid payloads -------------------------------------------------------------------------------


def test_a_single_object_becomes_one_event() -> None:
    [parsed] = parse_deal_events(body(event()), now=NOW)

    assert parsed.source == "generic"
    assert parsed.deal_id == "0061x00000AbCdE"
    assert parsed.name == "Acme — 200 seats"
    assert parsed.stage == "closed_lost"
    assert parsed.amount == Decimal("48000")
    assert parsed.currency == "USD"
    assert parsed.owner_email == "dana@example.com"
    assert parsed.owner_slack_id is None
    assert parsed.account == "Acme Corp"
    assert parsed.changed_at == datetime(2026, 11, 20, 15, 4, 5, tzinfo=UTC)
    assert parsed.url == "https://crm.example.com/deals/0061x00000AbCdE"
    assert parsed.event_id == "evt-1"


def test_an_array_becomes_events_in_order() -> None:
    events = parse_deal_events(
        body([event(deal_id="a", event_id=None), event(deal_id="b", stage="closed_won", event_id=None)]), now=NOW
    )

    assert [(parsed.deal_id, parsed.stage) for parsed in events] == [("a", "closed_lost"), ("b", "closed_won")]


def test_the_minimal_event_takes_defaults() -> None:
    minimal = {"deal_id": 42, "name": "Globex", "stage": "closed_lost", "owner_email": "Dana.Smith@Example.COM"}

    [parsed] = parse_deal_events(body(minimal), now=NOW)

    assert parsed.deal_id == "42"
    assert parsed.owner_email == "dana.smith@example.com"
    assert parsed.changed_at == NOW
    assert parsed.amount is None
    assert parsed.currency is None
    assert parsed.account is None
    assert parsed.url is None
    assert parsed.event_id is None


def test_null_is_the_same_as_leaving_a_field_out() -> None:
    sent = {**event(), "amount": None, "currency": None, "account": None, "url": None, "prompt": None}

    [parsed] = parse_deal_events(body(sent), now=NOW)

    assert (parsed.amount, parsed.currency, parsed.account, parsed.url) == (None, None, None, None)
    assert parsed.prompt is True


def test_currency_is_upper_cased_and_amount_may_be_a_string() -> None:
    [parsed] = parse_deal_events(body(event(currency="eur", amount="48000.50")), now=NOW)

    assert parsed.currency == "EUR"
    assert parsed.amount == Decimal("48000.50")


def test_an_owner_slack_id_alone_is_enough() -> None:
    [parsed] = parse_deal_events(body(event(owner_email=None, owner_slack_id="U0123ABCD")), now=NOW)

    assert parsed.owner_email is None
    assert parsed.owner_slack_id == "U0123ABCD"


def test_changed_at_with_an_offset_is_converted_to_utc() -> None:
    [parsed] = parse_deal_events(body(event(changed_at="2026-11-20T16:04:05+01:00")), now=NOW)

    assert parsed.changed_at == datetime(2026, 11, 20, 15, 4, 5, tzinfo=UTC)


def test_changed_at_a_few_minutes_ahead_is_tolerated() -> None:
    ahead = (NOW + timedelta(minutes=4)).isoformat()

    [parsed] = parse_deal_events(body(event(changed_at=ahead)), now=NOW)

    assert parsed.changed_at == NOW + timedelta(minutes=4)


def test_unicode_and_emoji_names_survive() -> None:
    name = "Société Générale — 東京 🚀 seats"
    account = "Ünïcødé GmbH 🏢"

    [parsed] = parse_deal_events(json.dumps(event(name=name, account=account), ensure_ascii=False).encode(), now=NOW)

    assert parsed.name == name
    assert parsed.account == account


def test_the_raw_event_is_kept_for_the_audit_trail() -> None:
    sent = event(custom_field="kept")

    [parsed] = parse_deal_events(body(sent), now=NOW)

    assert parsed.raw == sent


# --- bad fields -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"deal_id": None}, "deal_id"),
        ({"deal_id": ""}, "deal_id"),
        ({"deal_id": True}, "deal_id"),
        ({"deal_id": 1.5}, "deal_id"),
        ({"name": None}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 501}, "name"),
        ({"stage": None}, "stage"),
        ({"stage": 3}, "stage"),
        ({"owner_email": None}, "owner_email"),
        ({"owner_email": "dana"}, "owner_email"),
        ({"owner_email": "dana@example"}, "owner_email"),
        ({"owner_email": "dana smith@example.com"}, "owner_email"),
        ({"owner_email": 7}, "owner_email"),
        ({"owner_slack_id": "dana"}, "owner_slack_id"),
        ({"owner_slack_id": "u0123abcd"}, "owner_slack_id"),
        ({"owner_slack_id": "C0123ABCD"}, "owner_slack_id"),
        ({"amount": -1}, "amount"),
        ({"amount": "a lot"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": [48000]}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"amount": "Infinity"}, "amount"),
        ({"currency": "US"}, "currency"),
        ({"currency": "US$"}, "currency"),
        ({"currency": 840}, "currency"),
        ({"account": "   "}, "account"),
        ({"account": 12}, "account"),
        ({"changed_at": "2026-11-20T15:04:05"}, "changed_at"),
        ({"changed_at": "2026-11-20"}, "changed_at"),
        ({"changed_at": "yesterday"}, "changed_at"),
        ({"changed_at": 1795000000}, "changed_at"),
        ({"changed_at": "2027-01-01T00:00:00Z"}, "changed_at"),
        ({"changed_at": (NOW + timedelta(minutes=6)).isoformat()}, "changed_at"),
        ({"url": "ftp://crm.example.com/deals/1"}, "url"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"url": "crm.example.com/deals/1"}, "url"),
        ({"event_id": ""}, "event_id"),
        ({"event_id": False}, "event_id"),
        ({"event_id": {"id": 1}}, "event_id"),
        ({"event_id": "e" * 256}, "event_id"),
    ],
)
def test_each_bad_field_is_named_with_its_index(overrides: dict[str, Any], field: str) -> None:
    bad = {key: value for key, value in {**event(), **overrides}.items() if value is not None}

    assert errors_of(body([event(), bad])) == [(1, field)]


def test_a_missing_owner_is_reported_on_owner_email() -> None:
    assert errors_of(body(event(owner_email=None))) == [(0, "owner_email")]


def test_every_error_of_every_event_is_reported_together() -> None:
    first = event(deal_id=None, amount=-5)
    second = event()
    third = event(name=None, currency="dollars", owner_email="nobody")

    assert errors_of(body([first, second, third])) == [
        (0, "deal_id"),
        (0, "amount"),
        (2, "name"),
        (2, "owner_email"),
        (2, "currency"),
    ]


def test_an_event_that_is_not_an_object_is_named_by_index() -> None:
    assert errors_of(body([event(), "closed_lost"])) == [(1, None)]


def test_error_messages_say_what_is_expected() -> None:
    [message] = messages_of(body(event(currency="dollars")))

    assert "ISO 4217" in message
    assert "dollars" in message


# --- bad bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[]", "empty"),
        (b'"closed_lost"', "object or an array"),
        (b"42", "object or an array"),
        (b"null", "object or an array"),
    ],
)
def test_a_bad_body_is_one_error_without_an_index(raw: bytes, words: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_deal_events(raw, now=NOW)

    [error] = caught.value.errors
    assert (error.index, error.field) == (None, None)
    assert words in error.message


def nested_lists(depth: int) -> list[Any]:
    """`depth` lists, each in the next: [[[]]] is 3."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_a_body_may_nest_64_deep_and_no_deeper() -> None:
    # The event is the first level, its extra field's lists the others.
    [parsed] = parse_deal_events(body(event(notes=nested_lists(63))), now=NOW)
    assert parsed.raw["notes"] == nested_lists(63)

    [message] = messages_of(body(event(notes=nested_lists(64))))
    assert "more than 64 deep" in message


def test_one_hundred_events_are_accepted() -> None:
    events = parse_deal_events(body([event(deal_id=str(n), event_id=None) for n in range(100)]), now=NOW)

    assert len(events) == 100


def test_one_hundred_and_one_events_are_refused() -> None:
    with pytest.raises(PayloadError) as caught:
        parse_deal_events(body([event(deal_id=str(n)) for n in range(101)]), now=NOW)

    [error] = caught.value.errors
    assert error.index is None
    assert "101" in error.message
    assert "100" in error.message


def test_payload_errors_render_as_the_contract_says() -> None:
    with pytest.raises(PayloadError) as caught:
        parse_deal_events(body(event(deal_id=None)), now=NOW)

    [rendered] = [error.as_dict() for error in caught.value.errors]
    assert rendered["index"] == 0
    assert rendered["field"] == "deal_id"
    assert rendered["message"]


# --- signature ------------------------------------------------------------------------------------


def sign(raw: bytes, timestamp: int, secret: str = SECRET) -> str:
    base = f"v0:{timestamp}:".encode() + raw
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


SIGNED_BODY = json.dumps(event(name="Café 🚀"), ensure_ascii=False).encode()


def test_a_correct_signature_is_accepted() -> None:
    timestamp = int(NOW.timestamp())

    assert is_signed(
        secret=SECRET, body=SIGNED_BODY, timestamp=str(timestamp), signature=sign(SIGNED_BODY, timestamp), now=NOW
    )


def test_a_signature_made_with_another_secret_is_refused() -> None:
    timestamp = int(NOW.timestamp())
    signature = sign(SIGNED_BODY, timestamp, secret="someone-else")

    assert not is_signed(secret=SECRET, body=SIGNED_BODY, timestamp=str(timestamp), signature=signature, now=NOW)


def test_a_changed_body_is_refused() -> None:
    timestamp = int(NOW.timestamp())
    signature = sign(SIGNED_BODY, timestamp)

    assert not is_signed(secret=SECRET, body=SIGNED_BODY + b" ", timestamp=str(timestamp), signature=signature, now=NOW)


def test_a_signature_of_another_timestamp_is_refused() -> None:
    timestamp = int(NOW.timestamp())
    signature = sign(SIGNED_BODY, timestamp - 1)

    assert not is_signed(secret=SECRET, body=SIGNED_BODY, timestamp=str(timestamp), signature=signature, now=NOW)


@pytest.mark.parametrize(
    ("offset_seconds", "accepted"), [(-301, False), (301, False), (-299, True), (299, True), (0, True)]
)
def test_the_timestamp_must_be_within_300_seconds(offset_seconds: int, accepted: bool) -> None:
    timestamp = int(NOW.timestamp()) + offset_seconds
    signature = sign(SIGNED_BODY, timestamp)

    assert (
        is_signed(secret=SECRET, body=SIGNED_BODY, timestamp=str(timestamp), signature=signature, now=NOW) is accepted
    )


@pytest.mark.parametrize("signature", ["", "v0=", "deadbeef", "v1=" + "0" * 64])
def test_a_malformed_signature_is_refused(signature: str) -> None:
    assert not is_signed(
        secret=SECRET, body=SIGNED_BODY, timestamp=str(int(NOW.timestamp())), signature=signature, now=NOW
    )


@pytest.mark.parametrize("timestamp", ["abc", "1795000000.5", "soon"])
def test_a_timestamp_that_is_not_a_number_is_refused_not_raised(timestamp: str) -> None:
    # The handler passes the header through as it came; a junk value must be a 401, not a 500.
    assert not is_signed(secret=SECRET, body=SIGNED_BODY, timestamp=timestamp, signature=sign(SIGNED_BODY, 0), now=NOW)


# --- idempotency key ------------------------------------------------------------------------------


def deal_event(**overrides: Any) -> DealEvent:
    fields: dict[str, Any] = {
        "source": "generic",
        "deal_id": "D1",
        "name": "Acme",
        "stage": "closed_lost",
        "owner_email": "dana@example.com",
        "owner_slack_id": None,
        "changed_at": datetime(2026, 11, 20, 15, 4, 5, tzinfo=UTC),
    }
    fields.update(overrides)
    return DealEvent(**fields)


def test_the_idempotency_key_is_the_event_id_when_there_is_one() -> None:
    first = deal_event(event_id="evt-9")
    later = deal_event(event_id="evt-9", stage="closed_won", changed_at=NOW)

    assert first.idempotency_key == later.idempotency_key
    assert "evt-9" in first.idempotency_key
    assert first.idempotency_key != deal_event(event_id="evt-10").idempotency_key


def test_without_an_event_id_the_key_is_deal_stage_and_time() -> None:
    key = deal_event().idempotency_key

    assert key == deal_event(name="Acme renamed", amount=Decimal(1)).idempotency_key
    assert key != deal_event(deal_id="D2").idempotency_key
    assert key != deal_event(stage="closed_won").idempotency_key
    assert key != deal_event(changed_at=NOW).idempotency_key


def test_the_same_moment_in_two_offsets_has_one_key() -> None:
    [utc] = parse_deal_events(body(event(event_id=None, changed_at="2026-11-20T15:04:05Z")), now=NOW)
    [paris] = parse_deal_events(body(event(event_id=None, changed_at="2026-11-20T16:04:05+01:00")), now=NOW)

    assert utc.idempotency_key == paris.idempotency_key


def test_without_changed_at_the_key_uses_the_time_of_receipt() -> None:
    undated = {"deal_id": "D1", "name": "Acme", "stage": "closed_lost", "owner_email": "dana@example.com"}

    [first] = parse_deal_events(body(undated), now=NOW)
    [retried] = parse_deal_events(body(undated), now=NOW + timedelta(seconds=1))

    assert first.idempotency_key == deal_event(changed_at=NOW).idempotency_key
    assert first.idempotency_key != retried.idempotency_key


def test_keys_of_two_sources_never_collide() -> None:
    assert deal_event(event_id="1").idempotency_key != deal_event(source="hubspot", event_id="1").idempotency_key
