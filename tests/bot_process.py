"""The bot as a real `closedlost serve` process, for tests that kill it or run two of them."""

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

import aiohttp

from tests.bot_client import DEALS_WEBHOOK_SECRET, SLACK_SIGNING_SECRET, eventually

REPOSITORY = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bot_environment(database_url: str, slack_url: str, port: int, **settings: str) -> dict[str, str]:
    """The environment of a `closedlost serve` on `port`, with `settings` added."""
    return {
        **os.environ,
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "SLACK_API_URL": slack_url,
        "DATABASE_URL": database_url,
        "DEALS_WEBHOOK_SECRET": DEALS_WEBHOOK_SECRET,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "BULK_WINDOW": "0s",
        "PROMPT_ANYTIME": "true",
        "SCHEDULER_TICK": "1s",
        **settings,
    }


@asynccontextmanager
async def bot_process(
    database_url: str, slack_url: str, port: int, *, stderr: int | IO[bytes] | None = None, **settings: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`closedlost serve` on `port`, with `settings` added to the environment, once its health check
    answers; killed on exit if still running. `stderr=asyncio.subprocess.PIPE` keeps its log; a file
    takes it too (a pipe nobody reads would stop the bot once full); else it goes to the test's."""
    env = bot_environment(database_url, slack_url, port, **settings)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", cwd=REPOSITORY, env=env, stderr=stderr
    )
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
