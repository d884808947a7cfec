"""POST /webhooks/deals over real HTTP, as README.md ("The deal webhook") specifies it: signature and 300 s window,
one event or up to 100, 202 / 400 / 401 / 413 / 503, idempotent, order-safe, an audit trail."""

import asyncio
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Deal, DealEventRecord, Loss, LossState, OutboxMessage, OutboxState
from tests.bot_client import BotClient, deal, eventually, sign_deals
from tests.conftest import make_settings, serve
from tests.fake_slack import FakeSlack

ONE_MIB = 1024 * 1024


def dms_about(bot: BotClient, name: str) -> list[dict[str, Any]]:
    """Every DM the fake Slack stored that names the deal: in its fallback text (a prompt about one
    deal) or in its blocks (a prompt listing several)."""
    return [message for message in bot.slack.messages.values() if name in str(message)]


async def outbox_drained(bot: BotClient) -> bool:
    return all(row.state != OutboxState.PENDING for row in await bot.rows(OutboxMessage))


def padded(event: dict[str, Any], size: int) -> bytes:
    """`event` as JSON followed by spaces: valid JSON of exactly `size` bytes."""
    body = json.dumps(event).encode()
    assert len(body) < size
    return body + b" " * (size - len(body))


async def a_settled_won_deal(bot: BotClient) -> dict[str, list[tuple[Any, ...]]]:
    """Something stored before a refused request (a won deal: no DM to wait for), as a snapshot."""
    answer = await bot.post_deals(deal(deal_id="already-there", name="Already there", stage="closed_won"))
    assert answer.status == 202
    snapshot = await bot.snapshot()
    assert snapshot["deal"] and snapshot["deal_event"]
    return snapshot


# --- accepted events -------------------------------------------------------------------------------


async def test_one_event_is_accepted_stored_and_kept_with_its_raw_payload(bot: BotClient) -> None:
    event = deal(event_id="evt-1", deal_id=12345, amount="48000.50", currency="usd", owner_email="Dana@Example.com")

    answer = await bot.post_deals(event)

    assert (answer.status, answer.body) == (202, {"accepted": 1, "duplicates": 0})
    (record,) = await bot.rows(DealEventRecord)
    assert record.payload == event
    assert (record.stage, record.applied) == ("closed_lost", True)
    assert record.changed_at == datetime(2026, 11, 20, 15, 4, 5, tzinfo=UTC)
    (stored,) = await bot.rows(Deal)
    assert record.deal_id == stored.id
    assert (stored.source, stored.external_id, stored.name, stored.account) == (
        "generic",
        "12345",
        "Acme — 200 seats",
        "Acme Corp",
    )
    assert (stored.amount, stored.currency, stored.owner_email) == (Decimal("48000.50"), "USD", "dana@example.com")
    assert (stored.stage, stored.url) == ("closed_lost", "https://crm.example.com/deals/0061x00000AbCdE")
    (loss,) = await bot.rows(Loss)
    assert (loss.deal_id, loss.state, loss.lost_at) == (stored.id, LossState.AWAITING, record.changed_at)
    (dm,) = await bot.slack.wait_for("chat.postMessage")
    assert dm["channel"] == "U0DANA001"


async def test_an_array_of_three_is_accepted_and_each_event_kept(bot: BotClient) -> None:
    events = [
        deal(deal_id="D-1", name="First deal"),
        deal(deal_id="D-2", name="Second deal", stage="closed_won", owner_email="sam@example.com"),
        deal(deal_id="D-3", name="Third deal", stage="Negotiation", event_id="evt-3"),
    ]

    answer = await bot.post_deals(events)

    assert (answer.status, answer.body) == (202, {"accepted": 3, "duplicates": 0})
    records = await bot.rows(DealEventRecord)
    assert [record.payload for record in records] == events
    assert [record.stage for record in records] == ["closed_lost", "closed_won", "negotiation"]
    assert all(record.applied for record in records)
    deals = {row.external_id: row for row in await bot.rows(Deal)}
    assert {key: row.stage for key, row in deals.items()} == {
        "D-1": "closed_lost",
        "D-2": "closed_won",
        "D-3": "negotiation",
    }
    assert [record.deal_id for record in records] == [deals["D-1"].id, deals["D-2"].id, deals["D-3"].id]
    (loss,) = await bot.rows(Loss)
    assert loss.deal_id == deals["D-1"].id


