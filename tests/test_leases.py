"""Two bot processes on one database and a Slack slower than the outbox's lease (three
SCHEDULER_TICKs, 3 s here): the process that claimed a message keeps its claim while Slack answers,
so the other never sends it too; a process whose claim ran out and was taken over records nothing
of what Slack finally answered it.

The processes are two apps on one database, each with its own clock: a process whose clock lags
renews its claims to a moment the other already sees as past, as a process that stalled would.
"""

import asyncio
import logging

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Loss, Message, OutboxKind, OutboxMessage, OutboxState
from tests.bot_client import BotClient, deal, eventually, rows
from tests.clock import TWO_TICKS, Clock
from tests.conftest import make_settings, serve
from tests.fake_slack import Failure, FakeSlack

LEASE_SECONDS = 3


async def the_post(bot: BotClient) -> OutboxMessage:
    [post] = [row for row in await bot.rows(OutboxMessage) if row.kind == OutboxKind.POST]
    return post


async def test_a_post_slower_than_the_lease_is_sent_once_by_the_process_that_claimed_it(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    settings = make_settings(database_url, fake_slack.url)
    slow = fake_slack.hold("chat.postMessage")
    async with (
        serve(settings, fake_slack, session_factory) as first,
        serve(settings, fake_slack, session_factory),
    ):
        assert (await first.post_deals(deal())).status == 202
        await fake_slack.wait_for("chat.postMessage")
        claimer = (await the_post(first)).claimed_by

        # Slack takes longer than the lease; the claimer renews its claim every tick meanwhile.
        await asyncio.sleep(LEASE_SECONDS + TWO_TICKS)
        assert len(fake_slack.calls_to("chat.postMessage")) == 1
        slow.set_result(None)

        async def sent() -> OutboxMessage | None:
            post = await the_post(first)
            return post if post.state == OutboxState.SENT else None

        post = await eventually(sent, what="the prompt to be recorded as sent")
        assert (post.claimed_by, post.attempts) == (claimer, 1)
        await asyncio.sleep(TWO_TICKS)
        assert len(fake_slack.calls_to("chat.postMessage")) == 1


@pytest.mark.parametrize(
    "late_answer",
    [None, Failure(200, error="fatal_error"), Failure(200, error="channel_not_found")],
    ids=["posted", "to retry", "refused for good"],
)
async def test_a_process_whose_claim_was_taken_over_records_nothing_slack_answered_it(
    database_url: str,
    fake_slack: FakeSlack,
    session_factory: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
    late_answer: Failure | None,
) -> None:
    settings = make_settings(database_url, fake_slack.url)
    stalled, taking_over = Clock(), Clock()
    slow = fake_slack.hold("chat.postMessage")
    async with serve(settings, fake_slack, session_factory, clock=stalled) as first:
        assert (await first.post_deals(deal())).status == 202
        await fake_slack.wait_for("chat.postMessage")
        stalled_claim = (await the_post(first)).claimed_by

        # To the second process the first one's claim ran out a minute ago.
        taking_over.advance(seconds=60)
        async with serve(settings, fake_slack, session_factory, clock=taking_over):
            posts = await fake_slack.wait_for("chat.postMessage", 2)

            async def sent() -> OutboxMessage | None:
                post = await the_post(first)
                return post if post.state == OutboxState.SENT else None

            await eventually(sent, what="the second process to record the prompt sent")
            with caplog.at_level(logging.WARNING, logger="bot.services.outbox"):
                slow.set_result(late_answer)
                await asyncio.sleep(TWO_TICKS)

    # Slack accepted the second process's post (and, for "posted", the first one's too: that cannot
    # be taken back); the database holds the second process's outcome, untouched by the first.
    assert len(posts) == 2
    post = await the_post(first)
    assert (post.state, post.attempts, post.last_error, post.sent_at) == (OutboxState.SENT, 1, None, taking_over.now)
    assert post.claimed_by not in (None, stalled_claim)
    [message] = await rows(session_factory, Message)
    [second_ts] = [ts for (_, ts), params in fake_slack.messages.items() if params is posts[1]]
    assert message.ts == second_ts and message.posted_at == taking_over.now
    [loss] = await rows(session_factory, Loss)
    assert (loss.prompted_at, loss.delivery_error) == (taking_over.now, None)
    assert "was taken over by another process while this one was making it" in caplog.text
