"""Checks a rep's reason before it is stored, as pure functions: the rules of README.md ("Vague
answers are refused inline").

An explanation is judged by what it says, not by its length: it must hold one detail the team can
learn from. Each distinct word scores
- nothing when it says nothing on its own (FILLER_WORDS: "price", "lost", "n/a", "went dark", …);
- two when it is a detail: a number ("30%", "Q3", "$20k"), a name or abbreviation (a capitalised word
  that does not merely start a sentence, "Initech", "CFO", "SSO"), or the word right after "lost
  to", "went with", "chose" and the like, which names who won however it is typed ("went with
  globex");
- one otherwise (in scripts written without spaces, one per two letters).
Two points pass, unless every word that scores is a word of the picked reason's own label, or the
answer has no letter at all. "Lost to a competitor on price" scores nothing and is refused;
"Champion left", "Lost to Initech" and "No SSO" pass. tests/fixtures/explanations.toml is the
labelled set the rule is tuned on: a wrong refusal belongs there, with a fix here.
"""

import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from bot.reasons import Catalogue, Reason, Requirement

# Slack's own check on the input: an answer cannot be empty. What it says is judged on submit.
MIN_EXPLANATION_LENGTH = 1
MAX_EXPLANATION_LENGTH = 2000
MAX_DETAIL_LENGTH = 150
POINTS_NEEDED = 2

EXPLANATION_HELP = (
    "Add one detail the team can learn from — who decided, what tipped it, e.g. 'CFO chose Initech: 30% cheaper'."
)

# Words that say nothing about why a deal was lost when they stand alone. Apostrophes are dropped
# before comparing ("didn't" is "didnt").
FILLER_WORDS = frozenset(
    # Grammar.
    """
    a an and the to of on in at for by with from into about over after before during until since
    because due as but or so if than then too very just also still really only all any some it its
    is was were be been being are am has have had do does did done will would could should up we us
    our ours they them their he she his her you your my me this that these those there here what
    which who why how when dont didnt doesnt wasnt werent isnt arent wont cant couldnt wouldnt
    theyre im ive weve
    """
    # Non-answers, and pointers elsewhere.
    """
    not no non none nothing nope null nil nan na yes ok okay other others misc various etc tbd tbc
    idk unknown unsure sure maybe dunno whatever lol test testing given see crm notes note above
    below same ditto per discussed mentioned email thread call info details
    """
    # What the reason picker already says, in the words reps use for it.
    """
    reason reasons deal deals opportunity opp lost lose loss losing closed close won win
    price prices pricing priced cost costs expensive pricey cheap cheaper costly budget budgets
    money afford high issue issues problem problems competitor competitors competition another
    someone somebody else elsewhere different alternative option options vendor vendors provider
    solution solutions tool tools product incumbent existing current status quo inertia found
    timing time timeline right wrong now later next year years month months quarter postponed
    delayed revisit decision decisions decide decided made proceed forward direction go going gone
    went dark ghosted unresponsive response responding reply stopped silent quiet follow ups
    feature features missing gap need needs needed fit qualification qualified bad poor good terms
    legal contract customer client prospect account side interest interested priority priorities
    changed internal business work worked out chose get got ready yet longer approval aligned
    alignment stakeholder stakeholders meet requirements value compelling urgency momentum clear
    came come down end fell through
    """
    # Padding: hedges and the stock phrases of a polite non-answer.
    """
    again honestly sadly unfortunately ultimately overall basically actually simply despite several lot
    way thing things idea point factors efforts relationship great best new happy want wanted know
    think try tried feel felt like liked say said happen happened move ahead pursue justify
    contributed together back never otherwise one offering meetings management purchase spend
    day sense tough route everything meant appreciated hold off careful consideration feedback
    positive sign concerns passed moment future luck around
    """.split()
)

