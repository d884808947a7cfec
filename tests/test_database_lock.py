"""While another process holds SQLite's write lock, webhooks are answered within their bound (503,
"send them again"), reads and `/healthz` still answer, and the scheduler says once that it is held
up and once that it goes on. Afterwards every event sent is stored once and prompted once."""

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.ingest import ANSWER_WITHIN_SECONDS
from storage.models import CrmJobState, DealEventRecord
from tests.bot_client import Answer, BotClient, deal, eventually
from tests.conftest import make_settings, serve
from tests.fake_crm import FakeCrm
from tests.fake_slack import FakeSlack
from tests.sqlite_lock import write_lock_held_by_another_process
from tests.test_pipedrive import PASSWORD, USER, jobs_done, post_pipedrive, v2_change

# Longer than the bound and than SQLite's busy timeout (10 s), so that the bot's own waits end
# while the lock is still held.
LOCK_SECONDS = 15
NOT_STORED = {"error": "the events could not be stored just now; nothing was kept, send them again"}

T = TypeVar("T")


async def timed(call: Awaitable[T]) -> tuple[T, float]:
    started = time.monotonic()
    return await call, time.monotonic() - started


async def hold_lock(path: str, locked: asyncio.Event) -> None:
    async with write_lock_held_by_another_process(path):
        locked.set()
        await asyncio.sleep(LOCK_SECONDS)


def dms_naming(bot: BotClient, name: str) -> list[dict[str, Any]]:
    return [message for message in bot.slack.messages.values() if name in str(message.get("text"))]


async def test_a_webhook_is_answered_within_the_bound_while_another_process_holds_the_lock(
    database_url: str,
    fake_slack: FakeSlack,
    session_factory: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("a file lock is SQLite's")
    path = make_url(database_url).database
    assert path is not None
    caplog.set_level(logging.INFO)
    # One rep each, so that each deal gets a DM of its own.
    first, second, later = (
        deal(deal_id=f"LOCK-{n}", name=f"Locked deal {n}", owner_email=None, owner_slack_id=f"U0LOCK00{n}")
        for n in ("1", "2", "3")
    )
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory) as bot:
        waiting = deal(deal_id="LOCK-0", name="Read while locked", owner_email=None, owner_slack_id="U0LOCK000")
        assert (await bot.post_deals(waiting)).status == 202
        locked = asyncio.Event()
        holder = asyncio.create_task(hold_lock(path, locked))
        await locked.wait()
        # A read, on connections of its own, does not wait for the lock.
        pending, read_seconds = await timed(bot.command("pending", user_id="U0LOCK000"))
        # Two at once: one is being written when the bound runs out, the other waits its turn.
        answers = await asyncio.gather(timed(bot.post_deals(first)), timed(bot.post_deals(second)))
        for answer, seconds in answers:
            assert answer == Answer(503, NOT_STORED)
            assert seconds < ANSWER_WITHIN_SECONDS + 1
        async with bot.http.get("/healthz") as response:
            health = response.status, (await response.json())["database"]
        await holder

        later_answer = await bot.post_deals(later)
        # The CRM sends again what it was told to; what was stored meanwhile counts as duplicates.
        resent = [await bot.post_deals(first), await bot.post_deals(second)]
        for name in ("Locked deal 1", "Locked deal 2", "Locked deal 3"):
            await eventually(lambda name=name: dms_naming(bot, name), what=f"the DM for {name!r}")
        await eventually(lambda: "the scheduler ticks again" in caplog.text, what="the scheduler's recovery")
        await bot.settle_worker()
        stored = await bot.rows(DealEventRecord)

    assert pending.body["text"] == "1 deal of yours needs a reason.", pending
    assert read_seconds < 2
    assert health == (200, {"reads": "ok", "writes": "no answer within 1.5 s"})
    assert later_answer == Answer(202, {"accepted": 1, "duplicates": 0})
    for answer in resent:
        assert answer.status == 202
        assert answer.body["accepted"] + answer.body["duplicates"] == 1
    assert sorted(row.payload["deal_id"] for row in stored if row.payload["deal_id"].startswith("LOCK-")) == [
        "LOCK-0",
        "LOCK-1",
        "LOCK-2",
        "LOCK-3",
    ]
    for name in ("Locked deal 1", "Locked deal 2", "Locked deal 3"):
        assert len(dms_naming(bot, name)) == 1
    messages = [record.getMessage() for record in caplog.records]
    assert not [line for line in messages if "maximum number of running instances" in line]
    assert len([line for line in messages if "skipping ticks until it ends" in line]) == 1
    assert len([line for line in messages if "the scheduler ticks again" in line]) == 1


async def test_a_crm_webhook_is_answered_within_the_bound_and_its_retry_stored_once(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """Pipedrive's route, which stores a fetch of the deal rather than going through the ingest queue."""
    if not database_url.startswith("sqlite"):
        pytest.skip("a file lock is SQLite's")
    path = make_url(database_url).database
    assert path is not None
    fake_crm.pipedrive_users[21876999] = "Dana@Example.com"
    settings = make_settings(
        database_url,
        fake_slack.url,
        pipedrive_webhook_user=USER,
        pipedrive_webhook_password=PASSWORD,
        pipedrive_api_token="pipedrive-api-token",
        pipedrive_api_url=fake_crm.url,
    )
    async with serve(settings, fake_slack, session_factory) as bot:
        locked = asyncio.Event()
        holder = asyncio.create_task(hold_lock(path, locked))
        await locked.wait()
        # Two at once, which would otherwise wait for the database one after the other.
        changes = [v2_change(status="lost", update_time="2024-06-10T14:51:00Z", deal_id=number) for number in (1, 2)]
        answers = await asyncio.gather(*(timed(post_pipedrive(bot, change)) for change in changes))
        for (status, answer), seconds in answers:
            assert (status, answer) == (503, NOT_STORED)
            assert seconds < ANSWER_WITHIN_SECONDS + 1
        await holder

        # Pipedrive sends them again; stored meanwhile or not, each is one deal event.
        resent = [await post_pipedrive(bot, change) for change in changes]
        jobs = await jobs_done(bot, 2)
        await fake_slack.wait_for("chat.postMessage")  # one prompt: both deals are Dana's
        stored = await bot.rows(DealEventRecord)

    for status, answer in resent:
        assert status == 200 and answer["accepted"] + answer["duplicates"] == 1
    assert [job.state for job in jobs] == [CrmJobState.DONE] * 2
    assert len(stored) == 2
