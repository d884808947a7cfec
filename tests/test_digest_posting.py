"""Posting the weekly digest (issue 4): DIGEST_SCHEDULE read in TIMEZONE across daylight-saving
changes, the scheduler posting it once per channel and week (later ticks, a restart, two servers on
one database), its catch-up rule, Slack failures, and `closedlost digest` posting a past week once.

The scheduler tests run the bot's real server with a clock the test moves (as tests/test_discipline.py
does) and a DIGEST_SCHEDULE set relative to that clock, in UTC.
"""

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.periods import last_full_week
from bot.settings import Settings, describe_settings_error
from bot.weekly_schedule import WeeklyTime, parse_weekly_time
from bot.working_time import DAY_NAMES
from storage.models import DigestRun, LossState, Message, MessageKind
from tests.bot_client import rows
from tests.bot_process import bot_process, free_port
from tests.clock import TWO_TICKS, Clock
from tests.conftest import make_settings, serve
from tests.fake_slack import Failure, FakeSlack, posted_to
from tests.seed import DANA, Seed, utc
from tests.test_digest import closedlost, seed_two_weeks

NEW_YORK = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")
TEAM_ZONE = ZoneInfo("UTC")
"""TIMEZONE in the scheduler tests."""
DIGESTS = "C0DIGESTS"
MANAGERS = "C0MANAGERS"


# --- DIGEST_SCHEDULE ------------------------------------------------------------------------------


