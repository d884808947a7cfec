"""The outbox over a real database and a fake Slack: every owed message goes out once, across
processes, failures and restarts. Prompts are made the way the scheduler makes them (one per rep)
and sent by the bot's own SlackDelivery; each "process" is a process id with its own claims."""

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.event import DealEvent
from bot.metrics import Metrics
from bot.reasons import DEFAULT_REASONS, Catalogue
from bot.services import chasing, outbox
from bot.services.chasing import ChasePolicy
from bot.services.deal_events import PromptPolicy, record_deal_events
from bot.services.delivery import SlackDelivery
from bot.slack_client import create_slack_client
from storage import message_queries
from storage.engine import create_engine, create_session_factory
from storage.models import Loss, Message, OutboxMessage
from tests.bot_client import rows
from tests.conftest import make_settings
from tests.fake_slack import Failure, FakeSlack

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CATALOGUE = Catalogue(DEFAULT_REASONS)
CHASE = ChasePolicy.from_settings(make_settings("sqlite+aiosqlite://", "http://127.0.0.1:1"))
POLICY = PromptPolicy(bulk_window=timedelta(0), bulk_max=timedelta(0), min_amount=Decimal(0))
LEASE = timedelta(seconds=30)


def lost(number: int) -> DealEvent:
    """A closed-lost deal whose owner, given by Slack id, owns no other deal: one prompt each."""
    return DealEvent(
        source="generic",
        deal_id=f"D{number}",
        name=f"Deal {number}",
        stage="closed_lost",
        owner_email=None,
        owner_slack_id=f"U{number:08d}",
        changed_at=NOW - timedelta(hours=1),
    )


async def queue_prompts(session_factory: async_sessionmaker[AsyncSession], count: int) -> None:
    """Records `count` lost deals and queues their prompts, as the scheduler does at NOW."""
    await record_deal_events(
        session_factory=session_factory, events=[lost(n) for n in range(count)], received_at=NOW, policy=POLICY
    )
    assert (await chasing.queue_due_prompts(session_factory=session_factory, policy=CHASE, now=NOW)).queued == count


def delivery(session_factory: async_sessionmaker[AsyncSession], fake_slack: FakeSlack, now: datetime) -> SlackDelivery:
    settings = make_settings("sqlite+aiosqlite://", fake_slack.url)
    return SlackDelivery(
        session_factory=session_factory,
        slack=create_slack_client(settings),
        catalogue=CATALOGUE,
        chase=ChasePolicy.from_settings(settings),
        team_tz=settings.tz,
        team_currency=settings.currency,
        team={},
        clock=lambda: now,
        metrics=Metrics(),
    )


async def deliver(
    session_factory: async_sessionmaker[AsyncSession],
    fake_slack: FakeSlack,
    now: datetime,
    *,
    process_id: str = "process-a",
) -> int:
    sender = delivery(session_factory, fake_slack, now)
    return await outbox.deliver_due_messages(
        session_factory=session_factory,
        send=sender.send,
        record_failure=sender.record_failure,
        process_id=process_id,
        lease=LEASE,
        clock=lambda: now,
        stopping=lambda: False,
    )


async def claim(session_factory: async_sessionmaker[AsyncSession], process_id: str, now: datetime) -> list[int]:
    """Claims what is due for `process_id`, as a process does before sending; returns the outbox ids."""
    async with session_factory() as session, session.begin():
        claimed = await message_queries.claim_due_messages(
            session, now=now, process_id=process_id, until=now + LEASE, limit=outbox.BATCH_SIZE
        )
    return [message.id for message in claimed]


async def test_two_processes_send_each_prompt_once(database_url, session_factory, fake_slack) -> None:
    await queue_prompts(session_factory, 60)
    other_engine = create_engine(database_url)  # a second process has its own engine and connections
    other = create_session_factory(other_engine)
    await rows(other, Loss)  # connected before the race starts, as a running process would be
    try:
        handled = await asyncio.gather(
            deliver(session_factory, fake_slack, NOW, process_id="process-a"),
            deliver(other, fake_slack, NOW, process_id="process-b"),
        )
    finally:
        await other_engine.dispose()

    assert sum(handled) == 60 and min(handled) > 0  # both processes took a share
    posted = [call["text"] for call in fake_slack.calls_to("chat.postMessage")]
    assert len(posted) == 60 == len(set(posted))
    # Each rep was looked up once, by the process that sent their prompt.
    looked_up = [call["user"] for call in fake_slack.calls_to("users.info")]
    assert len(looked_up) == 60 == len(set(looked_up))
    # The claims did not overlap: each call was made by the one process that claimed it.
    calls = await rows(session_factory, OutboxMessage)
    assert all(call.state == "sent" and call.attempts == 1 for call in calls)
    by_process = [sum(call.claimed_by == process for call in calls) for process in ("process-a", "process-b")]
    assert by_process == handled
    messages = await rows(session_factory, Message)
    assert len(messages) == 60 and all(message.ts and message.channel for message in messages)
    losses = await rows(session_factory, Loss)
    assert all(loss.prompted_at == NOW and loss.prompt_message_id for loss in losses)


async def test_a_message_claimed_by_a_process_that_died_is_sent_after_its_claim_expires(
    session_factory, fake_slack
) -> None:
    await queue_prompts(session_factory, 1)
    assert len(await claim(session_factory, "process-that-died", NOW)) == 1

    assert await deliver(session_factory, fake_slack, NOW + LEASE - timedelta(seconds=1)) == 0
    assert fake_slack.calls_to("chat.postMessage") == []
    assert await deliver(session_factory, fake_slack, NOW + LEASE + timedelta(seconds=1)) == 1
    assert await deliver(session_factory, fake_slack, NOW + timedelta(hours=1)) == 0
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    (call,) = await rows(session_factory, OutboxMessage)
    assert (call.state, call.claimed_by) == ("sent", "process-a")


