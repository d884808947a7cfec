"""Checks a rep's reason before it is stored, as pure functions: the rules of README.md ("Vague
answers are refused inline").

An explanation must say something: at least 20 characters, and at least three words beyond the
reflex answers ("price", "lost", "n/a", the reason's own label). "Lost to a competitor on price"
is refused; "Initech undercut us by 30% and bundled onboarding" is not.
"""

import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from bot.reasons import Catalogue, Reason, Requirement

MIN_EXPLANATION_LENGTH = 20
MIN_MEANINGFUL_WORDS = 3
MAX_EXPLANATION_LENGTH = 2000
MAX_DETAIL_LENGTH = 150

# Words that carry no information in a loss explanation on their own.
FILLER_WORDS = frozenset(
    """
    a an and the to of on in at for by with it its is was were be been we they them he she our their
    this that there too very just so as but or not no n na none nothing nope null nil other others
    misc tbd tbc idk unknown unsure sure see crm notes above below same reason reasons deal deals lost
    lose loss losing closed close won price pricing priced cost costs expensive cheap budget money
    competitor competitors competition timing time postponed later decision went dark ghosted
    feature features missing need fit qualification qualified bad poor terms legal contract customer
    client prospect account they're didn't did do does
    """.split()
)

# Whole answers that are refused whatever their length, compared after normalising.
VAGUE_ANSWERS = frozenset({"n a", "na", "none", "nothing", "price", "lost", "other", "see crm", "tbd", "unknown"})


@dataclass(frozen=True)
class ReasonForm:
    """What the rep submitted, as typed values."""

    reason_code: str | None
    detail: str | None
    explanation: str
    revisit_on: date | None


def validate_reason_form(form: ReasonForm, *, catalogue: Catalogue, today: date) -> dict[str, str]:
    """Returns {field: message} for each field at fault (`reason`, `detail`, `explanation`,
    `revisit`); an empty dict means the form can be stored."""
    errors: dict[str, str] = {}
    reason = catalogue.get(form.reason_code) if form.reason_code else None
    if reason is None or reason.retired:
        errors["reason"] = "Pick a reason from the list."
    elif reason.requires is not None and not form.detail:
        errors["detail"] = (
            "Name the competitor who won the deal."
            if reason.requires is Requirement.COMPETITOR
            else "Name the feature the buyer needed and we lack."
        )
    explanation_error = explanation_problem(form.explanation, reason)
    if explanation_error is not None:
        errors["explanation"] = explanation_error
    if form.revisit_on is not None and form.revisit_on < today:
        errors["revisit"] = "Pick a revisit date from today on, or leave it empty."
    return errors


def explanation_problem(text: str, reason: Reason | None) -> str | None:
    stripped = text.strip()
    if len(stripped) < MIN_EXPLANATION_LENGTH:
        return f"Say what happened in at least {MIN_EXPLANATION_LENGTH} characters: who decided, and why."
    if len(stripped) > MAX_EXPLANATION_LENGTH:
        return f"Keep it to {MAX_EXPLANATION_LENGTH} characters; the CRM has room for the rest."
    normalised = _normalise(stripped)
    own_label = {_normalise(reason.label), _normalise(reason.code)} if reason is not None else set()
    meaningful = {word for word in normalised.split() if word not in FILLER_WORDS and len(word) > 1}
    if normalised in VAGUE_ANSWERS or normalised in own_label or _word_count(meaningful) < MIN_MEANINGFUL_WORDS:
        return (
            "That doesn't say why this deal was lost. Add what happened: what the buyer said, "
            "who decided, what tipped it."
        )
    return None


def _word_count(words: set[str]) -> int:
    """Words, counting text in scripts written without spaces (Chinese, Japanese, Thai…) as one word
    for every two letters, since they cannot be split on spaces."""
    count = 0
    for word in words:
        unspaced = sum(1 for letter in word if unicodedata.category(letter) == "Lo")
        count += max(1, unspaced // 2) if unspaced else 1
    return count


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.lower()))
