"""Unit tests of the second look at a pick (bot/second_look.py): what the words of an explanation or
a CRM's reason point at, and the form once the rep switches."""

from datetime import date

import pytest

from bot.reasons import DEFAULT_REASONS, Catalogue, Reason, ReasonGroup, Requirement
from bot.second_look import Sign, Suggestion, reason_in_text, second_look, switch_to
from bot.validation import ReasonForm

CATALOGUE = Catalogue(DEFAULT_REASONS)
# The team's logged competitors, by key, in their most used spelling (reps have also logged filler as
# a competitor); COMPETITORS_FILE merges "Big Blue" into IBM.
LOGGED = {
    "initech": "Initech",
    "ibm": "IBM",
    "dunderpaper": "Dunder Paper",
    "statusquo": "Status quo",
    "other": "Other",
}
MERGES = {"bigblue": "ibm"}


def look(explanation: str, picked: str, catalogue: Catalogue = CATALOGUE) -> Suggestion | None:
    reason = catalogue.get(picked)
    assert reason is not None
    return second_look(explanation, reason, catalogue=catalogue, competitors=LOGGED, merges=MERGES)


@pytest.mark.parametrize(
    ("explanation", "noticed", "competitor"),
    [
        ("They went with Hooli after the pilot.", "went with Hooli", "Hooli"),
        ("The board signed with Globex Corp last week.", "signed with Globex Corp", "Globex Corp"),
        ("CFO chose Hooli: 30% less per seat.", "chose Hooli", "Hooli"),
        (
            "Their ops team switched to Vandelay Industries in March.",
            "switched to Vandelay Industries",
            "Vandelay Industries",
        ),
        ("They moved to SAP when the parent company merged them.", "moved to SAP", "SAP"),
        ("Went with a cheaper competitor (Hooli) for the rollout.", "went with Hooli", "Hooli"),
        ("Signed with initech inc. on Friday.", "signed with initech", "Initech"),
    ],
)
def test_a_choice_of_a_name_suggests_a_competitor_with_that_name(
    explanation: str, noticed: str, competitor: str
) -> None:
    assert look(explanation, "price") == Suggestion("competitor", noticed, Sign.CHOICE, competitor)


@pytest.mark.parametrize(
    ("explanation", "noticed", "competitor"),
    [
        ("Initech bundled onboarding for free.", "Initech", "Initech"),
        ("INITECH, Inc had the SSO we lack.", "INITECH, Inc", "Initech"),
        ("Procurement preferred big blue for the mainframe work.", "big blue", "IBM"),
        ("The Dunder Paper demo won the room.", "Dunder Paper", "Dunder Paper"),
    ],
)
def test_a_competitor_the_team_logged_suggests_a_competitor_however_it_is_spelled(
    explanation: str, noticed: str, competitor: str
) -> None:
    assert look(explanation, "missing_feature") == Suggestion("competitor", noticed, Sign.NAME, competitor)


@pytest.mark.parametrize(
    ("explanation", "noticed"),
    [
        ("The champion went dark after the security review.", "went dark"),
        ("No response to four follow-ups since the demo.", "No response"),
        ("Their VP stopped responding once the pilot ended.", "stopped responding"),
        ("Ghosted us after we sent the MSA.", "Ghosted"),
        ("Board made no decision at the Q3 review.", "no decision"),
        ("THE BUYER WENT DARK AFTER THE DEMO.", "WENT DARK"),
    ],
)
def test_a_deal_that_went_nowhere_suggests_no_decision(explanation: str, noticed: str) -> None:
    assert look(explanation, "timing") == Suggestion("no_decision", noticed, Sign.WORDS, None)


@pytest.mark.parametrize(
    ("explanation", "noticed"),
    [
        ("Budget was cut by the new CFO in October.", "Budget"),
        ("Way too expensive for a team of 12.", "too expensive"),
        ("Their old tool is cheaper and good enough for 12 users.", "cheaper"),
        ("Pricing per seat did not fit their 400 part-timers.", "Pricing"),
    ],
)
def test_price_words_question_a_no_decision_pick(explanation: str, noticed: str) -> None:
    assert look(explanation, "no_decision") == Suggestion("price", noticed, Sign.WORDS, None)
    assert look(explanation, "stale") == Suggestion("price", noticed, Sign.WORDS, None)


@pytest.mark.parametrize(
    ("explanation", "picked"),
    [
        pytest.param("They signed with Initech after the pilot.", "competitor", id="choice-and-competitor"),
        pytest.param("Initech bundled onboarding for free.", "competitor", id="logged-and-competitor"),
        pytest.param("The champion went dark after the security review.", "no_decision", id="dark-and-no-decision"),
        pytest.param("Ghosted during the Q4 clean-up of the pipeline.", "stale", id="ghosted-and-stale"),
        pytest.param("Budget was cut by the new CFO in October.", "price", id="budget-and-price"),
        pytest.param("Budget moved to next fiscal year after the CFO froze spend.", "timing", id="budget-and-timing"),
        pytest.param("Too expensive for 12 seats at our list price.", "competitor", id="price-words-and-competitor"),
        pytest.param("Went dark right after the Initech demo.", "no_decision", id="backed-by-other-words"),
    ],
)
def test_no_suggestion_when_the_words_and_the_pick_agree(explanation: str, picked: str) -> None:
    assert look(explanation, picked) is None


