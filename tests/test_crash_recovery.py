"""A process killed (SIGKILL) between recording a DM and sending it: the DM goes out after the
restart, once. The bot runs as a real `closedlost serve` process here, so it can be killed."""

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Loss, Message, OutboxMessage, OutboxState
from tests.bot_client import DEALS_WEBHOOK_SECRET, SLACK_SIGNING_SECRET, BotClient, deal, eventually
from tests.fake_slack import FakeSlack

REPOSITORY = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def bot_process(database_url: str, slack_url: str, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """`closedlost serve` on `port`, once its health check answers; killed on exit if still running."""
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "SLACK_API_URL": slack_url,
        "DATABASE_URL": database_url,
        "DEALS_WEBHOOK_SECRET": DEALS_WEBHOOK_SECRET,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "BULK_WINDOW": "0s",
        "SCHEDULER_TICK": "1s",
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", cwd=REPOSITORY, env=env)
    try:
        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(healthy, what="the bot process to answer /healthz")
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


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
