"""A process killed (SIGKILL) between recording a DM and sending it: the DM goes out after the
restart, once. The bot runs as a real `closedlost serve` process here, so it can be killed."""

import asyncio
import signal

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Loss, Message, OutboxMessage, OutboxState
from tests.bot_client import BotClient, deal
from tests.bot_process import bot_process, free_port
from tests.fake_slack import FakeSlack


async def test_a_dm_interrupted_by_sigkill_is_sent_once_after_the_restart(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    port = free_port()
    fake_slack.hang("chat.postMessage")
    async with bot_process(database_url, fake_slack.url, port) as first:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            client = BotClient(http=http, slack=fake_slack, session_factory=session_factory)
            answer = await client.post_deals(deal())
            assert answer.status == 202, answer
        await fake_slack.wait_for("chat.postMessage")  # received, never answered: the send is under way
        first.send_signal(signal.SIGKILL)
        await first.wait()
    [pending] = await client.rows(OutboxMessage)
    assert pending.state == OutboxState.PENDING and pending.claimed_by is not None
    assert fake_slack.messages == {}

    async with bot_process(database_url, fake_slack.url, port):
        await fake_slack.wait_for("chat.postMessage", 2)
        await asyncio.sleep(3)  # three more ticks: time for any second send to show up
    assert len(fake_slack.calls_to("chat.postMessage")) == 2  # the interrupted one, and one after the restart
    [delivered] = fake_slack.messages.values()
    assert "Acme — 200 seats" in delivered["text"]
    [message] = await client.rows(Message)
    [loss] = await client.rows(Loss)
    assert message.ts is not None and loss.prompted_at is not None
    assert [row.state for row in await client.rows(OutboxMessage)] == [OutboxState.SENT]