def test_a_weekly_time_is_a_day_name_and_a_time() -> None:
    assert parse_weekly_time("mon 09:00") == WeeklyTime(0, time(9, 0))
    assert parse_weekly_time("  Sun   23:30 ") == WeeklyTime(6, time(23, 30))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("monday 09:00", "'monday 09:00' is not a weekly time"),
        ("mon 9:00", "'mon 9:00' is not a weekly time"),
        ("mon", "'mon' is not a weekly time"),
        ("09:00", "'09:00' is not a weekly time"),
        ("xyz 09:00", "'xyz 09:00' is not a weekly time"),
        ("mon 24:00", "'mon 24:00' has an impossible time 24:00"),
        ("mon 09:60", "'mon 09:60' has an impossible time 09:60"),
    ],
)
def test_a_malformed_weekly_time_says_what_is_expected(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_weekly_time(text)

    assert str(caught.value) == f"{problem}: expected a day name and a time HH:MM, like mon 09:00"


MONDAY_9 = parse_weekly_time("mon 09:00")


@pytest.mark.parametrize(
    ("tz", "before", "after"),
    [
        # New York leaves daylight saving time on Sunday Nov 1, 2026: 09:00 is 13:00 UTC, then 14:00.
        pytest.param(NEW_YORK, utc(2026, 10, 26, 13), utc(2026, 11, 2, 14), id="new-york-autumn"),
        # ... and enters it on Sunday Mar 8, 2026: 14:00 UTC, then 13:00.
        pytest.param(NEW_YORK, utc(2026, 3, 2, 14), utc(2026, 3, 9, 13), id="new-york-spring"),
        # Paris leaves it on Sunday Oct 25, 2026: 09:00 is 07:00 UTC, then 08:00.
        pytest.param(PARIS, utc(2026, 10, 19, 7), utc(2026, 10, 26, 8), id="paris-autumn"),
        # ... and enters it on Sunday Mar 29, 2026: 08:00 UTC, then 07:00.
        pytest.param(PARIS, utc(2026, 3, 23, 8), utc(2026, 3, 30, 7), id="paris-spring"),
    ],
)
def test_monday_9_is_9_local_time_the_weeks_around_a_daylight_saving_change(
    tz: ZoneInfo, before: datetime, after: datetime
) -> None:
    assert MONDAY_9.latest(after - timedelta(seconds=1), tz) == before
    assert MONDAY_9.latest(after, tz) == after
    assert MONDAY_9.latest(after + timedelta(days=6, hours=23), tz) == after
    assert after.astimezone(tz).time() == time(9, 0) == before.astimezone(tz).time()


def test_a_sunday_night_schedule_and_the_week_it_covers() -> None:
    sunday_night = parse_weekly_time("sun 23:30")

    # Sunday Nov 15, 2026, 23:30 in Paris is 22:30 UTC; on Monday morning it is still the latest.
    scheduled = sunday_night.latest(utc(2026, 11, 16, 8), PARIS)
    assert scheduled == utc(2026, 11, 15, 22, 30)
    assert sunday_night.latest(scheduled - timedelta(minutes=1), PARIS) == utc(2026, 11, 8, 22, 30)
    # At that moment the week of Nov 9 is not over: the last full week is the one before.
    assert last_full_week(now=scheduled, tz=PARIS).monday == date(2026, 11, 2)


def test_a_time_that_does_not_exist_on_the_night_the_clocks_go_forward_is_moved_later() -> None:
    # Paris skips from 02:00 to 03:00 on Sunday Mar 29, 2026: 02:30 is read as 03:30 CEST.
    assert parse_weekly_time("sun 02:30").latest(utc(2026, 3, 29, 12), PARIS) == utc(2026, 3, 29, 1, 30)


@pytest.mark.parametrize(
    ("values", "line"),
    [
        (
            {"digest_schedule": "monday 9am"},
            "DIGEST_SCHEDULE 'monday 9am' is not a weekly time: expected a day name and a time HH:MM, like mon 09:00",
        ),
        ({"digest_channel": "#sales"}, "DIGEST_CHANNEL '#sales' is not a channel id"),
    ],
)
def test_a_bad_digest_setting_is_one_line_naming_it(values: dict[str, object], line: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **{"slack_bot_token": "xoxb-1", "slack_signing_secret": "s", **values})  # type: ignore[arg-type, call-arg]

    described = describe_settings_error(caught.value)
    assert len(described.splitlines()) == 1 and described.startswith(line)


# --- the scheduler ---------------------------------------------------------------------------------


def schedule_at(moment: datetime) -> str:
    """A DIGEST_SCHEDULE (TIMEZONE being UTC) that falls on `moment`, to the minute below."""
    return f"{DAY_NAMES[moment.weekday()]} {moment:%H:%M}"


async def seed_a_loss_last_week(session_factory: async_sessionmaker[AsyncSession], scheduled: datetime) -> None:
    seed = Seed()
    seed.loss(owner=DANA, lost_at=scheduled - timedelta(days=7), amount="42000", state=LossState.AWAITING)
    await seed.save(session_factory)


async def test_the_digest_is_posted_once_at_its_time_and_not_again_after_a_restart(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    scheduled = (clock.now + timedelta(hours=1)).replace(second=0, microsecond=0)
    await seed_a_loss_last_week(session_factory, scheduled)
    settings = make_settings(
        database_url,
        fake_slack.url,
        digest_channel=DIGESTS,
        manager_channel=MANAGERS,
        digest_schedule=schedule_at(scheduled),
    )
    async with serve(settings, fake_slack, session_factory, clock=clock):
        await asyncio.sleep(TWO_TICKS)
        assert fake_slack.calls_to("chat.postMessage") == [], "the digest went out before its time"

        clock.advance(hours=1)
        [digest] = await fake_slack.wait_for("chat.postMessage")
        week = last_full_week(now=scheduled, tz=TEAM_ZONE)
        assert digest["channel"] == DIGESTS
        assert digest["text"] == (
            f"Closed-lost digest, {week.period.label}: 1 lost (42,000 USD)."
            " Top reason: not known yet: no loss of the week has a reason. Discipline: 0% logged; nothing overdue."
        )
        assert "42,000 USD" in digest["blocks"][1]["text"]["text"]

        clock.advance(hours=1)
        await asyncio.sleep(TWO_TICKS)

    async with serve(settings, fake_slack, session_factory, clock=clock):
        clock.advance(hours=3)
        await asyncio.sleep(TWO_TICKS)

    assert len(fake_slack.calls_to("chat.postMessage")) == 1, "the digest was posted again"
    [run] = await rows(session_factory, DigestRun)
    assert (run.channel, run.week_start) == (DIGESTS, week.monday)
    [message] = await rows(session_factory, Message)
    assert (message.id, message.kind, message.rep_key, message.channel) == (
        run.message_id,
        MessageKind.DIGEST,
        None,
        DIGESTS,
    )


async def test_two_servers_on_one_database_post_the_digest_once(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    settings = make_settings(
        database_url, fake_slack.url, digest_channel=DIGESTS, digest_schedule=schedule_at(clock.now)
    )
    async with (
        serve(settings, fake_slack, session_factory, clock=clock),
        serve(settings, fake_slack, session_factory, clock=clock),
    ):
        await fake_slack.wait_for("chat.postMessage")
        await asyncio.sleep(TWO_TICKS)

    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert len(await rows(session_factory, DigestRun)) == 1


async def test_two_bot_processes_started_together_post_the_digest_once(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    scheduled = datetime.now(UTC)
    await seed_a_loss_last_week(session_factory, scheduled)
    settings = {"DIGEST_CHANNEL": DIGESTS, "DIGEST_SCHEDULE": schedule_at(scheduled)}
    async with AsyncExitStack() as processes:
        await asyncio.gather(
            *(
                processes.enter_async_context(bot_process(database_url, fake_slack.url, free_port(), **settings))
                for _ in range(2)
            )
        )
        await fake_slack.wait_for("chat.postMessage")
        await asyncio.sleep(3)  # three more ticks of each process: time for a second post to show up

    [digest] = fake_slack.calls_to("chat.postMessage")
    assert digest["channel"] == DIGESTS and "1 lost" in digest["text"]
    assert len(await rows(session_factory, DigestRun)) == 1


async def test_without_digest_channel_the_digest_goes_to_the_manager_channel_and_an_empty_week_is_a_note(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    settings = make_settings(
        database_url, fake_slack.url, manager_channel=MANAGERS, digest_schedule=schedule_at(clock.now)
    )
    async with serve(settings, fake_slack, session_factory, clock=clock):
        [digest] = await fake_slack.wait_for("chat.postMessage")

    label = last_full_week(now=clock.now, tz=TEAM_ZONE).period.label
    assert digest["channel"] == MANAGERS
    assert digest["text"] == f"Closed-lost digest, {label}: no closed-lost deals."
    assert digest["blocks"][1]["text"]["text"] == f"No closed-lost deals in {label}."


@pytest.mark.parametrize(
    ("down_for", "posted"),
    [(timedelta(hours=23), True), (timedelta(hours=25), False)],
    ids=["back-within-a-day-catches-up", "later-waits-for-next-week"],
)
async def test_a_bot_down_at_the_scheduled_time_catches_up_within_a_day(
    down_for: timedelta,
    posted: bool,
    database_url: str,
    fake_slack: FakeSlack,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock()
    scheduled = (clock.now - down_for).replace(second=0, microsecond=0)
    settings = make_settings(
        database_url, fake_slack.url, digest_channel=DIGESTS, digest_schedule=schedule_at(scheduled)
    )
    async with serve(settings, fake_slack, session_factory, clock=clock):
        if posted:
            await fake_slack.wait_for("chat.postMessage")
        await asyncio.sleep(TWO_TICKS)

    assert len(posted_to(fake_slack, DIGESTS)) == (1 if posted else 0)
    if posted:
        [run] = await rows(session_factory, DigestRun)
        assert run.week_start == last_full_week(now=scheduled, tz=TEAM_ZONE).monday


async def test_a_rate_limit_and_a_server_error_are_retried_and_the_digest_posted_once(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_slack.fail("chat.postMessage", Failure(429, retry_after=1), Failure(500))
    clock = Clock()
    settings = make_settings(
        database_url, fake_slack.url, digest_channel=DIGESTS, digest_schedule=schedule_at(clock.now)
    )
    async with serve(settings, fake_slack, session_factory, clock=clock):
        await fake_slack.wait_for("chat.postMessage", 3)
        await asyncio.sleep(TWO_TICKS)

    assert len(fake_slack.calls_to("chat.postMessage")) == 3
    assert len(posted_to(fake_slack, DIGESTS)) == 1


# --- closedlost digest -----------------------------------------------------------------------------


async def test_the_cli_posts_a_past_week_once(
    tmp_path: Path, database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed_two_weeks(session_factory)
    environment = {"SLACK_API_URL": fake_slack.url, "DIGEST_CHANNEL": DIGESTS}

    result = await asyncio.to_thread(
        closedlost, tmp_path, "digest", "--week", "2026-11-11", database_url=database_url, **environment
    )

    assert (result.returncode, result.stdout) == (
        0,
        f"closedlost: posted the digest of the week of Nov 9, 2026 to {DIGESTS}\n",
    )
    [digest] = fake_slack.calls_to("chat.postMessage")
    assert digest["channel"] == DIGESTS
    assert digest["text"].startswith(
        "Closed-lost digest, the week of Nov 9, 2026: 5 lost (25,000 EUR · 63,000 USD), 1 won"
    )
    [run] = await rows(session_factory, DigestRun)
    assert (run.channel, run.week_start) == (DIGESTS, date(2026, 11, 9))

    again = await asyncio.to_thread(
        closedlost, tmp_path, "digest", "--week", "2026-11-15", database_url=database_url, **environment
    )

    assert again.returncode == 1
    assert again.stderr == (
        f"closedlost: the digest of the week of Nov 9, 2026 already went to {DIGESTS} (once per channel and week); "
        "nothing posted\n"
    )
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    assert len(await rows(session_factory, DigestRun)) == 1


async def test_the_cli_does_not_post_the_week_that_is_not_over(
    tmp_path: Path, database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    today = datetime.now(ZoneInfo("Europe/Paris")).date()

    result = await asyncio.to_thread(
        closedlost,
        tmp_path,
        "digest",
        "--week",
        today.isoformat(),
        database_url=database_url,
        SLACK_API_URL=fake_slack.url,
        DIGEST_CHANNEL=DIGESTS,
    )

    assert result.returncode == 1
    assert result.stderr.endswith(" is not over yet: only --dry-run shows it\n")
    assert fake_slack.calls == []
    assert await rows(session_factory, DigestRun) == []


async def test_the_cli_says_when_slack_refuses_the_digest_and_posts_it_once_the_cause_is_fixed(
    tmp_path: Path, database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_slack.fail("chat.postMessage", Failure(200, error="not_in_channel"))

    result = await asyncio.to_thread(
        closedlost,
        tmp_path,
        "digest",
        "--week",
        "2026-11-11",
        database_url=database_url,
        SLACK_API_URL=fake_slack.url,
        DIGEST_CHANNEL=DIGESTS,
    )

    assert result.returncode == 1
    assert result.stderr.endswith(
        f"closedlost: the digest of the week of Nov 9, 2026 for {DIGESTS} is not posted: "
        "Slack refused it (Slack answered not_in_channel)\n"
    )
    assert posted_to(fake_slack, DIGESTS) == []

    # The admin invites the bot to the channel and runs the command again.
    again = await asyncio.to_thread(
        closedlost,
        tmp_path,
        "digest",
        "--week",
        "2026-11-11",
        database_url=database_url,
        SLACK_API_URL=fake_slack.url,
        DIGEST_CHANNEL=DIGESTS,
    )

    assert (again.returncode, again.stdout) == (
        0,
        f"closedlost: posted the digest of the week of Nov 9, 2026 to {DIGESTS}\n",
    )
    assert len(posted_to(fake_slack, DIGESTS)) == 1
    assert len(await rows(session_factory, DigestRun)) == 1
