"""The digest's chart (issue 13): the weekly counts it shows, its layers and colours, the PNG itself,
its upload to the digest's channel through Slack's external upload flow (and the digest without it
when the upload fails), and `closedlost digest --dry-run --chart FILE`."""

import asyncio
import io
import json
import logging
import struct
import subprocess
import sys
from datetime import date, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest
from matplotlib.image import imread
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.periods import last_full_week
from bot.reasons import DEFAULT_REASONS, Catalogue, Reason, ReasonGroup
from bot.services.digest_chart import loss_trend
from bot.views.chart import DPI, PALETTE, WIDTH_INCHES, chart_series, chart_title, draw_loss_chart
from bot.views.data import LossTrend, WeekCounts
from storage.models import DigestRun, LossState, Message
from tests.bot_client import rows
from tests.clock import TWO_TICKS, Clock
from tests.conftest import make_settings, serve
from tests.fake_slack import Failure, FakeSlack, posted_to
from tests.seed import DANA, SAM, Seed, utc
from tests.test_digest import CATALOGUE, PARIS, REPOSITORY, WEEK, closedlost, seed_two_weeks
from tests.test_digest_posting import DIGESTS, TEAM_ZONE, schedule_at

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LONG_LABEL = "Failed the customer's security and compliance review after procurement"
WIDE = Catalogue([*DEFAULT_REASONS, Reason("security", LONG_LABEL)])


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG's header chunk (IHDR), which must come first."""
    assert png[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", png[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def week(monday: date, won: int = 0, without_reason: int = 0, **lost: int) -> WeekCounts:
    return WeekCounts(monday, lost, without_reason, won)


def twelve_weeks() -> LossTrend:
    """Several reasons, two empty weeks, a reason with a long label, losses without a reason."""
    monday = date(2026, 8, 31)
    weeks = []
    for n in range(12):
        day = monday + timedelta(weeks=n)
        if n in (3, 7):
            weeks.append(week(day))
        else:
            weeks.append(
                week(
                    day, won=n % 5, without_reason=n // 9, price=3 + n % 4, competitor=n % 3, no_decision=1, security=2
                )
            )
    return LossTrend(weeks, last_so_far=False)


# --- the picture -----------------------------------------------------------------------------------


def test_the_chart_is_a_png_of_the_size_slack_previews() -> None:
    png = draw_loss_chart(twelve_weeks(), WIDE)

    width, height = png_size(png)
    assert width == WIDTH_INCHES * DPI == 640
    assert 480 <= height <= 700  # the legend's rows make it taller; Slack previews it 360-500 px wide
    assert len(png) < 200_000
    pixels = imread(io.BytesIO(png), format="png")
    assert pixels.shape[:2] == (height, width)
    # The first reasons' colours are drawn: price is the catalogue's first real reason, competitor its second.
    colours = {tuple(round(channel * 255) for channel in pixel[:3]) for pixel in pixels.reshape(-1, pixels.shape[2])}
    assert _rgb(PALETTE[0]) in colours and _rgb(PALETTE[1]) in colours


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def test_the_title_names_the_weeks_it_covers() -> None:
    assert chart_title(twelve_weeks()) == "Deals lost by reason, and win rate: 12 weeks, Aug 31 – Nov 22, 2026"
    across_years = LossTrend([week(date(2025, 12, 1) + timedelta(weeks=n)) for n in range(12)], last_so_far=True)
    assert chart_title(across_years).endswith("12 weeks, Dec 1, 2025 – Feb 22, 2026 (so far)")


def test_real_losses_are_stacked_by_reason_and_what_is_not_a_real_loss_is_set_apart_on_top() -> None:
    series = chart_series(twelve_weeks(), WIDE)

    assert [(layer.label, layer.hatch != "") for layer in series] == [
        ("Price / budget", False),
        ("Failed the customer's s…", False),  # long labels are cut for the legend
        ("Lost to a competitor", False),
        ("No decision / went dark", True),
        ("No reason yet", True),
    ]
    assert series[0].counts == [3, 4, 5, 0, 3, 4, 5, 0, 3, 4, 5, 6]
    assert series[-1].counts == [0] * 9 + [1, 1, 1]
    # Price and competitor keep the colours of their places in the catalogue, whatever their rank.
    assert (series[0].colour, series[2].colour) == (PALETTE[0], PALETTE[1])


def test_a_reason_keeps_its_colour_from_one_chart_to_the_next() -> None:
    monday = date(2026, 8, 31)
    mostly_price = LossTrend([week(monday, price=9, timing=1, other=2)], last_so_far=False)
    mostly_timing = LossTrend([week(monday, price=1, timing=9)], last_so_far=False)

    first = {layer.label: layer.colour for layer in chart_series(mostly_price, CATALOGUE)}
    second = {layer.label: layer.colour for layer in chart_series(mostly_timing, CATALOGUE)}

    assert first["Price / budget"] == second["Price / budget"]
    assert first["Bad timing / postponed"] == second["Bad timing / postponed"]
    assert len(set(first.values())) == 3


def test_beyond_seven_reasons_the_fewest_are_grouped() -> None:
    codes = [reason.code for reason in DEFAULT_REASONS if reason.group != ReasonGroup.NO_DECISION]
    trend = LossTrend([week(date(2026, 8, 31), **{code: 20 - n for n, code in enumerate(codes)})], last_so_far=False)

    series = chart_series(trend, CATALOGUE)

    assert len(codes) == 9
    assert [layer.label for layer in series][5:] == ["Poor qualification", "3 more reasons"]
    assert series[-1].counts == [12 + 13 + 14]
    assert len({layer.colour for layer in series}) == 7


# --- the figures -----------------------------------------------------------------------------------


async def test_the_counts_of_the_twelve_weeks_up_to_the_digest(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    await seed_two_weeks(session_factory)
    seed = Seed(_numbers=count(100))  # after seed_two_weeks' deals
    # 00:30 on Monday Aug 24 in Paris: the first of the twelve weeks; an hour earlier, the week before.
    first = seed.loss(owner=DANA, lost_at=utc(2026, 8, 23, 22, 30), amount="1000", currency="EUR")
    seed.reason(first, "timing", logged_at=utc(2026, 8, 24, 9))
    seed.loss(owner=SAM, lost_at=utc(2026, 8, 23, 21, 30), amount="1000")
    await seed.save(session_factory)

    trend = await loss_trend(session_factory=session_factory, catalogue=CATALOGUE, week=WEEK, tz=PARIS)

    assert [each.monday for each in trend.weeks] == [date(2026, 8, 24) + timedelta(weeks=n) for n in range(12)]
    assert trend.weeks[0] == WeekCounts(date(2026, 8, 24), {"timing": 1}, 0, 0)
    assert all(each == WeekCounts(each.monday, {}, 0, 0) for each in trend.weeks[1:10])
    # The week before the digest's, and the digest's (the cancelled loss is no loss).
    assert trend.weeks[10] == WeekCounts(date(2026, 11, 2), {"price": 1}, 1, 1)
    assert trend.weeks[11] == WeekCounts(
        date(2026, 11, 9), {"competitor": 2, "missing_feature": 1, "no_decision": 1}, 1, 1
    )
    assert (trend.weeks[11].lost, trend.weeks[11].win_rate) == (5, 1 / 6)
    assert not trend.last_so_far and not trend.empty


# --- shared with the digest ------------------------------------------------------------------------


async def seed_the_last_full_week(session_factory: async_sessionmaker[AsyncSession], now: datetime) -> None:
    monday = last_full_week(now=now, tz=TEAM_ZONE).period.since
    assert monday is not None
    seed = Seed()
    lost = seed.loss(owner=DANA, lost_at=monday + timedelta(days=1), amount="42000")
    seed.reason(lost, "price", logged_at=monday + timedelta(days=2))
    seed.loss(owner=SAM, lost_at=monday + timedelta(days=3), amount="9000", state=LossState.AWAITING)
    seed.deal(owner=SAM, stage="closed_won", changed_at=monday + timedelta(days=4), amount="5000")
    await seed.save(session_factory)


async def test_the_digest_is_posted_then_its_chart_shared_under_it_once(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    await seed_the_last_full_week(session_factory, clock.now)
    settings = make_settings(
        database_url, fake_slack.url, digest_channel=DIGESTS, digest_schedule=schedule_at(clock.now)
    )
    async with serve(settings, fake_slack, session_factory, clock=clock):
        [digest] = await fake_slack.wait_for("chat.postMessage")
        await fake_slack.wait_for("files.completeUploadExternal")
        await asyncio.sleep(TWO_TICKS)

    week = last_full_week(now=clock.now, tz=TEAM_ZONE)
    assert digest["channel"] == DIGESTS and digest["text"].startswith(
        "Closed-lost digest, the week of Nov 23, 2026: 2 lost (51,000 USD), 1 won"
    )
    # users.info: the digest names the reps it lists, whose names these seeded rows lack.
    methods = [call.method for call in fake_slack.calls if call.method not in ("auth.test", "users.info")]
    assert methods == ["chat.postMessage", "files.getUploadURLExternal", "upload", "files.completeUploadExternal"]
    [chart] = fake_slack.shared_files(DIGESTS)
    assert chart.content is not None and png_size(chart.content)[0] == 640
    first_monday = week.monday - timedelta(weeks=11)
    assert chart.filename == f"closedlost-{first_monday}-{week.monday}.png"
    span = f"12 weeks, {first_monday:%b %-d}" + (
        "" if first_monday.year == week.monday.year else f", {first_monday.year}"
    )
    assert chart.title == f"Deals lost by reason, and win rate: {span} – {week.monday + timedelta(days=6):%b %-d, %Y}"
    assert chart.alt_txt is not None and chart.alt_txt.endswith(": 2 lost and 1 won in all.")
    [run] = await rows(session_factory, DigestRun)
    [message] = await rows(session_factory, Message)
    assert run.message_id == message.id and message.ts is not None


@pytest.mark.parametrize(
    ("method", "failure", "logged"),
    [
        (
            "files.getUploadURLExternal",
            Failure(200, error="missing_scope"),
            "Slack answered missing_scope (the app needs the files:write scope: see manifest.yml)",
        ),
        ("upload", Failure(403), "the upload failed: Failed to upload a file (status: 403"),
    ],
    ids=["no-files-write-scope", "upload-refused"],
)
async def test_when_the_upload_fails_the_digest_goes_out_alone_and_the_log_says_why(
    method: str,
    failure: Failure,
    logged: str,
    caplog: pytest.LogCaptureFixture,
    database_url: str,
    fake_slack: FakeSlack,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    caplog.set_level(logging.WARNING, logger="bot")
    fake_slack.fail(method, failure)
    clock = Clock()
    await seed_the_last_full_week(session_factory, clock.now)
    settings = make_settings(
        database_url, fake_slack.url, digest_channel=DIGESTS, digest_schedule=schedule_at(clock.now)
    )
    async with serve(settings, fake_slack, session_factory, clock=clock):
        await fake_slack.wait_for(method)
        await asyncio.sleep(TWO_TICKS)

    [digest] = posted_to(fake_slack, DIGESTS)
    assert digest["text"].startswith("Closed-lost digest, the week of Nov 23, 2026: 2 lost (51,000 USD), 1 won")
    assert fake_slack.shared_files(DIGESTS) == []
    assert len(fake_slack.calls_to(method)) == 1, "the upload was tried again"
    assert len(fake_slack.calls_to("chat.postMessage")) == 1, "the digest was posted again"
    [warning] = [record for record in caplog.records if record.name == "bot.services.digest_chart"]
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().startswith(f"the digest in {DIGESTS} goes without its chart: {logged}")
    [message] = await rows(session_factory, Message)
    assert message.ts is not None


async def test_no_chart_is_shared_when_no_deal_closed_in_the_twelve_weeks(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    settings = make_settings(
        database_url, fake_slack.url, digest_channel=DIGESTS, digest_schedule=schedule_at(clock.now)
    )
    async with serve(settings, fake_slack, session_factory, clock=clock):
        await fake_slack.wait_for("chat.postMessage")
        await asyncio.sleep(TWO_TICKS)

    assert fake_slack.calls_to("files.getUploadURLExternal") == []


# --- closedlost digest --dry-run --chart -----------------------------------------------------------


async def test_a_dry_run_writes_the_chart_to_the_file_named(
    tmp_path: Path, database_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed_two_weeks(session_factory)
    chart = tmp_path / "chart.png"

    result = await asyncio.to_thread(
        closedlost,
        tmp_path,
        "digest",
        "--dry-run",
        "--week",
        "2026-11-15",
        "--chart",
        str(chart),
        database_url=database_url,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == f"closedlost: wrote the chart of the 12 weeks, Aug 24 – Nov 15, 2026 to {chart}\n"
    _, _, blocks = result.stdout.partition("\n\n{\n")
    assert json.loads("{\n" + blocks)["text"].startswith("Closed-lost digest, the week of Nov 9, 2026: 5 lost (")
    png = chart.read_bytes()
    assert png_size(png)[0] == 640
    assert imread(io.BytesIO(png), format="png").shape[1] == 640


async def test_a_dry_run_of_twelve_empty_weeks_writes_no_chart_and_says_so(
    tmp_path: Path, database_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    chart = tmp_path / "chart.png"

    result = await asyncio.to_thread(
        closedlost,
        tmp_path,
        "digest",
        "--dry-run",
        "--week",
        "2026-11-15",
        "--chart",
        str(chart),
        database_url=database_url,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == "closedlost: no chart: no deal closed in the 12 weeks, Aug 24 – Nov 15, 2026\n"
    assert not chart.exists()


async def test_a_chart_that_cannot_be_written_is_one_line(
    tmp_path: Path, database_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed_two_weeks(session_factory)
    chart = tmp_path / "no such folder" / "chart.png"

    result = await asyncio.to_thread(
        closedlost,
        tmp_path,
        "digest",
        "--dry-run",
        "--week",
        "2026-11-15",
        "--chart",
        str(chart),
        database_url=database_url,
    )

    assert result.returncode == 1
    assert result.stderr == f"closedlost: cannot write the chart to {chart}: No such file or directory\n"


async def test_chart_without_dry_run_is_refused(tmp_path: Path) -> None:
    result = await asyncio.to_thread(
        closedlost, tmp_path, "digest", "--chart", str(tmp_path / "chart.png"), database_url="sqlite:///unused.db"
    )

    assert result.returncode == 2
    assert result.stderr.endswith(
        "closedlost digest: error: --chart needs --dry-run: a posted digest shares its chart in its channel\n"
    )
    assert not (tmp_path / "chart.png").exists() and not (tmp_path / "unused.db").exists()


def test_matplotlib_is_loaded_only_when_a_chart_is_drawn() -> None:
    """It costs some 40 MiB: a bot that has not drawn a chart does not carry it."""
    script = (
        "import sys, bot.__main__, bot.app, bot.services.delivery\n"
        "assert not any(name.startswith('matplotlib') for name in sys.modules), 'loaded at import'\n"
        "from tests.test_digest_chart import WIDE, twelve_weeks\n"
        "from bot.views.chart import draw_loss_chart\n"
        "draw_loss_chart(twelve_weeks(), WIDE)\n"
        "assert 'matplotlib.backends.backend_agg' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr
