"""Durations as settings write them (DESIGN.md §7): an integer with an `s`, `m` or `h` suffix.

`REMINDER_AFTER` is a comma list of them (`8h,16h`); `ESCALATE_AFTER`, `BULK_WINDOW` and
`SCHEDULER_TICK` are single ones. Whether zero makes sense is the caller's decision.
"""

import re
from datetime import timedelta

_DURATION = re.compile(r"([0-9]+)([smh])")  # [0-9], not \d: \d also matches non-ASCII digits
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
_EXPECTED = "expected a number with s, m or h, like 90s, 2m or 8h"


def parse_duration(text: str) -> timedelta:
    """`"90s"`, `"2m"`, `"8h"` (spaces around allowed, zero allowed); anything else is a ValueError."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text.strip()!r} is not a duration: {_EXPECTED}")
    amount, unit = match.groups()
    return timedelta(seconds=int(amount) * _UNIT_SECONDS[unit])


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
