"""Property tests (hypothesis) of the webhook body parsers: the generic webhook's, HubSpot's and
Pipedrive's. Whatever bytes arrive, a parser returns what the database can store, or raises
PayloadError naming what is wrong; never anything else. And a generic batch that is refused leaves
nothing stored, through the real server, on SQLite and PostgreSQL.

The bodies are arbitrary bytes, arbitrary JSON, and each CRM's real shape with fields replaced by odd
values (huge numbers, NaN, deep nesting, long or odd text, dates at the ends of the calendar)."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Table

from bot.crm import hubspot, pipedrive
from bot.crm.event import DealEvent, FieldError, PayloadError, is_storable
from bot.crm.generic import parse_deal_events
from bot.services.deal_events import fit_to_columns
from storage.models import CrmJob, Deal, DealEventRecord
from tests.bot_client import BotClient, deal

NOW = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)
FIXTURES = Path(__file__).parent / "fixtures" / "crm"
HUBSPOT_EVENTS: list[dict[str, Any]] = json.loads((FIXTURES / "hubspot_dealstage.json").read_bytes())
PIPEDRIVE_V2: dict[str, Any] = json.loads((FIXTURES / "pipedrive_deal_lost.json").read_bytes())
PIPEDRIVE_V1: dict[str, Any] = json.loads((FIXTURES / "pipedrive_deal_lost_v1.json").read_bytes())

# Bounded so that the whole file runs in seconds: a new bug is usually found in the first hundred.
PARSER_RUNS = settings(max_examples=300, deadline=None)


class Raw(str):
    """JSON text written as it is: what json.dumps cannot write (NaN is written, 1e400 is not)."""


def encode(value: Any) -> bytes:
    return _encode(value).encode("utf-8", "surrogatepass")


def _encode(value: Any) -> str:
    if isinstance(value, Raw):
        return value
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(key)}:{_encode(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    return json.dumps(value)


def nested(depth: int) -> Raw:
    return Raw('{"a":' * depth + "[1]" + "}" * depth)


characters = st.characters() | st.sampled_from(["\x00", "\ud800", "\udfff", "İ", "ß", "ﬀ", "\u202e", "\ufeff"])
texts = st.text(characters, max_size=40)
ODD_VALUES = [
    # numbers json reads but a database, Decimal or datetime may not take
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("1e400"),
    Raw("-1e400"),
    Raw("1e-400"),
    Raw("9" * 4000),
    Raw("9" * 5000),
    2**63,
    2**63 - 1,
    2**64,
    10**300,
    -1,
    0,
    1e16,
    9999999999999999.995,
    # text: empty, long, changing length in lower or upper case, unstorable, bidi and BOM
    "",
    " ",
    "x" * 100_000,
    "İ" * 400,
    "İ" * 300 + "@example.com",
    "ß" * 3,
    "ßab",
    "ﬀx",
    "\x00",
    "a\ud800b",
    "\u202eevil",
    # dates at the ends of the calendar, and not quite dates
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01 00:00:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31 23:59:59",
    "2026-02-30T00:00:00Z",
    "2026-11-20T15:04:05",
    "2026-11-20T15:04:05+24:00",
    # links and addresses
    "http://" + "h" * 3000,
    "javascript:alert(1)",
    "dana@example.com",
    "U0123ABCD",
    # wrong types and shapes
    None,
    True,
    False,
    [],
    {},
    [None],
    {"id": 1, "email": "dana@example.com"},
    nested(40),
    nested(900),
    nested(1000),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=20,
)
odd_values = st.sampled_from(ODD_VALUES) | json_values | st.integers(1, 1200).map(nested)


def changed(base: dict[str, Any], fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """`base` with some of `fields`, or a field `extra`, set to odd values or left out."""
    missing = object()
    replacements = st.dictionaries(st.sampled_from([*fields, "extra"]), odd_values | st.just(missing), max_size=3)
    return replacements.map(lambda new: {key: value for key, value in {**base, **new}.items() if value is not missing})


# --- what a parser may return --------------------------------------------------------------------


def length(table: Table, column: str) -> int:
    size = table.c[column].type.length  # type: ignore[attr-defined]
    assert isinstance(size, int)
    return size


def assert_fits_the_database(parsed: DealEvent) -> None:
    """Everything `parsed` holds can be stored as `record_deal_events` stores it (a CRM's text cut to
    its column): its text fits its column, and its payload is JSON that PostgreSQL takes (no NaN or
    Infinity) and that our own code can walk (not nested too deep)."""
    event = fit_to_columns(parsed)
    deal_table, event_table = Deal.__table__, DealEventRecord.__table__
    assert isinstance(deal_table, Table) and isinstance(event_table, Table)
    columns = {
        "external_id": event.deal_id,
        "name": event.name,
        "stage": event.stage,
        "owner_email": event.owner_email,
        "owner_slack_id": event.owner_slack_id,
        "currency": event.currency,
        "account": event.account,
        "url": event.url,
    }
    for column, text in columns.items():
        assert text is None or len(text) <= length(deal_table, column), (column, text)
        assert is_storable(text), (column, text)
    assert is_storable(event.crm_reason)
    assert len(event.idempotency_key) <= length(event_table, "idempotency_key")
    if event.amount is not None:
        assert event.amount.is_finite() and 0 <= event.amount < 10**16
        assert event.amount.as_tuple().exponent == -2
    assert event.changed_at.tzinfo is not None
    assert_storable_payload(event.raw)


def assert_storable_payload(payload: Any) -> None:
    assert is_storable(payload)
    json.dumps(payload, allow_nan=False)  # PostgreSQL's json type has no NaN or Infinity


def assert_refusal(error: PayloadError) -> None:
    assert error.errors and all(isinstance(problem, FieldError) for problem in error.errors)
    assert all(isinstance(problem.message, str) and problem.message for problem in error.errors)


def check_generic(body: bytes) -> None:
    try:
        events = parse_deal_events(body, now=NOW)
    except PayloadError as error:
        assert_refusal(error)
        return
    assert 1 <= len(events) <= 100
    for event in events:
        assert_fits_the_database(event)
        # The generic webhook refuses a text longer than its column: nothing of what it takes is cut.
        assert fit_to_columns(event) is event


def check_hubspot(body: bytes) -> None:
    try:
        changes = hubspot.parse_stage_changes(body)
    except PayloadError as error:
        assert_refusal(error)
        return
    job_table = CrmJob.__table__
    assert isinstance(job_table, Table)
    for change in changes:
        assert len(change.key) <= length(job_table, "event_key")
        assert_storable_payload(change.payload)
        # What the CRM job reads from the stored change once HubSpot has answered with its deal.
        assert datetime.fromtimestamp(change.payload["occurredAt"] / 1000, tz=UTC)
        assert str(change.payload["objectId"]).isdigit()


def check_pipedrive(body: bytes) -> None:
    try:
        change = pipedrive.parse_deal_change(body)
    except PayloadError as error:
        assert_refusal(error)
        return
    if change is None:
        return
    assert_fits_the_database(change.event)
    # The CRM job reads the change again from the payload as the database gives it back.
    stored = json.loads(json.dumps(change.event.raw, allow_nan=False))
    assert pipedrive.read_deal_change(stored) == change


PARSERS = {"generic": check_generic, "hubspot": check_hubspot, "pipedrive": check_pipedrive}


# --- any bytes, any JSON -------------------------------------------------------------------------


@PARSER_RUNS
@given(parser=st.sampled_from(list(PARSERS)), body=st.binary(max_size=300))
def test_any_bytes_are_parsed_or_refused(parser: str, body: bytes) -> None:
    PARSERS[parser](body)


@PARSER_RUNS
@given(parser=st.sampled_from(list(PARSERS)), document=odd_values)
def test_any_json_is_parsed_or_refused(parser: str, document: Any) -> None:
    PARSERS[parser](encode(document))


# --- each CRM's real shape, with fields replaced -------------------------------------------------

GENERIC_FIELDS = [
    "deal_id",
    "name",
    "stage",
    "amount",
    "currency",
    "owner_email",
    "owner_slack_id",
    "account",
    "changed_at",
    "url",
    "event_id",
    "prompt",
]
generic_events = changed(deal(changed_at="2026-11-20T15:04:05Z"), GENERIC_FIELDS)


@PARSER_RUNS
@given(body=generic_events | st.lists(generic_events | odd_values, min_size=1, max_size=4))
def test_a_generic_body_with_odd_fields_is_parsed_or_refused(body: Any) -> None:
    check_generic(encode(body))


HUBSPOT_FIELDS = sorted(HUBSPOT_EVENTS[0])
hubspot_events = st.sampled_from(HUBSPOT_EVENTS).flatmap(lambda event: changed(event, HUBSPOT_FIELDS))


@PARSER_RUNS
@given(body=st.lists(hubspot_events | odd_values, min_size=1, max_size=4))
def test_a_hubspot_body_with_odd_fields_is_parsed_or_refused(body: list[Any]) -> None:
    check_hubspot(encode(body))


def pipedrive_bodies(document: dict[str, Any], deal_key: str) -> st.SearchStrategy[dict[str, Any]]:
    deals = changed(document[deal_key], sorted(document[deal_key]))
    metas = changed(document["meta"], sorted(document["meta"]))
    return st.tuples(metas, deals).map(lambda parts: {**document, "meta": parts[0], deal_key: parts[1]})


@PARSER_RUNS
@given(body=pipedrive_bodies(PIPEDRIVE_V2, "data") | pipedrive_bodies(PIPEDRIVE_V1, "current"))
def test_a_pipedrive_body_with_odd_fields_is_parsed_or_refused(body: dict[str, Any]) -> None:
    check_pipedrive(encode(body))


# --- a refused batch stores nothing --------------------------------------------------------------

# Values each field refuses, whatever the other fields hold.
BAD_VALUES: dict[str, list[Any]] = {
    "deal_id": [None, "", "  ", "x" * 256, True, [], 10**300, "a\x00b"],
    "name": [None, "", " ", "x" * 501, 5, {"text": "Acme"}, "Acme\ud800"],
    "stage": [None, "", "x" * 101, "İ" * 60, ["closed_lost"]],
    "owner_email": ["dana.example.com", 5, "İ" * 300 + "@example.com"],
    "amount": [-1, "lots", 1e16, Raw("NaN"), Raw("1e400"), Raw("9" * 5000), True],
    "currency": ["US", "dollars", "ßab", 840],
    "changed_at": ["yesterday", "2026-11-20T15:04:05", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59Z", 0],
    "url": ["ftp://crm/1", "javascript:alert(1)", "http://" + "h" * 2000],
    "event_id": ["", True, [], "x" * 256, 10**300],
    "prompt": ["yes", 1, "false"],
    "extra": [nested(1000), Raw("NaN"), "a\x00b"],
}


@st.composite
def batches_with_one_bad_event(draw: st.DrawFn) -> tuple[list[Any], int]:
    size = draw(st.integers(1, 5))
    events: list[Any] = [deal(deal_id=f"fuzz-{n}", event_id=f"fuzz-{n}") for n in range(size)]
    bad = draw(st.integers(0, size - 1))
    field = draw(st.sampled_from(sorted(BAD_VALUES)))
    events[bad] = {**events[bad], field: draw(st.sampled_from(BAD_VALUES[field]))}
    return events, bad


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=batches_with_one_bad_event())
async def test_a_batch_with_one_bad_event_is_refused_whole_and_nothing_is_stored(
    bot: BotClient, batch: tuple[list[Any], int]
) -> None:
    events, bad = batch

    answer = await bot.post_deals(encode(events))

    assert answer.status == 400, answer
    # About the bad event, or about the whole body (NaN or deep nesting make it no JSON we take).
    assert answer.body["errors"] and {error["index"] for error in answer.body["errors"]} <= {bad, None}
    assert await bot.rows(DealEventRecord) == []
    assert await bot.rows(Deal) == []


# --- each field with each odd value, every time ---------------------------------------------------


def test_each_generic_field_with_each_odd_value_is_parsed_or_refused() -> None:
    base = deal(changed_at="2026-11-20T15:04:05Z")
    for field in [*GENERIC_FIELDS, "extra"]:
        for value in ODD_VALUES:
            check_generic(encode({**base, field: value}))
            check_generic(encode([base, {**base, field: value}]))


def test_each_hubspot_field_with_each_odd_value_is_parsed_or_refused() -> None:
    for field in [*HUBSPOT_FIELDS, "extra"]:
        for value in ODD_VALUES:
            check_hubspot(encode([{**HUBSPOT_EVENTS[0], field: value}]))


def test_each_pipedrive_field_with_each_odd_value_is_parsed_or_refused() -> None:
    for document, deal_key in ((PIPEDRIVE_V2, "data"), (PIPEDRIVE_V1, "current")):
        for part in ("meta", deal_key):
            for field in [*document[part], "extra"]:
                for value in ODD_VALUES:
                    check_pipedrive(encode({**document, part: {**document[part], field: value}}))
