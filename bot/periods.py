"""The periods figures are given for, as UTC bounds of days in the team's time zone."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from bot.views import text


class PeriodName(StrEnum):
    """What `/closedlost stats` takes (README.md, "`/closedlost` and the Home tab")."""

    DAYS_7 = "7d"
    DAYS_30 = "30d"
    DAYS_90 = "90d"
    QUARTER = "quarter"
    YEAR = "year"
    ALL = "all"


@dataclass(frozen=True)
class Period:
    label: str
    since: datetime | None
    """Inclusive; None means from the beginning."""
    until: datetime
    """Exclusive."""


def period_named(name: PeriodName, *, now: datetime, tz: ZoneInfo) -> Period:
    """Rolling periods end now; a quarter or a year is the calendar one so far, in `tz`."""
    today = now.astimezone(tz).date()
    match name:
        case PeriodName.DAYS_7 | PeriodName.DAYS_30 | PeriodName.DAYS_90:
            days = int(name.removesuffix("d"))
            return Period(f"the last {days} days", now - timedelta(days=days), now)
        case PeriodName.QUARTER:
            first = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
            return Period(f"this quarter (since {text.day(first)})", start_of_day(first, tz), now)
        case PeriodName.YEAR:
            first = date(today.year, 1, 1)
            return Period(f"this year (since {text.day(first)})", start_of_day(first, tz), now)
        case PeriodName.ALL:
            return Period("all time", None, now)


def start_of_day(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant `day` begins in `tz` (daylight-saving changes included)."""
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


@dataclass(frozen=True)
class Week:
    """Monday to Sunday in the team's time zone (README.md, "The weekly digest")."""

    monday: date
    period: Period
    so_far: bool
    """The current week, not over yet."""

    def before(self, tz: ZoneInfo) -> "Week":
        return week_of(self.monday - timedelta(days=7), tz=tz, today=self.monday)


def week_of(day: date, *, tz: ZoneInfo, today: date) -> Week:
    """The week that holds `day`; `today` (in `tz`) tells whether it is over."""
    monday = day - timedelta(days=day.weekday())
    next_monday = monday + timedelta(days=7)
    label = f"the week of {text.day(monday)}"
    so_far = today < next_monday
    return Week(monday, Period(label, start_of_day(monday, tz), start_of_day(next_monday, tz)), so_far)


def last_full_week(*, now: datetime, tz: ZoneInfo) -> Week:
    today = now.astimezone(tz).date()
    return week_of(today - timedelta(days=7), tz=tz, today=today)
