"""Working time: expected instants are worked out by hand in the comments beside them.

2026 offsets used below: New York is EST (UTC-5) until Sun 8 Mar 02:00, when it jumps to 03:00 EDT
(UTC-4), and back to EST at Sun 1 Nov 02:00 EDT; Berlin is CET (UTC+1) until Sun 29 Mar 02:00, when
it jumps to 03:00 CEST (UTC+2), and back to CET at Sun 25 Oct 03:00 CEST; Tokyo is always UTC+9.
"""

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.working_time import (
    WorkingHours,
    add_working_time,
    is_working_time,
    next_working_moment,
    parse_working_days,
    parse_working_hours,
)

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")

WEEKDAYS = frozenset(range(5))
ALL_WEEK = frozenset(range(7))
OFFICE = WorkingHours(start=9 * 60, end=18 * 60, days=WEEKDAYS)  # 09:00-18:00 mon-fri
ALWAYS = WorkingHours(start=0, end=24 * 60, days=ALL_WEEK)  # 00:00-24:00 mon-sun


def utc(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


# --- parse_working_hours


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("09:00-18:00", (540, 1080)),
        ("00:00-24:00", (0, 1440)),
        (" 08:30-17:45 ", (510, 1065)),
        ("23:59-24:00", (1439, 1440)),
    ],
)
def test_parse_working_hours(text: str, expected: tuple[int, int]) -> None:
    assert parse_working_hours(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("9:00-18:00", "is not a span of working hours"),
        ("09:00 - 18:00", "is not a span of working hours"),
        ("09:00", "is not a span of working hours"),
        ("0900-1800", "is not a span of working hours"),
        ("", "is not a span of working hours"),
        ("18:00-09:00", "ends before it starts"),
        ("09:00-09:00", "ends before it starts"),
        ("24:00-24:00", "starts at 24:00"),
        ("09:60-18:00", "impossible time 09:60"),
        ("09:00-25:00", "impossible time 25:00"),
        ("09:00-24:30", "impossible time 24:30"),
    ],
)
def test_parse_working_hours_refuses(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as error:
        parse_working_hours(text)
    assert "expected HH:MM-HH:MM with the end after the start, like 09:00-18:00 or 00:00-24:00" in str(error.value)


# --- parse_working_days


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("mon-sun", {0, 1, 2, 3, 4, 5, 6}),
        ("fri-mon", {4, 5, 6, 0}),
        ("sun-sat", {6, 0, 1, 2, 3, 4, 5}),
        ("mon,wed,fri", {0, 2, 4}),
        ("MON, Wed ,fRi", {0, 2, 4}),
        ("sat", {5}),
        ("mon-mon", {0}),
        ("mon-wed,fri", {0, 1, 2, 4}),
        ("mon,mon", {0}),
    ],
)
def test_parse_working_days(text: str, expected: set[int]) -> None:
    assert parse_working_days(text) == frozenset(expected)


@pytest.mark.parametrize(
    ("text", "bad_part"),
    [
        ("monday-friday", "'monday-friday'"),
        ("mon,thurs", "'thurs'"),
        ("mon-fri-sun", "'mon-fri-sun'"),
        ("mon,,fri", "''"),
        ("", "''"),
        ("lun-ven", "'lun-ven'"),
        ("mon-", "'mon-'"),
    ],
)
def test_parse_working_days_names_the_bad_part(text: str, bad_part: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_working_days(text)
    assert str(error.value).startswith(f"{bad_part} is not a day or a range of days: expected day names")


# --- WorkingHours


def test_working_hours_without_days_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="at least one working day"):
        WorkingHours(start=540, end=1080, days=frozenset())


@pytest.mark.parametrize(("start", "end"), [(1080, 540), (540, 540), (-1, 540), (0, 1441)])
def test_working_hours_needs_start_before_end_within_a_day(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="0 <= start < end <= 1440"):
        WorkingHours(start=start, end=end, days=WEEKDAYS)


