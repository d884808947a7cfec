"""Stopping the bot: what is under way finishes, and nothing is logged as an error."""

import asyncio
import json
import logging
import signal

import aiohttp

from tests.bot_client import deal, sign_deals
from tests.bot_process import bot_process, free_port
from tests.conftest import make_settings, serve


async def test_stopping_right_after_start_lets_the_first_tick_finish_without_an_error(
    database_url, fake_slack, session_factory, caplog
) -> None:
    # The scheduler's first tick starts with the app: stopping at once finds it under way.
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory):
        pass

    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []


async def test_serve_stops_on_sigterm_with_status_0_and_nothing_logged_as_an_error(database_url, fake_slack) -> None:
    port = free_port()
    async with bot_process(
        database_url, fake_slack.url, port, stderr=asyncio.subprocess.PIPE, LOG_LEVEL="WARNING"
    ) as process:
        body = json.dumps(deal()).encode()
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"http://127.0.0.1:{port}/webhooks/deals", data=body, headers=sign_deals(body)
            ) as answer:
                assert answer.status == 202
        await fake_slack.wait_for("chat.postMessage")
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, stderr = await process.communicate()

    assert process.returncode == 0, stderr.decode()
    assert "Traceback" not in stderr.decode()
    assert "Unclosed" not in stderr.decode()
