"""The outbox over a real database and a fake Slack: every owed message goes out once, across
processes, failures and restarts."""

import asyncio
from datetime import UTC, datetime, timedelta

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.event import DealEvent
from bot.reasons import DEFAULT_REASONS, Catalogue
from bot.services import outbox
from bot.services.deal_events import record_deal_events
from bot.slack_client import create_slack_client
from storage import queries
from storage.engine import create_engine, create_session_factory
from storage.models import Loss, OutboxMessage
from tests.bot_client import rows
from tests.conftest import make_settings
from tests.fake_slack import Failure, FakeSlack

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CATALOGUE = Catalogue(DEFAULT_REASONS)


def lost(number: int) -> DealEvent:
    return DealEvent(
        source="generic",
        deal_id=f"D{number}",
        name=f"Deal {number}",
        stage="closed_lost",
        owner_email=None,
        owner_slack_id=f"U{number % 7:08d}",
        changed_at=NOW - timedelta(hours=1),
    )


def slack_client(fake_slack: FakeSlack) -> AsyncWebClient:
    return create_slack_client(make_settings("sqlite+aiosqlite://", fake_slack.url))


async def deliver(session_factory: async_sessionmaker[AsyncSession], fake_slack: FakeSlack, now: datetime) -> int:
    return await outbox.deliver_due_messages(
        session_factory=session_factory, slack=slack_client(fake_slack), catalogue=CATALOGUE, clock=lambda: now
    )


async def test_two_processes_send_each_prompt_once(database_url, session_factory, fake_slack) -> None:
    await record_deal_events(session_factory=session_factory, events=[lost(n) for n in range(60)], received_at=NOW)
    other_engine = create_engine(database_url)  # a second process has its own engine and connections
    other = create_session_factory(other_engine)
    await rows(other, Loss)  # connected before the race starts, as a running process would be
    try:
        handled = await asyncio.gather(deliver(session_factory, fake_slack, NOW), deliver(other, fake_slack, NOW))
    finally:
        await other_engine.dispose()

    assert sum(handled) == 60 and min(handled) > 0  # both processes took a share
    posted = [call["text"] for call in fake_slack.calls_to("chat.postMessage")]
    assert len(posted) == 60 == len(set(posted))
    assert all(loss.prompt_ts for loss in await rows(session_factory, Loss))


async def test_a_message_claimed_by_a_process_that_died_is_sent_after_its_claim_expires(
    session_factory, fake_slack
) -> None:
    await record_deal_events(session_factory=session_factory, events=[lost(1)], received_at=NOW)
    async with session_factory() as session, session.begin():
        (claimed,) = await queries.claim_due_messages(session, now=NOW, until=NOW + outbox.CLAIM_FOR, limit=10)

    assert await deliver(session_factory, fake_slack, NOW + timedelta(seconds=30)) == 0
    assert await deliver(session_factory, fake_slack, NOW + outbox.CLAIM_FOR + timedelta(seconds=1)) == 1
    assert await deliver(session_factory, fake_slack, NOW + timedelta(hours=1)) == 0
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


async def test_slack_down_longer_than_the_client_retries_is_retried_later_not_lost(session_factory, fake_slack) -> None:
    await record_deal_events(session_factory=session_factory, events=[lost(1)], received_at=NOW)
    fake_slack.fail("chat.postMessage", Failure(500), Failure(500), Failure(500))

    await deliver(session_factory, fake_slack, NOW)

    (message,) = await rows(session_factory, OutboxMessage)
    assert (message.state, message.attempts) == ("pending", 1)
    assert message.due_at == NOW + outbox.backoff(1)
    assert "500" in message.last_error
    assert await deliver(session_factory, fake_slack, NOW + timedelta(seconds=5)) == 0
    assert await deliver(session_factory, fake_slack, message.due_at) == 1
    (message,) = await rows(session_factory, OutboxMessage)
    assert message.state == "sent"
    (loss,) = await rows(session_factory, Loss)
    assert loss.prompt_ts is not None


async def test_an_error_retrying_cannot_fix_is_recorded_and_not_retried(session_factory, fake_slack) -> None:
    await record_deal_events(session_factory=session_factory, events=[lost(1)], received_at=NOW)
    fake_slack.fail("chat.postMessage", Failure(200, error="account_inactive"))

    await deliver(session_factory, fake_slack, NOW)
    assert await deliver(session_factory, fake_slack, NOW + timedelta(days=1)) == 0

    (message,) = await rows(session_factory, OutboxMessage)
    assert message.state == "failed" and "account_inactive" in message.last_error
    (loss,) = await rows(session_factory, Loss)
    assert loss.state == "awaiting" and "account_inactive" in loss.delivery_error
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


async def test_a_batch_whose_claim_runs_out_hands_the_rest_back(session_factory, fake_slack) -> None:
    await record_deal_events(session_factory=session_factory, events=[lost(n) for n in range(3)], received_at=NOW)
    late = NOW + outbox.CLAIM_FOR - outbox.CLAIM_MARGIN
    times = iter([NOW, NOW])  # the claim and the first send; Slack is slow from then on

    handled = await outbox.deliver_due_messages(
        session_factory=session_factory,
        slack=slack_client(fake_slack),
        catalogue=CATALOGUE,
        clock=lambda: next(times, late),
    )

    assert handled == 1
    pending = [message for message in await rows(session_factory, OutboxMessage) if message.state == "pending"]
    assert len(pending) == 2 and all(message.claimed_until is None for message in pending)
    assert await deliver(session_factory, fake_slack, late) == 2
    assert len(fake_slack.calls_to("chat.postMessage")) == 3