def test_working_hours_days_are_weekday_numbers() -> None:
    with pytest.raises(ValueError, match="weekday numbers"):
        WorkingHours(start=540, end=1080, days=frozenset({7}))


# --- add_working_time: ordinary weeks


def test_reminder_across_a_weekend() -> None:
    # Fri 16 Jan 17:00 EST: 1h left on Friday, the other 7h from Mon 19 Jan 09:00 -> Mon 16:00 EST = 21:00Z.
    start = datetime(2026, 1, 16, 17, 0, tzinfo=NEW_YORK)
    assert add_working_time(start, hours(8), NEW_YORK, OFFICE) == utc(2026, 1, 19, 21)


def test_reminder_across_the_end_of_a_working_day() -> None:
    # Tue 20 Jan 15:00 EST: 3h on Tuesday, 5h from Wed 09:00 -> Wed 14:00 EST = 19:00Z.
    start = datetime(2026, 1, 20, 15, 0, tzinfo=NEW_YORK)
    assert add_working_time(start, hours(8), NEW_YORK, OFFICE) == utc(2026, 1, 21, 19)


def test_the_result_is_in_utc_whatever_the_zone_of_start() -> None:
    result = add_working_time(datetime(2026, 1, 20, 15, 0, tzinfo=NEW_YORK), hours(8), NEW_YORK, OFFICE)
    assert result.tzinfo is UTC


def test_the_same_instant_in_three_time_zones() -> None:
    start = utc(2026, 1, 16, 14)  # a Friday
    # New York, 09:00 EST Fri: all 8h on Friday -> 17:00 EST = 22:00Z.
    assert add_working_time(start, hours(8), NEW_YORK, OFFICE) == utc(2026, 1, 16, 22)
    # Berlin, 15:00 CET Fri: 3h Friday, 5h Monday -> Mon 19 Jan 14:00 CET = 13:00Z.
    assert add_working_time(start, hours(8), BERLIN, OFFICE) == utc(2026, 1, 19, 13)
    # Tokyo, 23:00 JST Fri: nothing until Mon 09:00 -> Mon 19 Jan 17:00 JST = 08:00Z.
    assert add_working_time(start, hours(8), TOKYO, OFFICE) == utc(2026, 1, 19, 8)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        # Sat 17 Jan 10:00 EST -> counting starts Mon 19 Jan 09:00 -> 10:00 EST = 15:00Z.
        (datetime(2026, 1, 17, 10, 0, tzinfo=NEW_YORK), utc(2026, 1, 19, 15)),
        # Tue 20 Jan 07:00 EST -> counting starts 09:00 -> 10:00 EST = 15:00Z.
        (datetime(2026, 1, 20, 7, 0, tzinfo=NEW_YORK), utc(2026, 1, 20, 15)),
        # Tue 20 Jan 22:00 EST -> counting starts Wed 09:00 -> 10:00 EST = 15:00Z.
        (datetime(2026, 1, 20, 22, 0, tzinfo=NEW_YORK), utc(2026, 1, 21, 15)),
        # Tue 20 Jan 18:00 EST, the end of the window, is already outside it -> Wed 10:00 EST.
        (datetime(2026, 1, 20, 18, 0, tzinfo=NEW_YORK), utc(2026, 1, 21, 15)),
    ],
)
def test_a_start_outside_working_hours_waits_for_the_next_window(start: datetime, expected: datetime) -> None:
    assert add_working_time(start, hours(1), NEW_YORK, OFFICE) == expected


def test_a_duration_that_fills_the_day_ends_at_the_end_of_the_window() -> None:
    # Tue 20 Jan 09:00 EST + 9h -> 18:00 EST = 23:00Z the same day, not Wed 09:00.
    start = datetime(2026, 1, 20, 9, 0, tzinfo=NEW_YORK)
    assert add_working_time(start, hours(9), NEW_YORK, OFFICE) == utc(2026, 1, 20, 23)


