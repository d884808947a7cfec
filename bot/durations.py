"""Durations as settings write them (README.md, "Settings"): an integer with an `s`, `m` or `h` suffix.

`REMINDER_AFTER` is a comma list of them (`8h,16h`); `ESCALATE_AFTER`, `BULK_WINDOW` and
`SCHEDULER_TICK` are single ones. Whether zero makes sense is the caller's decision.

No duration is longer than `LONGEST` (10,000 hours, over a year of calendar time and four of working
time): a longer one is a typo rather than a policy, and each is arithmetic the bot does per loss.
"""

import re
from datetime import timedelta

_DURATION = re.compile(r"([0-9]+)([smh])")  # [0-9], not \d: \d also matches non-ASCII digits
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
_EXPECTED = "expected a number with s, m or h, like 90s, 2m or 8h"
LONGEST = timedelta(hours=10_000)
_LONGEST_SECONDS = int(LONGEST.total_seconds())


def parse_duration(text: str) -> timedelta:
    """`"90s"`, `"2m"`, `"8h"` (spaces around allowed, zero allowed) up to `LONGEST`; anything else
    is a ValueError."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text.strip()!r} is not a duration: {_EXPECTED}")
    amount, unit = match.groups()
    digits = amount.lstrip("0") or "0"
    # Compare lengths first: int() refuses numbers of over 4,300 digits, and timedelta overflows far sooner.
    if len(digits) > len(str(_LONGEST_SECONDS)) or int(digits) * _UNIT_SECONDS[unit] > _LONGEST_SECONDS:
        raise ValueError(
            f"{text.strip()!r} is longer than {_LONGEST_SECONDS // 3600}h, the longest duration a setting takes"
        )
    return timedelta(seconds=int(digits) * _UNIT_SECONDS[unit])


def parse_durations(text: str) -> tuple[timedelta, ...]:
    """A comma list of durations in strictly increasing order, like `"8h,16h"`; `""` means none.

    Offsets are counted from the same moment (the prompt), so a list that does not increase
    is a mistake in the setting rather than something to sort silently.
    """
    if not text.strip():
        return ()
    parts = [part.strip() for part in text.split(",")]
    durations = tuple(parse_duration(part) for part in parts)
    for index in range(1, len(durations)):
        if durations[index] <= durations[index - 1]:
            raise ValueError(
                f"{text.strip()!r} is not an increasing list of durations: {parts[index]} does not come after "
                f"{parts[index - 1]}; expected something like 8h,16h"
            )
    return durations