async def test_a_process_that_renews_its_claims_keeps_them(session_factory, fake_slack) -> None:
    await queue_prompts(session_factory, 1)
    ids = await claim(session_factory, "process-b", NOW)
    assert len(ids) == 1

    await outbox.renew_claims(session_factory, process_id="process-b", outbox_ids=ids, until=NOW + 2 * LEASE)

    assert await deliver(session_factory, fake_slack, NOW + LEASE + timedelta(seconds=1)) == 0
    assert fake_slack.calls_to("chat.postMessage") == []
    assert await deliver(session_factory, fake_slack, NOW + 2 * LEASE + timedelta(seconds=1)) == 1


async def test_renewing_extends_only_the_claims_on_calls_in_flight(session_factory, fake_slack) -> None:
    """A call the process claimed and then gave up on (its batch failed) is not held by renewing."""
    await queue_prompts(session_factory, 2)
    in_flight, abandoned = await claim(session_factory, "process-b", NOW)

    await outbox.renew_claims(session_factory, process_id="process-b", outbox_ids=[in_flight], until=NOW + 2 * LEASE)

    assert await deliver(session_factory, fake_slack, NOW + LEASE + timedelta(seconds=1)) == 1
    calls = {call.id: call for call in await rows(session_factory, OutboxMessage)}
    assert (calls[abandoned].state, calls[abandoned].claimed_by) == ("sent", "process-a")
    assert (calls[in_flight].state, calls[in_flight].claimed_by) == ("pending", "process-b")


async def test_slack_down_longer_than_the_client_retries_is_retried_later_not_lost(session_factory, fake_slack) -> None:
    await queue_prompts(session_factory, 1)
    fake_slack.fail("chat.postMessage", Failure(500), Failure(500), Failure(500))

    await deliver(session_factory, fake_slack, NOW)

    (call,) = await rows(session_factory, OutboxMessage)
    assert (call.state, call.attempts) == ("pending", 1)
    assert (call.claimed_by, call.claimed_until) == (None, None)  # any process may retry it
    assert call.due_at == NOW + outbox.backoff(1)
    assert "500" in call.last_error
    (loss,) = await rows(session_factory, Loss)
    assert loss.prompted_at is None and loss.delivery_error is None
    assert await deliver(session_factory, fake_slack, NOW + timedelta(seconds=5)) == 0
    assert await deliver(session_factory, fake_slack, call.due_at, process_id="process-b") == 1
    (call,) = await rows(session_factory, OutboxMessage)
    assert call.state == "sent"
    (message,) = await rows(session_factory, Message)
    assert message.ts is not None
    (loss,) = await rows(session_factory, Loss)
    assert loss.prompted_at == NOW + outbox.backoff(1)
    assert len(fake_slack.calls_to("users.info")) == 1  # the rep found on the first try is kept


async def test_an_error_retrying_cannot_fix_is_recorded_and_not_retried(session_factory, fake_slack) -> None:
    await queue_prompts(session_factory, 1)
    fake_slack.fail("chat.postMessage", Failure(200, error="account_inactive"))

    await deliver(session_factory, fake_slack, NOW)
    assert await deliver(session_factory, fake_slack, NOW + timedelta(days=1)) == 0
    assert (
        await chasing.queue_due_prompts(session_factory=session_factory, policy=CHASE, now=NOW + timedelta(days=1))
    ).queued == 0

    (call,) = await rows(session_factory, OutboxMessage)
    assert call.state == "failed" and "account_inactive" in call.last_error
    (loss,) = await rows(session_factory, Loss)
    assert loss.state == "awaiting" and "account_inactive" in loss.delivery_error
    assert loss.prompted_at is None
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


async def test_a_process_that_stops_hands_back_what_it_did_not_send(session_factory, fake_slack) -> None:
    await queue_prompts(session_factory, 12)
    sender = delivery(session_factory, fake_slack, NOW)
    sent = len(fake_slack.calls_to("chat.postMessage"))

    handled = await outbox.deliver_due_messages(
        session_factory=session_factory,
        send=sender.send,
        record_failure=sender.record_failure,
        process_id="process-a",
        lease=LEASE,
        clock=lambda: NOW,
        stopping=lambda: len(fake_slack.calls_to("chat.postMessage")) > sent,  # told to stop after one
    )

    # The calls under way when it was told (up to CONCURRENCY at once) are finished; no other
    # starts, and the rest are handed back for any process to send.
    assert 1 <= handled <= outbox.CONCURRENCY
    pending = [call for call in await rows(session_factory, OutboxMessage) if call.state == "pending"]
    assert len(pending) == 12 - handled and all(call.claimed_until is None for call in pending)
    assert await deliver(session_factory, fake_slack, NOW, process_id="process-b") == 12 - handled
    assert len(fake_slack.calls_to("chat.postMessage")) == 12


async def test_release_claims_hands_back_every_call_a_process_holds(session_factory, fake_slack) -> None:
    await queue_prompts(session_factory, 2)
    assert len(await claim(session_factory, "process-a", NOW)) == 2
    assert await deliver(session_factory, fake_slack, NOW, process_id="process-b") == 0  # still claimed

    await outbox.release_claims(session_factory, process_id="process-a")

    assert await deliver(session_factory, fake_slack, NOW, process_id="process-b") == 2
