"""`GET /healthz` tells what works: within 2 s, a 503 only when the database cannot be read or
written, and a body that says what is degraded."""

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.health import run_probe
from storage.models import Message, MessageKind, OutboxKind, OutboxMessage, OutboxState
from tests.bot_client import BotClient
from tests.conftest import make_settings, serve
from tests.fake_slack import FakeSlack
from tests.sqlite_lock import write_lock_held_by_another_process

# The check's own bound; a test allows a little for the request itself.
ANSWERS_WITHIN_SECONDS = 2.5


async def health(bot: BotClient) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    async with bot.http.get("/healthz") as response:
        return response.status, await response.json(), time.monotonic() - started


async def test_a_healthy_bot_answers_ok_with_what_it_checked(bot: BotClient) -> None:
    status, body, _ = await health(bot)

    assert status == 200
    assert body == {
        "status": "ok",
        "database": {"reads": "ok", "writes": "ok"},
        "outbox": {"pending": 0, "oldest_pending_seconds": None},
    }


async def test_the_oldest_pending_slack_call_is_reported_with_its_age(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """A call queued ten minutes ago and never made (its due time is far ahead, as after backoffs)."""
    queued_at = datetime.now(UTC) - timedelta(minutes=10)
    async with session_factory.begin() as session:
        message = Message(kind=MessageKind.DIGEST, post_to="C0MANAGERS", created_at=queued_at)
        session.add(message)
        await session.flush()
        session.add(
            OutboxMessage(
                kind=OutboxKind.POST,
                message_id=message.id,
                state=OutboxState.PENDING,
                due_at=queued_at + timedelta(days=1),
                created_at=queued_at,
            )
        )

    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory) as bot:
        status, body, _ = await health(bot)

    assert (status, body["status"], body["outbox"]["pending"]) == (200, "ok", 1)
    assert 600 <= body["outbox"]["oldest_pending_seconds"] < 660


async def test_a_database_that_refuses_writes_answers_503_naming_writes(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """A read-only SQLite file stands in for a full disk: reads work, every write fails. (The tests
    run as root, for whom chmod changes nothing, so the file is opened read-only by its URL.)"""
    if not database_url.startswith("sqlite"):
        pytest.skip("a read-only file is SQLite's")
    path = make_url(database_url).database
    read_only = f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"
    async with serve(make_settings(read_only, fake_slack.url), fake_slack, session_factory) as bot:
        status, body, seconds = await health(bot)

    assert status == 503
    assert body["status"] == "unavailable"
    assert body["error"] == "the database cannot be written"
    assert body["database"] == {"reads": "ok", "writes": "failed: attempt to write a readonly database"}
    assert seconds < ANSWERS_WITHIN_SECONDS


async def test_a_write_lock_held_by_another_process_is_reported_within_2_s(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("a file lock is SQLite's")
    path = make_url(database_url).database
    assert path is not None
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory) as bot:
        async with write_lock_held_by_another_process(path):
            first = await health(bot)
            # A second check while the first's probe still waits on the lock does not queue behind it.
            second = await health(bot)
        after = await health(bot)
        if after[1]["database"]["writes"] != "ok":
            # The first check's probe may give up on the lock (its 3 s busy timeout) just as it is
            # freed, and this check takes its answer: still busy, never down. The next one is fresh.
            assert after[0] == 200, after
            after = await health(bot)

    for status, body, seconds in (first, second):
        assert (status, body["status"]) == (200, "degraded")
        assert body["database"] == {"reads": "ok", "writes": "no answer within 1.5 s"}
        assert seconds < ANSWERS_WITHIN_SECONDS
    assert after[:2] == (200, {**after[1], "status": "ok"})


async def test_a_probe_that_gives_up_on_sqlites_lock_reports_busy_not_down() -> None:
    async def locked() -> None:
        raise OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked"))

    async def read_only() -> None:
        raise OperationalError("UPDATE", None, sqlite3.OperationalError("attempt to write a readonly database"))

    busy, _ = await run_probe(locked)
    down, _ = await run_probe(read_only)

    assert (busy.problem, busy.timed_out) == ("no answer within 1.5 s", True)
    assert (down.problem, down.timed_out) == ("failed: attempt to write a readonly database", False)