def test_multi_week_duration() -> None:
    # 600h at 45h a week = 13 weeks (585h, ending Fri 3 Apr 18:00) + 15h: Mon 6 Apr 9h, Tue 7 Apr 6h
    # -> Tue 7 Apr 15:00 EDT = 19:00Z (New York went to EDT on the way; the windows stay 9h long).
    start = datetime(2026, 1, 5, 9, 0, tzinfo=NEW_YORK)
    assert add_working_time(start, hours(600), NEW_YORK, OFFICE) == utc(2026, 4, 7, 19)


def test_wrapping_working_days() -> None:
    # fri-mon 10:00-14:00 in Tokyo; Tue 20 Jan 12:00 JST + 10h: Fri 23 Jan 4h, Sat 4h, Sun 2h
    # -> Sun 25 Jan 12:00 JST = 03:00Z.
    weekend = WorkingHours(start=600, end=840, days=parse_working_days("fri-mon"))
    start = datetime(2026, 1, 20, 12, 0, tzinfo=TOKYO)
    assert add_working_time(start, hours(10), TOKYO, weekend) == utc(2026, 1, 25, 3)


# --- zero durations, next_working_moment, is_working_time


def test_zero_duration_is_the_next_working_moment() -> None:
    inside = datetime(2026, 1, 20, 11, 17, 3, tzinfo=NEW_YORK)
    assert add_working_time(inside, timedelta(0), NEW_YORK, OFFICE) == inside
    # Fri 16 Jan 18:00 EST is the end of Friday's window -> Mon 19 Jan 09:00 EST = 14:00Z.
    friday_evening = datetime(2026, 1, 16, 18, 0, tzinfo=NEW_YORK)
    assert add_working_time(friday_evening, timedelta(0), NEW_YORK, OFFICE) == utc(2026, 1, 19, 14)


def test_next_working_moment() -> None:
    inside = datetime(2026, 1, 20, 9, 0, tzinfo=NEW_YORK)
    assert next_working_moment(inside, NEW_YORK, OFFICE) == inside
    assert next_working_moment(inside, NEW_YORK, OFFICE).tzinfo is UTC
    # Sat 17 Jan 12:00 EST -> Mon 19 Jan 09:00 EST = 14:00Z.
    assert next_working_moment(datetime(2026, 1, 17, 12, 0, tzinfo=NEW_YORK), NEW_YORK, OFFICE) == utc(2026, 1, 19, 14)


@pytest.mark.parametrize(
    ("local_time", "expected"),
    [
        (datetime(2026, 1, 20, 8, 59, 59), False),
        (datetime(2026, 1, 20, 9, 0), True),
        (datetime(2026, 1, 20, 17, 59, 59), True),
        (datetime(2026, 1, 20, 18, 0), False),
        (datetime(2026, 1, 17, 12, 0), False),  # Saturday
    ],
)
def test_is_working_time(local_time: datetime, expected: bool) -> None:
    assert is_working_time(local_time.replace(tzinfo=NEW_YORK), NEW_YORK, OFFICE) is expected


def test_negative_duration_and_naive_start_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        add_working_time(utc(2026, 1, 20, 15), -hours(1), NEW_YORK, OFFICE)
    with pytest.raises(ValueError, match="aware"):
        add_working_time(datetime(2026, 1, 20, 15), hours(1), NEW_YORK, OFFICE)


# --- daylight saving


def test_us_spring_forward_over_a_weekend_keeps_nine_hour_days() -> None:
    # Fri 6 Mar 17:00 EST (22:00Z): 1h Friday, 7h from Mon 9 Mar 09:00 EDT -> 16:00 EDT = 20:00Z.
    start = datetime(2026, 3, 6, 17, 0, tzinfo=NEW_YORK)
    assert add_working_time(start, hours(8), NEW_YORK, OFFICE) == utc(2026, 3, 9, 20)