@pytest.mark.parametrize(
    "explanation",
    [
        pytest.param("Budget moved to next fiscal year after the CFO froze spend.", id="moved-to-a-time"),
        pytest.param("Rollout moved to Q3 and then to January.", id="moved-to-a-quarter-and-a-month"),
        pytest.param("They chose to wait for the reorg to settle.", id="chose-a-verb"),
        pytest.param("They went with a cheaper option from their reseller.", id="no-name-after-the-words"),
        pytest.param("They went with it because the CFO wanted a pause.", id="a-name-further-on"),
        pytest.param("SIGNED WITH HOOLI LAST WEEK.", id="all-capitals-names-nobody"),
        pytest.param("No decision-maker ever joined a call.", id="decision-maker-is-one-word"),
        pytest.param("The budgetary cycle closed in May.", id="budgetary-is-not-budget"),
        pytest.param("They signed with. Hooli came later.", id="a-name-in-the-next-sentence"),
        pytest.param("Their other vendor won; the status quo stayed.", id="filler-logged-as-a-competitor"),
    ],
)
def test_words_that_only_look_like_a_signal_suggest_nothing(explanation: str) -> None:
    assert look(explanation, "no_champion") is None
    assert look(explanation, "timing") is None


def test_price_words_question_no_pick_outside_the_no_decision_group() -> None:
    assert look("Way too expensive for a team of 12.", "no_need") is None


def test_a_competitor_is_suggested_before_other_words_and_the_earliest_first() -> None:
    suggestion = look("Went dark for a month, then signed with Hooli, then with Globex.", "timing")

    assert suggestion == Suggestion("competitor", "signed with Hooli", Sign.CHOICE, "Hooli")


def test_a_team_cue_suggests_its_reason_unless_it_is_the_pick() -> None:
    catalogue = Catalogue(
        [
            *DEFAULT_REASONS,
            Reason("freeze", "Spending freeze", cues=("procurement freeze", "hiring freeze")),
            Reason("old", "Old reason", retired=True, cues=("legacy words",)),
        ]
    )

    suggestion = look("A Procurement  Freeze hit every team in Q4.", "timing", catalogue)

    assert suggestion == Suggestion("freeze", "Procurement  Freeze", Sign.WORDS, None)
    assert look("A procurement freeze hit every team in Q4.", "freeze", catalogue) is None
    assert look("Those legacy words from Q4 again.", "timing", catalogue) is None  # a retired reason


def test_a_catalogue_without_the_reasons_the_words_point_at_suggests_nothing() -> None:
    catalogue = Catalogue(
        [
            Reason("timing", "Timing"),
            Reason("other", "Other"),
            Reason("old", "Old", ReasonGroup.NO_DECISION, retired=True),
        ]
    )

    assert look("They signed with Hooli; we went dark on them; too expensive.", "timing", catalogue) is None


def test_a_catalogue_names_its_own_competitor_and_no_decision_reasons() -> None:
    catalogue = Catalogue(
        [
            Reason("timing", "Timing"),
            Reason("rival", "A rival won", requires=Requirement.COMPETITOR),
            Reason("silence", "Silence", ReasonGroup.NO_DECISION),
        ]
    )

    assert look("They signed with Hooli in May.", "timing", catalogue) == Suggestion(
        "rival", "signed with Hooli", Sign.CHOICE, "Hooli"
    )
    assert look("The champion went dark in May.", "timing", catalogue) == Suggestion(
        "silence", "went dark", Sign.WORDS, None
    )


@pytest.mark.parametrize(
    ("crm_reason", "expected"),
    [
        (
            "Went with a cheaper competitor (Initech)",
            Suggestion("competitor", "went with Initech", Sign.CHOICE, "Initech"),
        ),
        ("Lost to Hooli", Suggestion("competitor", "lost to Hooli", Sign.CHOICE, "Hooli")),
        ("Too expensive", Suggestion("price", "Too expensive", Sign.WORDS, None)),
        ("No response from buyer", Suggestion("no_decision", "No response", Sign.WORDS, None)),
        ("Went With Competitor", None),
        ("Chose Status Quo", None),
        ("Legal said no", None),
    ],
)
def test_a_crms_reason_text_points_at_a_reason(crm_reason: str, expected: Suggestion | None) -> None:
    assert reason_in_text(crm_reason, catalogue=CATALOGUE, competitors=LOGGED, merges=MERGES) == expected


def test_switching_keeps_the_explanation_fills_the_competitor_and_leaves_the_date_to_the_reason() -> None:
    typed = ReasonForm(reason_code="price", detail=None, explanation="CFO chose Hooli.", revisit_on=date(2027, 5, 1))

    assert switch_to(typed, "competitor", "Hooli", CATALOGUE) == ReasonForm(
        reason_code="competitor", detail="Hooli", explanation="CFO chose Hooli.", revisit_on=None
    )
    assert switch_to(typed, "no_decision", None, CATALOGUE).detail is None


def test_switching_keeps_a_detail_of_the_same_kind_only() -> None:
    catalogue = Catalogue(
        [*DEFAULT_REASONS, Reason("incumbent", "Stayed with incumbent", requires=Requirement.COMPETITOR)]
    )
    named = ReasonForm(reason_code="incumbent", detail="Initech", explanation="Renewed with Initech.", revisit_on=None)
    feature = ReasonForm(reason_code="missing_feature", detail="SSO", explanation="Needed SSO.", revisit_on=None)

    assert switch_to(named, "competitor", None, catalogue).detail == "Initech"
    assert switch_to(feature, "competitor", None, catalogue).detail is None


def test_a_team_cue_picks_the_reason_of_a_crms_reason_text() -> None:
    catalogue = Catalogue([*DEFAULT_REASONS, Reason("freeze", "Spending freeze", cues=("procurement freeze",))])

    found = reason_in_text("Procurement freeze (FY27)", catalogue=catalogue, competitors=LOGGED, merges=MERGES)

    assert found == Suggestion("freeze", "Procurement freeze", Sign.WORDS, None)
