"""`DIGEST_SCHEDULE`: a day of the week and a wall-clock time in the team's time zone (README.md, "The weekly digest").

The time is read as `bot.working_time` reads a boundary: a time that does not exist on the day the
clocks go forward is moved later by the gap, and a time that exists twice is its first occurrence.
So `mon 09:00` is 09:00 local time every Monday, whatever the UTC offset that week.
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.working_time import DAY_NAMES

_SCHEDULE = re.compile(r"([a-z]{3})\s+([0-9]{2}):([0-9]{2})")
_EXPECTED = "expected a day name and a time HH:MM, like mon 09:00"


@dataclass(frozen=True)
class WeeklyTime:
    weekday: int
    """0 = Monday."""
    at: time

    def on(self, day: date, tz: ZoneInfo) -> datetime:
        """The UTC instant this time names on `day` in `tz`."""
        return datetime.combine(day, self.at, tzinfo=tz).astimezone(UTC)

    def latest(self, now: datetime, tz: ZoneInfo) -> datetime:
        """The last scheduled instant at or before `now`."""
        today = now.astimezone(tz).date()
        day = today - timedelta(days=(today.weekday() - self.weekday) % 7)
        moment = self.on(day, tz)
        return moment if moment <= now else self.on(day - timedelta(days=7), tz)


def parse_weekly_time(text: str) -> WeeklyTime:
    """`"mon 09:00"` → Monday at 09:00. Day names are the three-letter English ones, in any case."""
    match = _SCHEDULE.fullmatch(text.strip().lower())
    if match is None or match.group(1) not in DAY_NAMES:
        raise ValueError(f"{text.strip()!r} is not a weekly time: {_EXPECTED}")
    hour, minute = int(match.group(2)), int(match.group(3))
    if hour > 23 or minute > 59:
        raise ValueError(f"{text.strip()!r} has an impossible time {hour:02}:{minute:02}: {_EXPECTED}")
    return WeeklyTime(DAY_NAMES.index(match.group(1)), time(hour, minute))