def test_europe_spring_forward_over_a_weekend_keeps_nine_hour_days() -> None:
    # Fri 27 Mar 17:00 CET (16:00Z): 1h Friday, 7h from Mon 30 Mar 09:00 CEST -> 16:00 CEST = 14:00Z.
    start = datetime(2026, 3, 27, 17, 0, tzinfo=BERLIN)
    assert add_working_time(start, hours(8), BERLIN, OFFICE) == utc(2026, 3, 30, 14)


def test_us_spring_forward_day_is_23_real_hours() -> None:
    sundays = WorkingHours(start=0, end=1440, days=frozenset({6}))
    start = datetime(2026, 3, 7, 10, 0, tzinfo=NEW_YORK)  # a Saturday: counting starts Sunday
    # Sun 8 Mar runs from 00:00 EST (05:00Z) to Mon 00:00 EDT (04:00Z): 23h.
    assert add_working_time(start, hours(23), NEW_YORK, sundays) == utc(2026, 3, 9, 4)
    # One more hour is the first hour of Sun 15 Mar: 00:00 EDT (04:00Z) -> 05:00Z.
    assert add_working_time(start, hours(24), NEW_YORK, sundays) == utc(2026, 3, 15, 5)


def test_us_fall_back_day_is_25_real_hours() -> None:
    sundays = WorkingHours(start=0, end=1440, days=frozenset({6}))
    start = datetime(2026, 10, 31, 12, 0, tzinfo=NEW_YORK)  # a Saturday
    # Sun 1 Nov runs from 00:00 EDT (04:00Z) to Mon 00:00 EST (05:00Z): 25h.
    assert add_working_time(start, hours(25), NEW_YORK, sundays) == utc(2026, 11, 2, 5)
    assert add_working_time(start, hours(24), NEW_YORK, sundays) == utc(2026, 11, 2, 4)


def test_europe_fall_back_inside_a_window() -> None:
    early = WorkingHours(start=0, end=6 * 60, days=ALL_WEEK)
    start = datetime(2026, 10, 25, 0, 0, tzinfo=BERLIN)  # 00:00 CEST = Sat 24 Oct 22:00Z
    # Sun 25 Oct 00:00 CEST (22:00Z) to 06:00 CET (05:00Z) is 7h of real time.
    assert add_working_time(start, hours(7), BERLIN, early) == utc(2026, 10, 25, 5)
    # The 8th hour is the first of Mon 26 Oct: 00:00 CET (23:00Z Sun) -> 00:00Z.
    assert add_working_time(start, hours(8), BERLIN, early) == utc(2026, 10, 26, 0)


def test_europe_spring_forward_inside_a_window() -> None:
    early = WorkingHours(start=0, end=6 * 60, days=ALL_WEEK)
    start = datetime(2026, 3, 29, 0, 0, tzinfo=BERLIN)  # 00:00 CET = Sat 28 Mar 23:00Z
    # Sun 29 Mar 00:00 CET (23:00Z) to 06:00 CEST (04:00Z) is 5h of real time.
    assert add_working_time(start, hours(5), BERLIN, early) == utc(2026, 3, 29, 4)
    # The 6th hour is the first of Mon 30 Mar: 00:00 CEST (22:00Z Sun) -> 23:00Z.
    assert add_working_time(start, hours(6), BERLIN, early) == utc(2026, 3, 29, 23)


def test_a_start_given_in_the_spring_forward_gap() -> None:
    # 02:30 on 8 Mar does not exist in New York; fold=0 reads it as 02:30 EST = 07:30Z (03:30 EDT).
    in_gap = datetime(2026, 3, 8, 2, 30, tzinfo=NEW_YORK)
    assert add_working_time(in_gap, hours(1), NEW_YORK, ALWAYS) == utc(2026, 3, 8, 8, 30)
    # Office hours: Sunday, so counting starts Mon 9 Mar 09:00 EDT = 13:00Z.
    assert add_working_time(in_gap, hours(1), NEW_YORK, OFFICE) == utc(2026, 3, 9, 14)