async def test_an_event_without_changed_at_is_dated_when_it_arrives(bot: BotClient) -> None:
    event = deal()
    del event["changed_at"]
    before = datetime.now(UTC).replace(microsecond=0)

    answer = await bot.post_deals(event)

    assert answer.status == 202
    (record,) = await bot.rows(DealEventRecord)
    assert before <= record.changed_at <= datetime.now(UTC)
    (stored,) = await bot.rows(Deal)
    assert stored.stage_changed_at == record.changed_at


# --- idempotency ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [deal(event_id="crm-event-77"), deal()],
    ids=["same event_id", "no event_id: deal_id + stage + changed_at"],
)
async def test_the_same_event_twice_has_one_effect(bot: BotClient, event: dict[str, Any]) -> None:
    first = await bot.post_deals(event)
    assert (first.status, first.body) == (202, {"accepted": 1, "duplicates": 0})
    await bot.slack.wait_for("chat.postMessage")
    await eventually(lambda: outbox_drained(bot), what="the first DM to be recorded as sent")
    before = await bot.snapshot()

    again = await bot.post_deals(event)

    assert (again.status, again.body) == (202, {"accepted": 0, "duplicates": 1})
    assert await bot.snapshot() == before
    await bot.settle_worker()
    assert len(dms_about(bot, event["name"])) == 1
    assert len(await bot.rows(Loss)) == 2  # this deal's and the settle deal's


async def test_a_redelivery_with_the_same_event_id_but_other_fields_changes_nothing(bot: BotClient) -> None:
    assert (await bot.post_deals(deal(event_id="evt-9", amount=1000))).status == 202
    changed = deal(event_id="evt-9", amount=999999, name="Renamed", changed_at="2026-11-21T00:00:00Z")

    again = await bot.post_deals(changed)

    assert (again.status, again.body) == (202, {"accepted": 0, "duplicates": 1})
    (stored,) = await bot.rows(Deal)
    assert (stored.name, stored.amount) == ("Acme — 200 seats", Decimal("1000.00"))
    assert len(await bot.rows(DealEventRecord)) == 1


async def test_duplicates_inside_one_array_are_counted(bot: BotClient) -> None:
    with_id = deal(deal_id="D-1", name="Deal one", event_id="evt-1")
    without_id = deal(deal_id="D-2", name="Deal two")
    batch = [with_id, without_id, dict(with_id), dict(without_id), deal(deal_id="D-3", name="Deal three")]

    answer = await bot.post_deals(batch)

    assert (answer.status, answer.body) == (202, {"accepted": 3, "duplicates": 2})
    assert len(await bot.rows(DealEventRecord)) == 3
    losses = await bot.rows(Loss)
    assert len(losses) == 3
    await bot.slack.wait_for("chat.postMessage")
    await bot.settle_worker()
    # One owner, one batch: one DM lists the three deals, each once, each with its own button.
    (dm,) = dms_about(bot, "Deal one")
    for name in ("Deal two", "Deal three"):
        assert dms_about(bot, name) == [dm], name
    buttons = [
        block["accessory"]["value"]
        for block in dm["blocks"]
        if block.get("accessory", {}).get("action_id") == "log_reason"
    ]
    assert sorted(buttons) == sorted(str(loss.id) for loss in losses)


async def test_a_batch_resent_after_it_was_accepted_counts_only_duplicates(bot: BotClient) -> None:
    batch = [deal(deal_id=f"D-{n}", name=f"Deal {n}", stage="closed_won") for n in range(3)]
    assert (await bot.post_deals(batch)).body == {"accepted": 3, "duplicates": 0}

    again = await bot.post_deals([*batch, deal(deal_id="D-new", name="New deal", stage="closed_won")])

    assert (again.status, again.body) == (202, {"accepted": 1, "duplicates": 3})
    assert len(await bot.rows(DealEventRecord)) == 4


# --- order safety -----------------------------------------------------------------------------------


