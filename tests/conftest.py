"""Fixtures: a database per test (SQLite always, PostgreSQL too when TEST_DATABASE_URL is set), the
fake Slack, and the bot's real aiohttp server on port 0."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import create_app, utc_now
from bot.settings import Settings
from bot.working_time import DAY_NAMES
from storage.engine import create_engine, create_session_factory
from storage.migrate import upgrade_to_head
from tests.bot_client import DEALS_WEBHOOK_SECRET, SLACK_SIGNING_SECRET, BotClient
from tests.fake_crm import FakeCrm
from tests.fake_slack import FakeSlack
from tests.seed import seed_team

DATABASES = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


@pytest.fixture(params=DATABASES)
async def database_url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    """An empty database migrated to the newest schema: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'closedlost.db'}"
        await asyncio.to_thread(upgrade_to_head, url)
        yield url
        return
    server = make_url(os.environ["TEST_DATABASE_URL"])
    name = f"closedlost_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(
        host=server.host, port=server.port, user=server.username, password=server.password, database=server.database
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = server.set(database=name).render_as_string(hide_password=False)
        await asyncio.to_thread(upgrade_to_head, url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def session_factory(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield create_session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack(users_by_email={"dana@example.com": "U0DANA001", "sam@example.com": "U0SAM0001"})
    await slack.start()
    yield slack
    await slack.stop()


@pytest.fixture
async def team(session_factory: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Closed deals of two reps, Dana and Sam (see `tests.seed.seed_team`)."""
    return await seed_team(session_factory)


@pytest.fixture
async def fake_crm() -> AsyncIterator[FakeCrm]:
    crm = FakeCrm()
    await crm.start()
    yield crm
    await crm.stop()


def digest_schedule_far_from_now() -> str:
    """A DIGEST_SCHEDULE three or four days away from now both ways (in any TIMEZONE, the last moment
    is well past the 24-hour catch-up window, and the next is over a day ahead), so that a test with
    MANAGER_CHANNEL set gets no digest it did not ask for, whatever day it runs on."""
    day = (datetime.now(UTC).weekday() + 3) % 7
    return f"{DAY_NAMES[day]} 12:00"


def make_settings(database_url: str, slack_api_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "slack_bot_token": "xoxb-test-token",
        "slack_signing_secret": SLACK_SIGNING_SECRET,
        "slack_api_url": slack_api_url,
        "database_url": database_url,
        "deals_webhook_secret": DEALS_WEBHOOK_SECRET,
        # Prompts go out as soon as a deal is lost, whatever the hour, and the scheduler ticks every second.
        "bulk_window": "0s",
        "prompt_anytime": True,
        "scheduler_tick": "1s",
        "digest_schedule": digest_schedule_far_from_now(),
        # Tests of the sweep turn it on; elsewhere it would only add calls to the fake CRM.
        "sweep_every": "off",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
async def bot(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> AsyncIterator[BotClient]:
    """The bot's own aiohttp app, served on 127.0.0.1 at a free port, talking to the fake Slack."""
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory) as client:
        yield client


class serve:  # noqa: N801 - used as `async with serve(...)`, like a function
    """Starts the bot's server for `settings` (on `clock`, when given); yields a BotClient; stops it on exit."""

    def __init__(
        self,
        settings: Settings,
        fake_slack: FakeSlack,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._settings = settings
        self._fake_slack = fake_slack
        self._session_factory = session_factory
        self._clock = clock

    async def __aenter__(self) -> BotClient:
        self._runner = web.AppRunner(create_app(self._settings, clock=self._clock))
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._http = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}")
        return BotClient(http=self._http, slack=self._fake_slack, session_factory=self._session_factory)

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.close()
        await self._runner.cleanup()