def test_a_start_given_in_the_fall_back_overlap() -> None:
    # 01:30 on 1 Nov happens twice in New York: fold=0 is 01:30 EDT (05:30Z), fold=1 is 01:30 EST (06:30Z).
    first = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK)
    second = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NEW_YORK)
    assert add_working_time(first, hours(1), NEW_YORK, ALWAYS) == utc(2026, 11, 1, 6, 30)
    assert add_working_time(second, hours(1), NEW_YORK, ALWAYS) == utc(2026, 11, 1, 7, 30)


def test_a_window_boundary_in_the_spring_forward_gap_moves_later_by_the_gap() -> None:
    night = WorkingHours(start=2 * 60, end=10 * 60, days=ALL_WEEK)  # 02:00-10:00
    before = datetime(2026, 3, 8, 1, 0, tzinfo=NEW_YORK)  # 01:00 EST = 06:00Z
    # 02:00 on 8 Mar is read as 02:00 EST = 07:00Z (the instant the clocks jump to 03:00 EDT);
    # the window ends at 10:00 EDT = 14:00Z: 7h.
    assert next_working_moment(before, NEW_YORK, night) == utc(2026, 3, 8, 7)
    assert add_working_time(before, hours(7), NEW_YORK, night) == utc(2026, 3, 8, 14)
    # The 8th hour is the first of Mon 9 Mar: 02:00 EDT = 06:00Z -> 07:00Z.
    assert add_working_time(before, hours(8), NEW_YORK, night) == utc(2026, 3, 9, 7)


def test_a_window_made_empty_by_the_spring_forward_gap_is_skipped() -> None:
    short = WorkingHours(start=2 * 60 + 30, end=3 * 60, days=ALL_WEEK)  # 02:30-03:00
    # On 8 Mar 02:30 is read as 03:30 EDT (07:30Z), after the end 03:00 EDT (07:00Z): no window that day.
    # The next one starts Mon 9 Mar 02:30 EDT = 06:30Z.
    start = datetime(2026, 3, 8, 0, 0, tzinfo=NEW_YORK)
    assert next_working_moment(start, NEW_YORK, short) == utc(2026, 3, 9, 6, 30)
    assert add_working_time(start, timedelta(minutes=30), NEW_YORK, short) == utc(2026, 3, 9, 7)


def test_a_window_boundary_in_the_fall_back_overlap_is_its_first_occurrence() -> None:
    late_night = WorkingHours(start=90, end=3 * 60, days=ALL_WEEK)  # 01:30-03:00
    # On 1 Nov the window runs from 01:30 EDT (05:30Z) to 03:00 EST (08:00Z): 2.5h.
    start = datetime(2026, 11, 1, 0, 0, tzinfo=NEW_YORK)
    assert next_working_moment(start, NEW_YORK, late_night) == utc(2026, 11, 1, 5, 30)
    assert add_working_time(start, hours(2.5), NEW_YORK, late_night) == utc(2026, 11, 1, 8)
    # The second 01:30 (EST, 06:30Z) is inside that window.
    second = datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NEW_YORK)
    assert is_working_time(second, NEW_YORK, late_night)
    # 1.5h to the window's end, then 0.5h from Mon 2 Nov 01:30 EST (06:30Z) -> 07:00Z.
    assert add_working_time(second, hours(2), NEW_YORK, late_night) == utc(2026, 11, 2, 7)


# --- 00:00-24:00 on every day is real time


@pytest.mark.parametrize("tz", [NEW_YORK, BERLIN, TOKYO, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("UTC")])
@pytest.mark.parametrize(
    "start",
    [
        utc(2026, 3, 8, 6, 59, 59),  # one second before New York springs forward
        utc(2026, 11, 1, 5, 30),  # inside New York's repeated hour
        utc(2026, 3, 29, 0, 30),
        utc(2026, 10, 25, 0, 59),
        utc(2026, 4, 4, 14, 45),  # around Lord Howe's half-hour fall-back
        datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC),
    ],
)
@pytest.mark.parametrize(
    "duration", [timedelta(0), timedelta(seconds=1), timedelta(seconds=90), hours(8), hours(16), hours(24 * 30 + 0.5)]
)
def test_all_day_every_day_is_real_time(start: datetime, duration: timedelta, tz: ZoneInfo) -> None:
    assert add_working_time(start, duration, tz, ALWAYS) == start + duration