@pytest.mark.parametrize("newer_stage", ["closed_won", "negotiation"])
@pytest.mark.parametrize("one_request", [False, True], ids=["two requests", "one array"])
async def test_an_older_closed_lost_event_changes_nothing(bot: BotClient, newer_stage: str, one_request: bool) -> None:
    newer = deal(stage=newer_stage, changed_at="2026-11-20T16:00:00Z", amount=50000)
    older = deal(stage="closed_lost", changed_at="2026-11-20T15:00:00Z", amount=1)

    if one_request:
        answer = await bot.post_deals([newer, older])
        assert (answer.status, answer.body) == (202, {"accepted": 2, "duplicates": 0})
    else:
        assert (await bot.post_deals(newer)).body == {"accepted": 1, "duplicates": 0}
        answer = await bot.post_deals(older)
        assert (answer.status, answer.body) == (202, {"accepted": 1, "duplicates": 0})

    newer_record, older_record = await bot.rows(DealEventRecord)
    assert (newer_record.stage, newer_record.applied) == (newer_stage, True)
    assert (older_record.stage, older_record.applied, older_record.payload) == ("closed_lost", False, older)
    (stored,) = await bot.rows(Deal)
    assert (stored.stage, stored.amount) == (newer_stage, Decimal("50000.00"))
    assert stored.stage_changed_at == datetime(2026, 11, 20, 16, 0, tzinfo=UTC)
    assert await bot.rows(Loss) == []
    await bot.settle_worker()
    assert dms_about(bot, "Acme") == []


async def test_a_newer_event_after_an_older_one_still_applies(bot: BotClient) -> None:
    assert (await bot.post_deals(deal(stage="negotiation", changed_at="2026-11-20T15:00:00Z"))).status == 202

    answer = await bot.post_deals(deal(stage="closed_lost", changed_at="2026-11-20T16:00:00Z"))

    assert answer.status == 202
    (stored,) = await bot.rows(Deal)
    assert stored.stage == "closed_lost"
    (loss,) = await bot.rows(Loss)
    assert loss.lost_at == datetime(2026, 11, 20, 16, 0, tzinfo=UTC)
    await bot.slack.wait_for("chat.postMessage")


# --- bad input: the clear answer, and nothing stored changes -----------------------------------------


def without(field: str, **overrides: Any) -> dict[str, Any]:
    event = deal(**overrides)
    del event[field]
    return event


BAD_EVENTS = {
    "missing deal_id": (without("deal_id"), "deal_id"),
    "empty deal_id": (deal(deal_id="  "), "deal_id"),
    "missing name": (without("name"), "name"),
    "missing stage": (without("stage"), "stage"),
    "no owner": (without("owner_email"), "owner_email"),
    "bad email": (deal(owner_email="dana.example.com"), "owner_email"),
    "bad owner_slack_id": (without("owner_email", owner_slack_id="dana"), "owner_slack_id"),
    "amount not a number": (deal(amount="lots"), "amount"),
    "negative amount": (deal(amount=-5), "amount"),
    "bad currency": (deal(currency="dollars"), "currency"),
    "changed_at not a time": (deal(changed_at="yesterday"), "changed_at"),
    "changed_at without offset": (deal(changed_at="2026-11-20T15:04:05"), "changed_at"),
    "changed_at in the future": (deal(changed_at="2099-01-01T00:00:00Z"), "changed_at"),
    "url not http": (deal(url="javascript:alert(1)"), "url"),
    "url not a link": (deal(url="crm.example.com/deals/1"), "url"),
    # Valid ISO 8601 whose instant in UTC falls outside the years 1 to 9999.
    "changed_at before year 1 in UTC": (deal(changed_at="0001-01-01T00:00:00+01:00"), "changed_at"),
    "changed_at after year 9999 in UTC": (deal(changed_at="9999-12-31T23:59:59-01:00"), "changed_at"),
    # Longer than its column: the signed webhook refuses it rather than cut what its sender wrote.
    "name over 500 characters": (deal(name="n" * 501), "name"),
    "account over 500 characters": (deal(account="a" * 501), "account"),
    "owner_email over 320 characters": (deal(owner_email="d" * 309 + "@example.com"), "owner_email"),
    "url over 2000 characters": (deal(url="https://crm.example.com/" + "d" * 1977), "url"),
    "deal_id over 255 characters": (deal(deal_id="D" * 256), "deal_id"),
    "event_id over 255 characters": (deal(event_id="e" * 256), "event_id"),
    # Text the databases cannot store: PostgreSQL refuses NUL, and no UTF-8 encodes a lone surrogate.
    # json.dumps writes them as the escapes \u0000 and \ud800, which JSON allows.
    "NUL in name": (deal(name="Acme\x00 deal"), "name"),
    "NUL in an extra field kept in the payload": (deal(notes="a\x00b"), "notes"),
    "lone surrogate in account": (deal(account="Acme \ud800 Corp"), "account"),
    # Longer than their columns once read: an integer id as text, and text in lower case (where İ is
    # i and a combining dot).
    "300-digit integer deal_id": (deal(deal_id=10**300), "deal_id"),
    "300-digit integer event_id": (deal(event_id=10**300), "event_id"),
    "stage of 120 characters in lower case": (deal(stage="İ" * 60), "stage"),
    "owner_email of 612 characters in lower case": (deal(owner_email="İ" * 300 + "@example.com"), "owner_email"),
}


