"""Unit tests of the revisit nudge's pure parts: the DM in each state of a revisit, and when a nudge
is due. Models are built in memory; nothing touches a database or Slack."""

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.services.revisits import first_moment, nudge_moment
from bot.validation import MAX_EXPLANATION_LENGTH
from bot.views.data import NudgeStanding, NudgeState
from bot.views.revisit import build_revisit_nudge, lost_ago
from bot.working_time import WorkingHours
from storage.models import LossState
from tests.test_views import (
    CATALOGUE,
    ESCAPED_INJECTION,
    INJECTION,
    MAX_MESSAGE_BLOCKS,
    NOW,
    check_limits,
    make_deal,
    make_entry,
    make_item,
    mrkdwn_texts,
)

WEEKDAYS_NINE_TO_SIX = WorkingHours(start=9 * 60, end=18 * 60, days=frozenset(range(5)))


def nudge(
    standing: NudgeStanding = NudgeStanding.WAITING, *, reopened_in_crm: bool = False, **overrides: Any
) -> dict[str, Any]:
    deal = make_deal(**overrides.pop("deal", {}))
    item = make_item(deal, LossState.LOGGED, make_entry(**overrides))
    state = NudgeState(revisit_id=12, standing=standing, due_on=date(2027, 1, 4), reopened_in_crm=reopened_in_crm)
    rendered = build_revisit_nudge(item, nudge=state, catalogue=CATALOGUE, now=NOW + timedelta(days=40)).as_kwargs()
    check_limits(rendered["blocks"], MAX_MESSAGE_BLOCKS)
    return rendered


def action_ids(message: dict[str, Any]) -> list[str]:
    return [element["action_id"] for block in message["blocks"] for element in block.get("elements", [])]


def test_a_due_nudge_leads_with_the_question_then_open_in_crm_and_three_answers() -> None:
    message = nudge()
    assert (
        message["text"] == "Worth another try with Acme Corp? Acme — 200 seats was lost 40 days ago: Lost to Initech."
    )
    [question, *_] = mrkdwn_texts(message["blocks"])
    assert question.startswith(
        "*Worth another try with Acme Corp?*\nLost to Initech\n"
        "*Acme — 200 seats* · 48,000 USD · lost 40 days ago, <!date^"
    )
    assert question.endswith(">Initech undercut us by 30% and bundled onboarding.")
    assert action_ids(message) == ["open_in_crm", "revisit_reopened", "revisit_snooze", "revisit_drop"]
    styles = [element.get("style") for element in message["blocks"][-1]["elements"]]
    assert styles == ["primary", None, None, None]


def test_without_a_crm_link_i_reopened_it_is_the_primary_answer() -> None:
    message = nudge(deal={"url": None}, reason_code="price", detail=None)
    assert message["text"].endswith("was lost 40 days ago: Price / budget.")
    assert [element.get("style") for element in message["blocks"][-1]["elements"]] == ["primary", None, None]


@pytest.mark.parametrize(
    ("standing", "reopened_in_crm", "outcome"),
    [
        (NudgeStanding.REOPENED, False, ":tada: Reopened — counted as a win-back."),
        (NudgeStanding.REOPENED, True, ":tada: Reopened in the CRM — counted as a win-back."),
        (NudgeStanding.SNOOZED, False, ":zzz: Snoozed until Jan 4, 2027."),
        (NudgeStanding.DROPPED, False, "Dropped: not worth another try."),
        (NudgeStanding.REMOVED, False, "No longer planned: the revisit date was removed from the reason."),
    ],
)
def test_an_answered_nudge_shows_its_outcome_and_no_answers(
    standing: NudgeStanding, reopened_in_crm: bool, outcome: str
) -> None:
    message = nudge(standing, reopened_in_crm=reopened_in_crm)
    assert message["text"] == f"Acme — 200 seats: {outcome}"
    assert mrkdwn_texts(message["blocks"])[0].endswith(f"\n{outcome}")
    assert action_ids(message) == ["open_in_crm"]


def test_what_people_typed_is_escaped_and_long_text_fits() -> None:
    message = nudge(
        deal={"name": INJECTION * 40, "account": INJECTION * 400, "url": None},
        detail=INJECTION,
        explanation=(INJECTION + " ") * (MAX_EXPLANATION_LENGTH // len(INJECTION)),
    )
    for text in mrkdwn_texts(message["blocks"]) + [message["text"]]:
        assert "<!channel>" not in text and "<@U123>" not in text
    assert ESCAPED_INJECTION in message["text"]
    assert action_ids(message) == ["revisit_reopened", "revisit_snooze", "revisit_drop"]


def test_lost_ago() -> None:
    assert [lost_ago(NOW, NOW + timedelta(hours=hours)) for hours in (1, 24, 24 * 12)] == [
        "today",
        "1 day ago",
        "12 days ago",
    ]


def test_a_date_begins_first_at_utc_plus_14() -> None:
    assert first_moment(date(2027, 1, 6)) == datetime(2027, 1, 5, 10, tzinfo=UTC)


def test_a_nudge_is_due_at_the_start_of_the_reps_working_hours_on_the_date_or_the_next_working_day() -> None:
    tokyo, new_york = ZoneInfo("Asia/Tokyo"), ZoneInfo("America/New_York")
    wednesday, saturday = date(2027, 1, 6), date(2027, 1, 9)
    before = datetime(2027, 1, 1, tzinfo=UTC)
    assert nudge_moment(wednesday, tokyo, WEEKDAYS_NINE_TO_SIX, now=before) == datetime(2027, 1, 6, 0, tzinfo=UTC)
    assert nudge_moment(saturday, tokyo, WEEKDAYS_NINE_TO_SIX, now=before) == datetime(2027, 1, 11, 0, tzinfo=UTC)
    # Clocks go forward in New York on Sunday March 14, 2027: Monday 09:00 is EDT, 13:00 UTC.
    assert nudge_moment(date(2027, 3, 13), new_york, WEEKDAYS_NINE_TO_SIX, now=before) == datetime(
        2027, 3, 15, 13, tzinfo=UTC
    )


def test_a_late_nudge_waits_for_the_reps_working_hours_then_goes_at_once() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    wednesday = date(2027, 1, 6)
    wednesday_night = datetime(2027, 1, 6, 22, tzinfo=tokyo)
    thursday_noon = datetime(2027, 1, 7, 12, tzinfo=tokyo)
    assert nudge_moment(wednesday, tokyo, WEEKDAYS_NINE_TO_SIX, now=wednesday_night) == datetime(
        2027, 1, 7, 0, tzinfo=UTC
    )
    assert nudge_moment(wednesday, tokyo, WEEKDAYS_NINE_TO_SIX, now=thursday_noon) == thursday_noon
