from datetime import timedelta

import pytest

from bot.durations import parse_duration, parse_durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("2m", timedelta(minutes=2)),
        ("8h", timedelta(hours=8)),
        ("0s", timedelta(0)),
        ("0h", timedelta(0)),
        ("  24h ", timedelta(hours=24)),
        ("600h", timedelta(hours=600)),
        ("007m", timedelta(minutes=7)),
    ],
)
def test_parse_duration_accepts_a_number_with_a_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["8x", "8", "h", "", "   ", "8 h", "-8h", "+8h", "1.5h", "8H", "8hh", "1d", "8h30m", "٨h", "8h,16h"],
)
def test_parse_duration_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration: expected a number with s, m or h, like 90s, 2m or 8h"):
        parse_duration(text)


def test_parse_duration_error_quotes_the_value() -> None:
    with pytest.raises(ValueError) as error:
        parse_duration(" 8x ")
    assert str(error.value) == "'8x' is not a duration: expected a number with s, m or h, like 90s, 2m or 8h"


def test_parse_durations_reads_a_comma_list() -> None:
    assert parse_durations("8h,16h") == (timedelta(hours=8), timedelta(hours=16))
    assert parse_durations(" 90s , 2m,1h ") == (timedelta(seconds=90), timedelta(minutes=2), timedelta(hours=1))
    assert parse_durations("24h") == (timedelta(hours=24),)


@pytest.mark.parametrize("text", ["", "   "])
def test_parse_durations_empty_means_none(text: str) -> None:
    assert parse_durations(text) == ()


@pytest.mark.parametrize("text", ["16h,8h", "8h,8h", "60m,1h", "2m,90s"])
def test_parse_durations_refuses_a_list_that_does_not_increase(text: str) -> None:
    with pytest.raises(ValueError, match="is not an increasing list of durations"):
        parse_durations(text)


@pytest.mark.parametrize("text", ["8h,", ",8h", "8h,,16h", "8h;16h", "8h 16h", "8h,16x"])
def test_parse_durations_refuses_a_bad_part(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_durations(text)


def test_parse_durations_error_names_the_offending_pair() -> None:
    with pytest.raises(ValueError) as error:
        parse_durations("8h, 60m,1h")
    assert str(error.value) == (
        "'8h, 60m,1h' is not an increasing list of durations: 60m does not come after 8h; "
        "expected something like 8h,16h"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10000h", timedelta(hours=10_000)),
        ("600000m", timedelta(hours=10_000)),
        ("000000000000000000001h", timedelta(hours=1)),
    ],
)
def test_parse_duration_goes_up_to_10000h(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["10001h", "600001m", "36000001s", "99999999999999999999h", "1000000h", "9" * 5000 + "h"]
)
def test_parse_duration_refuses_anything_longer_than_10000h(text: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_duration(text)
    assert str(error.value) == f"{text!r} is longer than 10000h, the longest duration a setting takes"


def test_parse_durations_refuses_a_part_longer_than_10000h() -> None:
    with pytest.raises(ValueError, match="'10001h' is longer than 10000h"):
        parse_durations("8h,10001h")
