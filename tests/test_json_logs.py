"""LOG_FORMAT=json: a real `closedlost serve` process through a full cycle writes nothing but JSON
lines, and a line about a deal carries its ids; the default stays text."""

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.logs import JsonFormatter, log_ids
from storage.models import Loss
from tests.bot_client import BotClient, deal, eventually, rows
from tests.bot_process import REPOSITORY, bot_process, free_port
from tests.fake_slack import FakeSlack

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


def parse_lines(text: str) -> list[dict[str, Any]]:
    """Every line as JSON (a line that is not fails the test), each with the four fields always there."""
    records = [json.loads(line) for line in text.splitlines()]
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        assert datetime.fromisoformat(record["time"]).utcoffset() == UTC.utcoffset(None), record
    return records


async def test_every_line_of_a_full_cycle_is_json_and_a_line_about_a_deal_carries_its_ids(
    tmp_path: Path, database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    port = free_port()
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("wb") as stderr:
        async with bot_process(database_url, fake_slack.url, port, stderr=stderr, LOG_FORMAT="json") as process:
            async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
                client = BotClient(http=http, slack=fake_slack, session_factory=session_factory)
                answer = await client.post_deals(
                    # Dana is in Slack and gets her prompt; Slack knows no one with the other email.
                    [deal(), deal(deal_id="nobody-1", name="Nobody's deal", owner_email="nobody@example.com")]
                )
                assert answer.status == 202, answer
            await fake_slack.wait_for("chat.postMessage")

            async def refused() -> Loss | None:
                return next((loss for loss in await rows(session_factory, Loss) if loss.delivery_error), None)

            unknown = await eventually(refused, what="the prompt to nobody@example.com to be refused")
            process.terminate()  # a clean stop: nothing is cut off mid-line
            await process.wait()

    records = parse_lines(stderr_path.read_text())
    assert any(record["logger"] == "aiohttp.access" for record in records)
    [about] = [record for record in records if record.get("deal_id") == "generic:nobody-1"]
    assert about["level"] == "WARNING"
    assert about["loss_id"] == unknown.id
    assert about["message"].endswith("no Slack user has the email nobody@example.com")
    assert "slack_user_id" not in about  # Slack never knew them


def closedlost(tmp_path: Path, *arguments: str, **settings: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPOSITORY),
        "HOME": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'closedlost.db'}",
        **settings,
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", *arguments],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_default_log_is_text_and_json_is_asked_for(tmp_path: Path) -> None:
    (tmp_path / "text").mkdir()
    (tmp_path / "json").mkdir()
    as_text = await asyncio.to_thread(closedlost, tmp_path / "text", "migrate")
    as_json = await asyncio.to_thread(closedlost, tmp_path / "json", "migrate", LOG_FORMAT="JSON")

    assert as_text.returncode == 0 and as_json.returncode == 0, (as_text.stderr, as_json.stderr)
    text_lines = as_text.stderr.splitlines()
    assert text_lines and all(TEXT_LINE.match(line) for line in text_lines), as_text.stderr
    records = parse_lines(as_json.stderr)
    assert [record["message"] for record in records] == [TEXT_LINE.sub("", line) for line in text_lines]


def test_another_log_format_is_refused_in_one_line(tmp_path: Path) -> None:
    result = closedlost(tmp_path, "migrate", LOG_FORMAT="xml")

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "closedlost: LOG_FORMAT 'xml' is not a log format: expected text, or json for one JSON object a line"
    ]
    assert not (tmp_path / "closedlost.db").exists()


def test_a_json_line_holds_the_exception_and_the_ids_on_one_line() -> None:
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.json_logs")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("the CRM sent\na second line")
        except ValueError:
            logger.exception(
                "saving a reason for loss %s failed",
                7,
                extra=log_ids(deals=[("hubspot", "1"), ("hubspot", "2")], losses=[7], user="U0DANA001"),
            )
    finally:
        logger.removeHandler(handler)

    [line] = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "saving a reason for loss 7 failed"
    assert record["level"] == "ERROR" and record["logger"] == "tests.json_logs"
    assert record["deal_ids"] == ["hubspot:1", "hubspot:2"] and "deal_id" not in record
    assert record["loss_id"] == 7 and record["slack_user_id"] == "U0DANA001"
    assert record["exception"].startswith("Traceback (most recent call last):")
    assert record["exception"].endswith("ValueError: the CRM sent\na second line")