@pytest.mark.parametrize(("event", "field"), list(BAD_EVENTS.values()), ids=list(BAD_EVENTS))
async def test_a_bad_field_is_named_and_nothing_is_stored(bot: BotClient, event: dict[str, Any], field: str) -> None:
    before = await a_settled_won_deal(bot)

    answer = await bot.post_deals(event)

    assert answer.status == 400
    (error,) = answer.body["errors"]
    assert (error["index"], error["field"]) == (0, field)
    assert isinstance(error["message"], str) and error["message"]
    assert await bot.snapshot() == before


async def test_a_batch_with_one_bad_event_is_refused_whole(bot: BotClient) -> None:
    before = await a_settled_won_deal(bot)
    batch = [deal(deal_id="D-0"), without("name", deal_id="D-1"), deal(deal_id="D-2")]

    answer = await bot.post_deals(batch)

    assert answer.status == 400
    assert [(error["index"], error["field"]) for error in answer.body["errors"]] == [(1, "name")]
    assert await bot.snapshot() == before
    assert bot.slack.calls_to("chat.postMessage") == []


async def test_every_bad_field_of_every_event_is_named_at_once(bot: BotClient) -> None:
    before = await a_settled_won_deal(bot)
    batch = [deal(amount="lots", currency="dollars"), deal(), without("deal_id", url="ftp://crm/1")]

    answer = await bot.post_deals(batch)

    assert answer.status == 400
    named = {(error["index"], error["field"]) for error in answer.body["errors"]}
    assert named == {(0, "amount"), (0, "currency"), (2, "deal_id"), (2, "url")}
    assert await bot.snapshot() == before


def with_raw_amount(raw: bytes) -> bytes:
    """A valid event's JSON with `raw` written as the amount: text json.dumps would not write."""
    body = json.dumps(deal()).encode()
    assert body.count(b'"amount": 48000,') == 1
    return body.replace(b'"amount": 48000,', b'"amount": ' + raw + b",")


def with_raw_notes(raw: bytes) -> bytes:
    """A valid event's JSON with `raw` written as an extra field, which the stored payload keeps."""
    body = json.dumps(deal()).encode()
    return body[:-1] + b', "notes": ' + raw + b"}"


BAD_BODIES = {
    "invalid JSON": b'{"deal_id": "D-1", "name": ',
    "not UTF-8": b'{"deal_id": "\xff\xfe"}',
    "empty array": b"[]",
    "101 events": json.dumps([deal(deal_id=f"D-{n}") for n in range(101)]).encode(),
    "a JSON string": b'"closed_lost"',
    "an array of numbers": b"[1, 2]",
    "100,000 nested arrays": b"[" * 100_000 + b"]" * 100_000,
    "600 nested arrays in an extra field": with_raw_notes(b"[" * 600 + b"]" * 600),
    "1e400, Infinity to Python, in an extra field": with_raw_notes(b"1e400"),
}

# Python's json reads these, but they are no amount: refused for the body or for the amount field.
BAD_AMOUNTS = {
    "5,000-digit integer": with_raw_amount(b"9" * 5000),
    "NaN": with_raw_amount(b"NaN"),
    "Infinity": with_raw_amount(b"Infinity"),
    "-Infinity": with_raw_amount(b"-Infinity"),
}