# --- properties over many random cases


RANDOM_ZONES = [NEW_YORK, BERLIN, TOKYO, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("America/Santiago")]
RANDOM_HOURS = [
    OFFICE,
    ALWAYS,
    WorkingHours(start=0, end=1440, days=parse_working_days("fri-mon")),
    WorkingHours(start=90, end=180, days=ALL_WEEK),  # 01:30-03:00 meets every DST change above
    WorkingHours(start=22 * 60, end=1440, days=parse_working_days("mon,wed,sun")),
    WorkingHours(start=0, end=30, days=parse_working_days("sun")),
]


def _random_case(rng: random.Random) -> tuple[datetime, ZoneInfo, WorkingHours]:
    start = utc(2026, 1, 1, 0) + timedelta(seconds=rng.randrange(366 * 24 * 3600))
    return start, rng.choice(RANDOM_ZONES), rng.choice(RANDOM_HOURS)


def test_results_are_in_working_time_or_at_the_end_of_a_window() -> None:
    rng = random.Random(20260308)
    for _ in range(1000):
        start, tz, working = _random_case(rng)
        duration = timedelta(seconds=rng.choice([0, rng.randrange(1, 3600), rng.randrange(1, 400 * 3600)]))
        result = add_working_time(start, duration, tz, working)
        case = f"{start.isoformat()} + {duration} in {tz.key} with {working}"
        assert result >= start, case
        ends_a_window = duration > timedelta(0) and is_working_time(result - timedelta(microseconds=1), tz, working)
        assert is_working_time(result, tz, working) or ends_a_window, case


def test_adding_in_two_steps_is_adding_the_sum() -> None:
    rng = random.Random(20261101)
    for _ in range(1000):
        start, tz, working = _random_case(rng)
        first = timedelta(seconds=rng.randrange(1, 100 * 3600))
        second = timedelta(seconds=rng.randrange(1, 100 * 3600))
        in_two_steps = add_working_time(add_working_time(start, first, tz, working), second, tz, working)
        case = f"{start.isoformat()} + {first} + {second} in {tz.key} with {working}"
        assert in_two_steps == add_working_time(start, first + second, tz, working), case


def _count_office_minutes(start: datetime, minutes: int, tz: ZoneInfo) -> datetime:
    """An independent count: step a minute at a time, asking the local clock whether it is 09:00-18:00 mon-fri."""

    def is_office(moment: datetime) -> bool:
        local = moment.astimezone(tz)
        return local.weekday() < 5 and 9 <= local.hour < 18

    moment = start
    while not is_office(moment):
        moment += timedelta(minutes=1)
    for _ in range(minutes):
        while not is_office(moment):
            moment += timedelta(minutes=1)
        moment += timedelta(minutes=1)
    return moment


def test_office_hours_agree_with_counting_minute_by_minute() -> None:
    # No DST change falls inside 09:00-18:00 in these zones, so the wall-clock count must agree.
    rng = random.Random(20260329)
    for _ in range(60):
        start = utc(2026, 1, 1, 0) + timedelta(minutes=rng.randrange(366 * 24 * 60))
        tz = rng.choice([NEW_YORK, BERLIN, TOKYO])
        minutes = rng.randrange(0, 20 * 60)
        expected = _count_office_minutes(start, minutes, tz)
        case = f"{start.isoformat()} + {minutes} min in {tz.key}"
        assert add_working_time(start, timedelta(minutes=minutes), tz, OFFICE) == expected, case
