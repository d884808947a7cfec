"""A deal event is stored whatever a CRM sent: each text longer than its column (storage/models.py)
is cut to fit when the event is recorded (`fit_to_columns`). The end-to-end cases, one per CRM, are
in test_hubspot.py, test_salesforce.py and test_pipedrive.py; the generic webhook refuses
over-long values instead (test_deals_webhook.py)."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.event import CLOSED_LOST, DealEvent
from bot.services.deal_events import PromptPolicy, fit_to_columns, record_deal_events
from storage.models import CrmJob, Deal, DealEventRecord, Loss
from tests.bot_client import rows

# Each text field of a DealEvent and the column it lands in, read here from the models on purpose.
COLUMNS = {
    "source": Deal.__table__.c.source,
    "deal_id": Deal.__table__.c.external_id,
    "name": Deal.__table__.c.name,
    "stage": Deal.__table__.c.stage,
    "owner_email": Deal.__table__.c.owner_email,
    "owner_slack_id": Deal.__table__.c.owner_slack_id,
    "currency": Deal.__table__.c.currency,
    "account": Deal.__table__.c.account,
    "url": Deal.__table__.c.url,
}
# Minutes and microseconds in the offset and the time: the longest isoformat() a datetime has.
CHANGED_AT = datetime(2026, 11, 20, 15, 4, 5, 123456, tzinfo=timezone(timedelta(hours=-9, minutes=-30)))


def length(column: object) -> int:
    value = column.type.length  # type: ignore[attr-defined]
    assert isinstance(value, int)
    return value


def longest_event(**fields: object) -> DealEvent:
    """An event whose every text field is far longer than any column."""
    values: dict[str, object] = dict.fromkeys(COLUMNS, "x" * 10_000)
    values.update(changed_at=CHANGED_AT, crm_reason="r" * 100_000, event_id="e" * 10_000)
    values.update(fields)
    return DealEvent(**values)  # type: ignore[arg-type]


def test_each_text_is_cut_to_its_columns_length() -> None:
    event = fit_to_columns(longest_event())

    assert {name: len(getattr(event, name)) for name in COLUMNS} == {
        name: length(column) for name, column in COLUMNS.items()
    }
    assert event.crm_reason == "r" * 100_000  # a text column has no length


def test_an_event_that_fits_is_kept_as_it_is() -> None:
    event = DealEvent(
        source="hubspot",
        deal_id="18472639201",
        name="n" * length(COLUMNS["name"]),
        stage=CLOSED_LOST,
        owner_email="dana@example.com",
        owner_slack_id=None,
        changed_at=CHANGED_AT,
        url="https://app.hubspot.com/contacts/44831207/deal/18472639201",
    )

    assert fit_to_columns(event) is event


@pytest.mark.parametrize("event_id", [None, "e" * 10_000], ids=["deal-stage-time", "event-id"])
def test_the_longest_idempotency_keys_fit_their_columns(event_id: str | None) -> None:
    key = fit_to_columns(longest_event(event_id=event_id)).idempotency_key

    assert len(key) <= length(DealEventRecord.__table__.c.idempotency_key)
    # A webhook whose deal is fetched later is queued under its source and this key.
    assert len(f"{'s' * length(COLUMNS['source'])}:{key}") <= length(CrmJob.__table__.c.event_key)


async def test_an_event_of_the_longest_texts_is_stored(session_factory: async_sessionmaker[AsyncSession]) -> None:
    """On PostgreSQL too, which refuses a value longer than its column."""
    event = longest_event(stage=CLOSED_LOST, currency="USD", amount=Decimal("48000"))
    policy = PromptPolicy(bulk_window=timedelta(0), bulk_max=timedelta(0), min_amount=Decimal(0))

    result = await record_deal_events(
        session_factory=session_factory, events=[event], received_at=CHANGED_AT, policy=policy
    )

    assert result.is_new == [True]
    fitted = fit_to_columns(event)
    (deal,) = await rows(session_factory, Deal)
    assert (deal.external_id, deal.name, deal.account, deal.owner_email, deal.owner_slack_id, deal.url) == (
        fitted.deal_id,
        fitted.name,
        fitted.account,
        fitted.owner_email,
        fitted.owner_slack_id,
        fitted.url,
    )
    assert deal.crm_reason == event.crm_reason
    (record,) = await rows(session_factory, DealEventRecord)
    assert record.idempotency_key == fitted.idempotency_key
    assert len(await rows(session_factory, Loss)) == 1


async def test_an_event_sent_again_is_recognised_by_its_cut_id(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    event = longest_event(stage=CLOSED_LOST, currency="USD")
    policy = PromptPolicy(bulk_window=timedelta(0), bulk_max=timedelta(0), min_amount=Decimal(0))

    first = await record_deal_events(
        session_factory=session_factory, events=[event], received_at=CHANGED_AT, policy=policy
    )
    again = await record_deal_events(
        session_factory=session_factory, events=[event], received_at=CHANGED_AT, policy=policy
    )

    assert (first.is_new, again.is_new) == ([True], [False])
    assert len(await rows(session_factory, DealEventRecord)) == 1