@pytest.mark.parametrize("body", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
async def test_a_bad_body_gets_400_and_nothing_is_stored(bot: BotClient, body: bytes) -> None:
    before = await a_settled_won_deal(bot)

    answer = await bot.post_deals(body)

    assert answer.status == 400
    assert answer.body["errors"] and all(error["message"] for error in answer.body["errors"])
    assert await bot.snapshot() == before


@pytest.mark.parametrize("body", list(BAD_AMOUNTS.values()), ids=list(BAD_AMOUNTS))
async def test_an_amount_json_allows_but_no_number_is_gets_400_and_nothing_is_stored(
    bot: BotClient, body: bytes
) -> None:
    before = await a_settled_won_deal(bot)

    answer = await bot.post_deals(body)

    assert answer.status == 400
    assert answer.body["errors"] and all(error["message"] for error in answer.body["errors"])
    named = {(error["index"], error["field"]) for error in answer.body["errors"]}
    assert named <= {(None, None), (0, "amount")}, named
    assert await bot.snapshot() == before


async def test_exactly_100_events_are_accepted(bot: BotClient) -> None:
    batch = [deal(deal_id=f"D-{n}", stage="closed_won") for n in range(100)]

    answer = await bot.post_deals(batch)

    assert (answer.status, answer.body) == (202, {"accepted": 100, "duplicates": 0})
    assert len(await bot.rows(DealEventRecord)) == 100


def _unsigned(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json"}


def _wrong_secret(body: bytes) -> dict[str, str]:
    return sign_deals(body, secret="not-the-secret")


def _stale(body: bytes) -> dict[str, str]:
    return sign_deals(body, timestamp=int(time.time()) - 301)


def _from_the_future(body: bytes) -> dict[str, str]:
    return sign_deals(body, timestamp=int(time.time()) + 301)


def _no_timestamp(body: bytes) -> dict[str, str]:
    headers = sign_deals(body)
    del headers["X-Closedlost-Timestamp"]
    return headers


def _no_signature(body: bytes) -> dict[str, str]:
    headers = sign_deals(body)
    del headers["X-Closedlost-Signature"]
    return headers


def _other_body(body: bytes) -> dict[str, str]:
    return sign_deals(body.replace(b"48000", b"48001"))


def _other_timestamp(body: bytes) -> dict[str, str]:
    headers = sign_deals(body)
    headers["X-Closedlost-Timestamp"] = str(int(headers["X-Closedlost-Timestamp"]) - 1)
    return headers


@pytest.mark.parametrize(
    "headers_for",
    [
        _wrong_secret,
        _stale,
        _from_the_future,
        _unsigned,
        _no_timestamp,
        _no_signature,
        _other_body,
        _other_timestamp,
    ],
)
async def test_a_bad_signature_gets_401_and_nothing_is_stored(bot: BotClient, headers_for: Any) -> None:
    before = await a_settled_won_deal(bot)
    body = json.dumps(deal()).encode()

    answer = await bot.post_deals(body, headers=headers_for(body))

    assert answer.status == 401
    assert answer.body["error"]
    assert await bot.snapshot() == before


async def test_a_timestamp_295_seconds_old_is_still_accepted(bot: BotClient) -> None:
    """295 s, not 299: the request's own latency must not carry it past the 300 s window."""
    body = json.dumps(deal(stage="closed_won")).encode()

    answer = await bot.post_deals(body, headers=sign_deals(body, timestamp=int(time.time()) - 295))

    assert (answer.status, answer.body) == (202, {"accepted": 1, "duplicates": 0})


async def test_a_body_over_1_mib_gets_413_and_nothing_is_stored(bot: BotClient) -> None:
    before = await a_settled_won_deal(bot)

    answer = await bot.post_deals(padded(deal(), ONE_MIB + 1))

    assert answer.status == 413
    assert answer.body["error"]
    assert await bot.snapshot() == before


async def test_a_chunked_body_over_1_mib_gets_413(bot: BotClient) -> None:
    """No Content-Length to go by: the limit still holds while the body is read."""
    before = await a_settled_won_deal(bot)
    body = padded(deal(), ONE_MIB + 1)

    async def chunks() -> Any:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    async with bot.http.post("/webhooks/deals", data=chunks(), headers=sign_deals(body)) as response:
        assert response.status == 413
        assert (await response.json())["error"]
    assert await bot.snapshot() == before


async def test_a_body_of_exactly_1_mib_is_accepted(bot: BotClient) -> None:
    body = padded(deal(stage="closed_won"), ONE_MIB)
    assert len(body) == 1_048_576

    answer = await bot.post_deals(body)

    assert (answer.status, answer.body) == (202, {"accepted": 1, "duplicates": 0})
    (stored,) = await bot.rows(Deal)
    assert stored.stage == "closed_won"


async def test_without_a_webhook_secret_the_route_answers_503(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    settings = make_settings(database_url, fake_slack.url, deals_webhook_secret=None)
    async with serve(settings, fake_slack, session_factory) as bot:
        before = await bot.snapshot()

        answer = await bot.post_deals(deal())

        assert answer.status == 503
        assert "DEALS_WEBHOOK_SECRET" in answer.body["error"]
        assert await bot.snapshot() == before
        assert before["deal"] == [] and before["deal_event"] == []


# --- requests that arrive together ------------------------------------------------------------------


async def test_twenty_concurrent_requests_each_get_their_own_answer(bot: BotClient) -> None:
    """The group commit writes them in as few transactions as it likes; each request still gets 202."""
    events = [deal(deal_id=f"C-{n}", name=f"Concurrent deal {n}") for n in range(20)]

    answers = await asyncio.gather(*(bot.post_deals(event) for event in events))

    assert [(answer.status, answer.body) for answer in answers] == [(202, {"accepted": 1, "duplicates": 0})] * 20
    assert sorted(row.external_id for row in await bot.rows(Deal)) == sorted(f"C-{n}" for n in range(20))
    assert len(await bot.rows(DealEventRecord)) == 20
    assert len(await bot.rows(Loss)) == 20


@pytest.mark.parametrize(
    "event",
    [deal(event_id="crm-event-5"), deal()],
    ids=["same event_id", "no event_id: deal_id + stage + changed_at"],
)
async def test_the_same_event_in_five_concurrent_requests_is_accepted_once(
    bot: BotClient, event: dict[str, Any]
) -> None:
    answers = await asyncio.gather(*(bot.post_deals(event) for _ in range(5)))

    assert all(answer.status == 202 for answer in answers), answers
    bodies = [answer.body for answer in answers]
    assert bodies.count({"accepted": 1, "duplicates": 0}) == 1, bodies
    assert bodies.count({"accepted": 0, "duplicates": 1}) == 4, bodies
    assert len(await bot.rows(DealEventRecord)) == 1
    assert len(await bot.rows(Loss)) == 1
    await bot.settle_worker()
    assert len(dms_about(bot, event["name"])) == 1


# --- what is recorded ---------------------------------------------------------------------------------


async def test_unicode_and_emoji_round_trip_into_the_database_and_the_dm(bot: BotClient) -> None:
    name = "Zürich Straße — 🚀 Ünïcödé 漢字 déal 👩🏽‍💻"
    account = "Société Générale 🏦 — Ωmega Αθήνα"
    event = deal(name=name, account=account)

    answer = await bot.post_deals(event)

    assert answer.status == 202
    (stored,) = await bot.rows(Deal)
    assert (stored.name, stored.account) == (name, account)
    (record,) = await bot.rows(DealEventRecord)
    assert record.payload == event
    (dm,) = await bot.slack.wait_for("chat.postMessage")
    assert name in dm["text"]
    texts = json.dumps(dm["blocks"], ensure_ascii=False)
    assert name in texts and account in texts


async def test_closed_won_is_recorded_without_a_loss_or_a_dm(bot: BotClient) -> None:
    answer = await bot.post_deals(deal(stage="closed_won", name="Won deal"))

    assert (answer.status, answer.body) == (202, {"accepted": 1, "duplicates": 0})
    (stored,) = await bot.rows(Deal)
    assert (stored.stage, stored.stage_changed_at) == ("closed_won", datetime(2026, 11, 20, 15, 4, 5, tzinfo=UTC))
    (record,) = await bot.rows(DealEventRecord)
    assert (record.stage, record.applied) == ("closed_won", True)
    assert await bot.rows(Loss) == []
    await bot.settle_worker()
    assert dms_about(bot, "Won deal") == []
    assert bot.slack.calls_to("users.lookupByEmail") == []


async def test_healthz_answers_503_when_the_database_does_not_answer(
    fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """The app builds its own engine from DATABASE_URL, here a port nothing listens on; it starts
    anyway, and the health check says the database is gone."""
    settings = make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/nothing", fake_slack.url)
    async with serve(settings, fake_slack, session_factory) as bot:
        async with bot.http.get("/healthz") as response:
            assert response.status == 503
            body = await response.json()
    assert body["status"] == "unavailable"
    assert body["error"] == "the database cannot be read"
    assert body["database"]["reads"].startswith("failed: ")
