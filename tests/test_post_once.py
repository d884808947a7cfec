"""A message is posted once even when the outcome of a post is not known: the answer timed out, or
the process died between Slack accepting the post and recording it. The next try finds the post in
the conversation's history by its metadata and records it instead of posting again."""

import asyncio
import signal
import sqlite3
from datetime import datetime, timedelta

import aiohttp
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.metrics import Metrics
from bot.services import chasing, outbox
from bot.services.chasing import ChasePolicy
from bot.services.delivery import LOOKUP_MARGIN, POST_EVENT_TYPE, SlackDelivery
from bot.slack_client import create_slack_client
from storage.models import Loss, Message, OutboxMessage, OutboxState
from tests.bot_client import BotClient, deal, eventually, rows
from tests.bot_process import bot_process, free_port
from tests.conftest import make_settings
from tests.fake_slack import Failure, FakeSlack, posted_to
from tests.test_outbox import CATALOGUE, LEASE, NOW, queue_prompts

ANSWER_TIMEOUT_SECONDS = 1
"""The Slack client's timeout here: the 30 s of the bot's would only make the test slow."""


async def deliver(session_factory: async_sessionmaker[AsyncSession], fake_slack: FakeSlack, now: datetime) -> int:
    """One round of the outbox at `now`, with the bot's own SlackDelivery on a client that gives up
    on an answer after ANSWER_TIMEOUT_SECONDS."""
    settings = make_settings("sqlite+aiosqlite://", fake_slack.url)
    slack = create_slack_client(settings)
    slack.timeout = ANSWER_TIMEOUT_SECONDS
    sender = SlackDelivery(
        session_factory=session_factory,
        slack=slack,
        catalogue=CATALOGUE,
        chase=ChasePolicy.from_settings(settings),
        team_tz=settings.tz,
        team_currency=settings.currency,
        team={},
        clock=lambda: now,
        metrics=Metrics(),
    )
    return await outbox.deliver_due_messages(
        session_factory=session_factory,
        send=sender.send,
        record_failure=sender.record_failure,
        process_id="process-a",
        lease=LEASE,
        clock=lambda: now,
        stopping=lambda: False,
    )


async def test_a_post_is_made_once_with_metadata_naming_it_and_no_history_is_read(session_factory, fake_slack) -> None:
    await queue_prompts(session_factory, 1)

    assert await deliver(session_factory, fake_slack, NOW) == 1

    [post] = fake_slack.calls_to("chat.postMessage")
    [message] = await rows(session_factory, Message)
    [call] = await rows(session_factory, OutboxMessage)
    assert post["metadata"] == {
        "event_type": POST_EVENT_TYPE,
        "event_payload": {"message_id": message.id, "outbox_id": call.id},
    }
    assert [c.method for c in fake_slack.calls if c.method.startswith("conversations.")] == []
    assert call.state == OutboxState.SENT and message.ts is not None


async def test_a_post_slack_accepted_whose_answer_never_came_is_not_posted_again(session_factory, fake_slack) -> None:
    await queue_prompts(session_factory, 1)
    fake_slack.accept_then_hang("chat.postMessage")

    await deliver(session_factory, fake_slack, NOW)

    [call] = await rows(session_factory, OutboxMessage)
    assert (call.state, call.attempts) == (OutboxState.PENDING, 1)
    assert "TimeoutError" in call.last_error
    [(channel, ts)] = list(fake_slack.messages)  # Slack has it; the bot does not know

    assert await deliver(session_factory, fake_slack, call.due_at) == 1

    assert len(posted_to(fake_slack, channel)) == 1
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    [lookup] = fake_slack.calls_to("conversations.history")
    assert lookup["channel"] == channel and lookup["include_all_metadata"] in ("1", "true", True)
    assert float(lookup["oldest"]) == (NOW - LOOKUP_MARGIN).timestamp()  # from just before the first try
    [message] = await rows(session_factory, Message)
    assert (message.channel, message.ts) == (channel, ts)
    [call] = await rows(session_factory, OutboxMessage)
    assert call.state == OutboxState.SENT
    [loss] = await rows(session_factory, Loss)
    assert loss.prompted_at == call.sent_at  # the reminders' clock starts when the post is recorded


async def test_a_post_whose_connection_dropped_after_sending_is_not_posted_again(session_factory, fake_slack) -> None:
    await queue_prompts(session_factory, 1)
    fake_slack.accept_then_drop("chat.postMessage")

    await deliver(session_factory, fake_slack, NOW)

    [call] = await rows(session_factory, OutboxMessage)
    assert call.state == OutboxState.PENDING and "Disconnected" in call.last_error
    [(channel, ts)] = list(fake_slack.messages)

    assert await deliver(session_factory, fake_slack, call.due_at) == 1

    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # the client did not resend it either
    assert len(posted_to(fake_slack, channel)) == 1
    [message] = await rows(session_factory, Message)
    assert (message.channel, message.ts) == (channel, ts)


