"""Unit tests of the periods and of the `/closedlost` and App Home builders at their limits; no
database, no Slack."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from bot.command import Usage
from bot.periods import PeriodName, period_named
from bot.reasons import Catalogue, Reason
from bot.views.commands import build_pending_reply, build_reasons_reply, build_usage_reply
from bot.views.data import AwaitingDeal, ClosedStats, Home, ReasonFigures, UpcomingRevisit
from bot.views.home import build_home_view

PARIS = ZoneInfo("Europe/Paris")
MAX_MESSAGE_BLOCKS = 50
MAX_HOME_BLOCKS = 100
MAX_SECTION_TEXT = 3000


def test_rolling_periods_end_now() -> None:
    now = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    period = period_named(PeriodName.DAYS_7, now=now, tz=PARIS)
    assert (period.label, period.since, period.until) == ("the last 7 days", now - timedelta(days=7), now)
    assert period_named(PeriodName.ALL, now=now, tz=PARIS).since is None


def test_quarter_and_year_start_at_midnight_in_the_team_zone() -> None:
    # 23:30 UTC on Dec 31 is already Jan 1 in Paris: a new year and a new quarter there.
    now = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    quarter = period_named(PeriodName.QUARTER, now=now, tz=PARIS)
    assert quarter.label == "this quarter (since Jan 1, 2027)"
    assert quarter.since == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    year = period_named(PeriodName.YEAR, now=now, tz=PARIS)
    assert (year.label, year.since) == ("this year (since Jan 1, 2027)", datetime(2026, 12, 31, 23, 0, tzinfo=UTC))
    # In summer Paris is UTC+2.
    summer = period_named(PeriodName.QUARTER, now=datetime(2026, 8, 10, tzinfo=UTC), tz=PARIS)
    assert summer.since == datetime(2026, 6, 30, 22, 0, tzinfo=UTC)


def awaiting(count: int) -> list[AwaitingDeal]:
    lost_at = datetime(2026, 11, 1, tzinfo=UTC)
    return [AwaitingDeal(n, "<!channel> " + "x" * 500, "y" * 500, Decimal(n), "USD", lost_at) for n in range(count)]


def test_pending_shows_twenty_and_says_how_many_more() -> None:
    reply = build_pending_reply(losses=awaiting(20), total=135)
    blocks = [block.to_dict() for block in reply.blocks]
    assert len(blocks) <= MAX_MESSAGE_BLOCKS
    assert blocks[-1]["elements"][0]["text"] == "and 115 more: log these first, or see the DMs."
    assert "&lt;!channel&gt;" in blocks[1]["text"]["text"] and "<!channel>" not in blocks[1]["text"]["text"]


def test_a_catalogue_of_100_long_reasons_fits_in_the_reasons_reply() -> None:
    catalogue = Catalogue(Reason(f"code_{n:03d}_" + "c" * 50, "L" * 75, revisit_after_days=3650) for n in range(100))
    blocks = [block.to_dict() for block in build_reasons_reply(catalogue, show_codes=True).blocks]
    assert len(blocks) <= MAX_MESSAGE_BLOCKS
    assert all(len(block["text"]["text"]) <= MAX_SECTION_TEXT for block in blocks[1:])
    assert sum(block["text"]["text"].count(" · `code_") for block in blocks[1:]) == 100


def test_the_usage_escapes_what_was_typed() -> None:
    reply = build_usage_reply(Usage("There is no `<@U1>` command."))
    assert reply.blocks[0].to_dict()["text"]["text"] == ":warning: There is no `&lt;@U1&gt;` command."


def test_a_full_home_stays_within_the_home_tab_limits() -> None:
    catalogue = Catalogue(Reason(f"r{n:03d}", "L" * 75) for n in range(100))
    currencies = {f"C{n:02d}": Decimal("123456789.12") for n in range(30)}
    stats = ClosedStats(
        lost=100_000,
        lost_value=currencies,
        logged=90_000,
        reasons=[ReasonFigures(f"r{n:03d}", 900, currencies) for n in range(100)],
        no_decision=0,
        won=5,
        won_value=currencies,
    )
    revisit_on = datetime(2027, 1, 1, tzinfo=UTC).date()
    revisits = [UpcomingRevisit(n, revisit_on, "z" * 500, Decimal(1), "USD", "U1", "r000") for n in range(25)]
    period = period_named(PeriodName.DAYS_90, now=datetime.now(UTC), tz=PARIS)
    home = Home(awaiting(20), 500, revisits, 900, period, stats)
    view = build_home_view(home, catalogue).to_dict()
    assert len(view["blocks"]) <= MAX_HOME_BLOCKS
    sections = [block["text"]["text"] for block in view["blocks"] if block["type"] == "section"]
    assert all(len(text) <= MAX_SECTION_TEXT for text in sections)
    shown = sections[-1].count("\n• ")
    assert 0 < shown < 15 and sections[-1].endswith(f"\nand {100 - shown} more")