# The word after one of these names who won: "lost to globex", "went with hubspot", "chose zoho".
CHOICE_WORDS = frozenset({"chose", "picked", "selected", "prefers", "preferred", "vs", "versus"})
CHOICE_PHRASES = frozenset(
    {
        ("lost", "to"),
        ("went", "to"),
        ("went", "with"),
        ("signed", "with"),
        ("switched", "to"),
        ("moved", "to"),
        ("stayed", "with"),
    }
)

# Skipped when looking for the word after a choice: "went to a rebrand".
ARTICLES = frozenset({"a", "an", "the"})
# A sentence ends at . ! ? : ; before a space, at a line break, or at a dash between spaces.
SENTENCE_END = re.compile(r"[.!?:;]+(?=\s|$)|\n|\s[-–—]+\s")
WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


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
    elif reason.requires is not None and form.detail is not None and len(form.detail) > MAX_DETAIL_LENGTH:
        # The text input caps its length in Slack; a menu's option value does not stop a forged one.
        errors["detail"] = f"Keep the name to {MAX_DETAIL_LENGTH} characters."
    explanation_error = explanation_problem(form.explanation, reason)
    if explanation_error is not None:
        errors["explanation"] = explanation_error
    if form.revisit_on is not None and form.revisit_on < today:
        errors["revisit"] = "Pick a revisit date from today on, or leave it empty."
    return errors


def explanation_problem(text: str, reason: Reason | None) -> str | None:
    """The message to show on the explanation field, or None when the explanation can be stored."""
    stripped = text.strip()
    if len(stripped) > MAX_EXPLANATION_LENGTH:
        return f"Keep it to {MAX_EXPLANATION_LENGTH} characters; the CRM has room for the rest."
    points = _points(stripped)
    own_label = set(_words(reason.label)) if reason is not None else set()
    has_letters = any(character.isalpha() for character in stripped)
    if not has_letters or sum(points.values()) < POINTS_NEEDED or set(points) <= own_label:
        return EXPLANATION_HELP
    return None


def _points(text: str) -> dict[str, int]:
    """The words that score, each counted once at its best (see the module docstring)."""
    best: dict[str, int] = {}
    # Case tells an abbreviation from a word unless the rep typed in capitals throughout, and a
    # name from a word unless every word is capitalised ("Customer Was Not Responsive").
    cased = any(letter.islower() for letter in text)
    titled = cased and not any(word[0].islower() for word in WORD.findall(text))
    for sentence in SENTENCE_END.split(text):
        typed = WORD.findall(sentence)
        words = [_comparable(word) for word in typed]
        for position, (raw, word) in enumerate(zip(typed, words, strict=True)):
            before = [earlier for earlier in words[:position] if earlier not in ARTICLES]
            capital_is_a_name = cased and not titled and position > 0
            points = _word_points(raw, word, before, capital_is_a_name=capital_is_a_name, cased=cased)
            if points:
                best[word] = max(best.get(word, 0), points)
    return best


def _word_points(raw: str, word: str, before: list[str], *, capital_is_a_name: bool, cased: bool) -> int:
    """Points of one word; `before` holds the earlier words of its sentence, articles left out."""
    if any(character.isdigit() for character in word):
        return 2
    if word in FILLER_WORDS:
        return 0
    unspaced = sum(1 for letter in word if unicodedata.category(letter) == "Lo")
    if unspaced:
        return max(1, unspaced // 2)
    if len(word) < 2:
        return 0
    abbreviation = cased and any(letter.isupper() for letter in raw[1:])
    name = capital_is_a_name and raw[0].isupper()
    after_choice = bool(before) and (before[-1] in CHOICE_WORDS or tuple(before[-2:]) in CHOICE_PHRASES)
    return 2 if abbreviation or name or after_choice else 1


def _words(text: str) -> list[str]:
    return [_comparable(word) for word in WORD.findall(text)]


def _comparable(word: str) -> str:
    """Lower case without apostrophes or a possessive 's: "Initech's" is "initech", "didn't" is "didnt"."""
    lowered = word.lower().replace("’", "'")
    if lowered.endswith("'s"):
        lowered = lowered[:-2]
    return lowered.replace("'", "")