async def test_a_post_slack_accepted_while_the_database_was_locked_is_not_posted_again(
    database_url: str, session_factory: async_sessionmaker[AsyncSession], fake_slack: FakeSlack
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("another process's lock on the SQLite file stands in for a database that is down")
    await queue_prompts(session_factory, 1)
    answer = fake_slack.hold("chat.postMessage")
    delivering = asyncio.create_task(deliver(session_factory, fake_slack, NOW))
    await fake_slack.wait_for("chat.postMessage")
    locker = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # writers wait out the busy timeout, then fail
        answer.set_result(None)
        with pytest.raises(OperationalError, match="locked"):
            await delivering  # neither marking it sent nor scheduling a retry could be recorded
    finally:
        locker.close()
    [(channel, ts)] = list(fake_slack.messages)

    assert await deliver(session_factory, fake_slack, NOW + LEASE + timedelta(seconds=1)) == 1

    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    [message] = await rows(session_factory, Message)
    assert (message.channel, message.ts) == (channel, ts)
    [call] = await rows(session_factory, OutboxMessage)
    assert call.state == OutboxState.SENT


async def test_a_reply_in_a_thread_whose_answer_never_came_is_looked_for_among_the_replies(
    session_factory, fake_slack
) -> None:
    await queue_prompts(session_factory, 1)
    await deliver(session_factory, fake_slack, NOW)
    [(channel, prompt_ts)] = list(fake_slack.messages)
    [loss] = await rows(session_factory, Loss)
    due = loss.reminder_due_at
    policy = ChasePolicy.from_settings(make_settings("sqlite+aiosqlite://", fake_slack.url))
    assert await chasing.queue_due_reminders(session_factory=session_factory, policy=policy, now=due) == 1
    fake_slack.accept_then_hang("chat.postMessage")

    await deliver(session_factory, fake_slack, due)
    [reminder_call] = [call for call in await rows(session_factory, OutboxMessage) if call.state == OutboxState.PENDING]
    assert await deliver(session_factory, fake_slack, reminder_call.due_at) == 1

    assert len(fake_slack.calls_to("chat.postMessage")) == 2  # the prompt, and the reminder once
    [lookup] = fake_slack.calls_to("conversations.replies")
    assert (lookup["channel"], lookup["ts"]) == (channel, prompt_ts)
    assert fake_slack.calls_to("conversations.history") == []
    [reply] = [ts for (where, ts), posted in fake_slack.messages.items() if posted.get("thread_ts") == prompt_ts]
    reminder = next(message for message in await rows(session_factory, Message) if message.thread_ts == prompt_ts)
    assert (reminder.channel, reminder.ts) == (channel, reply)


async def test_a_post_whose_answer_never_came_and_that_slack_does_not_have_is_posted(
    session_factory, fake_slack
) -> None:
    await queue_prompts(session_factory, 1)
    fake_slack.hang("chat.postMessage")  # received, never answered, and not posted

    await deliver(session_factory, fake_slack, NOW)
    [call] = await rows(session_factory, OutboxMessage)
    assert fake_slack.messages == {}

    assert await deliver(session_factory, fake_slack, call.due_at) == 1

    assert len(fake_slack.calls_to("conversations.history")) == 1
    [(channel, ts)] = list(fake_slack.messages)
    [message] = await rows(session_factory, Message)
    assert (message.channel, message.ts) == (channel, ts)


async def test_a_post_slack_answered_with_a_failure_is_retried_without_reading_history(
    session_factory, fake_slack
) -> None:
    await queue_prompts(session_factory, 1)
    fake_slack.fail("chat.postMessage", Failure(500), Failure(500), Failure(500))

    await deliver(session_factory, fake_slack, NOW)
    [message] = await rows(session_factory, Message)
    assert message.post_started_at is None  # Slack said it failed: nothing to look for
    [call] = await rows(session_factory, OutboxMessage)

    assert await deliver(session_factory, fake_slack, call.due_at) == 1

    assert [c.method for c in fake_slack.calls if c.method.startswith("conversations.")] == []
    assert len(fake_slack.messages) == 1


async def test_a_dm_slack_accepted_just_before_a_sigkill_is_not_sent_again_after_the_restart(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    port = free_port()
    answer = fake_slack.hold("chat.postMessage")
    async with bot_process(database_url, fake_slack.url, port) as first:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            client = BotClient(http=http, slack=fake_slack, session_factory=session_factory)
            assert (await client.post_deals(deal())).status == 202
        await fake_slack.wait_for("chat.postMessage")
        first.send_signal(signal.SIGKILL)
        await first.wait()
    answer.set_result(None)  # Slack goes on with the post the killed process sent
    [(channel, ts)] = await eventually(lambda: list(fake_slack.messages), what="Slack to accept the post")
    [message] = await client.rows(Message)
    assert message.ts is None and message.post_started_at is not None

    async with bot_process(database_url, fake_slack.url, port):
        await eventually(lambda: fake_slack.calls_to("conversations.history"), what="the restarted bot to look")
        await asyncio.sleep(3)  # three more ticks: time for any second post to show up
        [message] = await client.rows(Message)

    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert len(posted_to(fake_slack, channel)) == 1
    assert (message.channel, message.ts) == (channel, ts)
    assert [row.state for row in await client.rows(OutboxMessage)] == [OutboxState.SENT]
    [loss] = await client.rows(Loss)
    assert loss.prompted_at is not None
    assert loss.prompted_at - message.posted_at == timedelta(0)


async def test_an_app_not_yet_granted_the_history_scopes_posts_again_and_says_why(
    session_factory, fake_slack, caplog
) -> None:
    await queue_prompts(session_factory, 1)
    fake_slack.accept_then_hang("chat.postMessage")
    await deliver(session_factory, fake_slack, NOW)
    [call] = await rows(session_factory, OutboxMessage)
    fake_slack.fail("conversations.history", Failure(200, error="missing_scope"))

    assert await deliver(session_factory, fake_slack, call.due_at) == 1

    assert len(fake_slack.messages) == 2  # at least once, as before the scopes were asked for
    [warning] = [record.getMessage() for record in caplog.records if "missing_scope" in record.getMessage()]
    assert "reinstall the app" in warning and "posting it" in warning
    [call] = await rows(session_factory, OutboxMessage)
    assert call.state == OutboxState.SENT
