"""Working time in a rep's own time zone: when reminder and escalation offsets fall due (README.md, "Reminders").

Working time is the wall-clock window `[start, end)` of `WorkingHours` on each of its days, in the
rep's time zone. Every window is converted to UTC day by day with zoneinfo, so a day's window is the
real time between its two wall-clock boundaries: 9 hours for 09:00-18:00 on most days, 23 or 25
for 00:00-24:00 on the day the clocks change.

A boundary that names a wall-clock time that does not exist or exists twice is read the way Python
reads `fold=0` (PEP 495), which is also what JavaScript's Temporal calls "compatible":

- in a spring-forward gap it is moved later by the length of the gap (02:30 on the day New York goes
  from 02:00 to 03:00 means 03:30 EDT, the instant 02:30 EST would have been);
- in a fall-back overlap it is the first occurrence (01:30 on the day New York goes from 02:00
  back to 01:00 means 01:30 EDT).

A window whose end comes at or before its start after this reading is empty that day.
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MINUTES_PER_DAY = 24 * 60
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # indexed by `date.weekday()`

_HOURS = re.compile(r"([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})")
_HOURS_EXPECTED = "expected HH:MM-HH:MM with the end after the start, like 09:00-18:00 or 00:00-24:00"
_DAYS_EXPECTED = (
    "expected day names (mon, tue, wed, thu, fri, sat, sun), a range like mon-fri or fri-mon, "
    "or a comma list like mon,wed,fri"
)


@dataclass(frozen=True)
class WorkingHours:
    """The daily window `[start, end)` in minutes after local midnight, on `days` (0 = Monday)."""

    start: int
    end: int
    days: frozenset[int]

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= MINUTES_PER_DAY:
            raise ValueError(f"working hours need 0 <= start < end <= 1440 minutes, got {self.start}-{self.end}")
        if not self.days:
            raise ValueError("working hours need at least one working day")
        if not self.days <= frozenset(range(7)):
            raise ValueError(f"working days are weekday numbers 0 (Monday) to 6 (Sunday), got {sorted(self.days)}")

    @property
    def per_week(self) -> timedelta:
        """The working time in a week by the wall clock; a week in which the clocks change can have an
        hour more or less."""
        return timedelta(minutes=(self.end - self.start) * len(self.days))


def parse_working_hours(text: str) -> tuple[int, int]:
    """`"09:00-18:00"` → `(540, 1080)`: start and end in minutes after midnight; `24:00` only as an end."""
    match = _HOURS.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text.strip()!r} is not a span of working hours: {_HOURS_EXPECTED}")
    start_hour, start_minute, end_hour, end_minute = (int(group) for group in match.groups())
    start = _minutes(start_hour, start_minute, text)
    end = _minutes(end_hour, end_minute, text)
    if start == MINUTES_PER_DAY:
        raise ValueError(f"{text.strip()!r} starts at 24:00, which is the end of the day: {_HOURS_EXPECTED}")
    if end <= start:
        raise ValueError(f"{text.strip()!r} ends before it starts: {_HOURS_EXPECTED}")
    return start, end


def _minutes(hour: int, minute: int, text: str) -> int:
    if minute > 59 or hour > 24 or (hour == 24 and minute != 0):
        raise ValueError(f"{text.strip()!r} has an impossible time {hour:02}:{minute:02}: {_HOURS_EXPECTED}")
    return hour * 60 + minute


def parse_working_days(text: str) -> frozenset[int]:
    """Weekday numbers (0 = Monday) from `"mon-fri"`, `"fri-mon"` (wraps over the weekend) or `"mon,wed,fri"`.

    Day names are the three-letter English ones, in any case. Each comma-separated part may be a day
    or a range, so `"mon-wed,fri"` also works; `"mon-mon"` is Monday alone, not the whole week.
    """
    days: set[int] = set()
    for part in text.split(","):
        bounds = [_day_number(name, part) for name in part.split("-")]
        if len(bounds) == 1:
            days.add(bounds[0])
        elif len(bounds) == 2:
            first, last = bounds
            days.update((first + offset) % 7 for offset in range((last - first) % 7 + 1))
        else:
            raise ValueError(f"{part.strip()!r} is not a day or a range of days: {_DAYS_EXPECTED}")
    return frozenset(days)


def _day_number(name: str, part: str) -> int:
    try:
        return DAY_NAMES.index(name.strip().lower())
    except ValueError:
        raise ValueError(f"{part.strip()!r} is not a day or a range of days: {_DAYS_EXPECTED}") from None


def add_working_time(start: datetime, duration: timedelta, tz: ZoneInfo, hours: WorkingHours) -> datetime:
    """The UTC instant at which `duration` of working time has passed, counting from `start`.

    `start` is aware, in any zone. Counting begins at `start` if it is inside working time, else at
    the next window; a zero duration therefore returns the next working moment. A result that uses
    up a window exactly is that window's end, not the next window's start. With 00:00-24:00 on all
    seven days the result is exactly `start + duration`.
    """
    if start.tzinfo is None:
        raise ValueError(f"start must be an aware datetime, got {start.isoformat()}")
    if duration < timedelta(0):
        raise ValueError(f"duration must not be negative, got {duration}")
    cursor = start.astimezone(UTC)
    remaining = duration
    # A window ends by the next local midnight unless a spring-forward gap moves its end later, so the
    # day before is the earliest whose window can still be open at `start`.
    day = cursor.astimezone(tz).date() - timedelta(days=1)
    while True:
        window = _window(day, tz, hours)
        if window is not None:
            window_start, window_end = window
            counted_from = max(window_start, cursor)
            if counted_from < window_end:
                if remaining <= window_end - counted_from:
                    return counted_from + remaining
                remaining -= window_end - counted_from
                cursor = window_end
        day += timedelta(days=1)


def next_working_moment(instant: datetime, tz: ZoneInfo, hours: WorkingHours) -> datetime:
    """`instant` in UTC if it is inside working time, else the start of the next window."""
    return add_working_time(instant, timedelta(0), tz, hours)


def is_working_time(instant: datetime, tz: ZoneInfo, hours: WorkingHours) -> bool:
    """Whether `instant` (aware) falls inside a window; a window's end is outside it."""
    # In UTC: PEP 495 makes a repeated wall-clock time with fold=1 unequal to every instant in another zone.
    return next_working_moment(instant, tz, hours) == instant.astimezone(UTC)


def _window(day: date, tz: ZoneInfo, hours: WorkingHours) -> tuple[datetime, datetime] | None:
    """The UTC bounds of `day`'s window in `tz`, or None when `day` is not worked or the window is empty."""
    if day.weekday() not in hours.days:
        return None
    midnight = datetime.combine(day, time())
    # Naive arithmetic is wall-clock arithmetic; `end` 1440 becomes the next day's 00:00.
    window_start = _wall_to_utc(midnight + timedelta(minutes=hours.start), tz)
    window_end = _wall_to_utc(midnight + timedelta(minutes=hours.end), tz)
    if window_end <= window_start:
        return None
    return window_start, window_end


def _wall_to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    # fold=0 is the reading the module docstring documents for missing and repeated wall-clock times.
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
