"""A second look at a rep's pick (README.md, "A second look at the pick"): the reason the words of an
explanation point at, when it is not the one picked; and the reason a CRM's own loss reason points at.

What the words can point at, found ignoring case, as whole words within one sentence:
- a competitor, which points at the first active reason that asks for one: a competitor the team has
  logged before, however it is spelled ("initech inc." is Initech, grouped as bot/competitors.py
  groups names), or a name after "went with", "signed with", "chose", "switched to", "moved to",
  "lost to" or "stayed with" ("signed with Initech", "went with a cheaper competitor (Initech)");
- a cue the team wrote in its reasons file, which points at its reason;
- "went dark", "no response", "stopped responding", "ghosted", "no decision", which point at the
  first active reason of the `no_decision` group;
- "budget", "too expensive", "cheaper", "pricing", which point at `price`, but question only a pick
  of the `no_decision` group: a price is part of many a competitor's or timing story ("CFO chose
  Initech: 30% cheaper" is a loss to Initech).

A pick is questioned only when nothing else in the words backs it: with `no_decision` picked, "Went
dark after the Initech demo" is not questioned. The price words back nothing, for the reason above.
When several things point elsewhere, the first of the list above is suggested (the earliest in the
text among equals).
"""

import bisect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from bot.competitors import detail_key
from bot.reasons import Catalogue, Reason, ReasonGroup, Requirement
from bot.validation import FILLER_WORDS, SENTENCE_END, ReasonForm

PRICE_CODE = "price"
CHOICE_PHRASES = ("went with", "signed with", "chose", "switched to", "moved to", "lost to", "stayed with")
NO_DECISION_WORDS = ("went dark", "no response", "stopped responding", "ghosted", "no decision")
PRICE_WORDS = ("budget", "too expensive", "cheaper", "pricing")
# Between a choice and the name it names: "went with a cheaper competitor (Initech)".
BEFORE_A_NAME = frozenset(
    """
    a an the their our another other some cheaper cheap bigger smaller larger local new existing current
    incumbent competing rival competitor vendor provider solution tool product platform option alternative
    """.split()
)
# Capitalised words after a choice that name a time, not a company: "moved to Q3", "moved to January".
DATE_WORDS = frozenset(
    """
    january february march april may june july august september october november december jan feb mar apr
    jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday
    """.split()
)
PERIOD = re.compile(r"^(?:q[1-4]|h[12]|fy\d*|\d+)$")
MAX_NAME_WORDS = 4
# A word, with the apostrophes and hyphens inside it: "decision-maker" is one word, so that
# "no decision-maker" does not read as "no decision".
WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


class Sign(StrEnum):
    """How the words showed the reason, for the question the modal asks."""

    CHOICE = "choice"
    """They chose someone: `noticed` is the choice and the name ("signed with Initech")."""
    NAME = "name"
    """A competitor the team has logged: `noticed` is the name as written."""
    WORDS = "words"
    """Words of the built-in lists or a team cue, as written ("went dark")."""


@dataclass(frozen=True)
class Suggestion:
    code: str
    """The reason the words point at: active, and not the one picked."""
    noticed: str
    sign: Sign
    competitor: str | None
    """The competitor to fill in when switching, in the team's most used spelling when logged before."""


def second_look(
    explanation: str,
    picked: Reason,
    *,
    catalogue: Catalogue,
    competitors: Mapping[str, str],
    merges: Mapping[str, str],
) -> Suggestion | None:
    """The reason to suggest instead of `picked`, or None when the words back the pick or point
    nowhere else. `competitors` maps each logged competitor's key to its most used spelling, keyed
    through `merges` (COMPETITORS_FILE), as bot/services/competitors.py lists them."""
    sightings = _sightings(explanation, catalogue, competitors, merges)
    if any(sighting.backs(picked) for sighting in sightings):
        return None
    return next((sighting.suggestion for sighting in sightings if sighting.questions(picked)), None)


def reason_in_text(
    text: str, *, catalogue: Catalogue, competitors: Mapping[str, str], merges: Mapping[str, str]
) -> Suggestion | None:
    """The reason a text points at with nothing picked yet (a CRM's own loss reason), or None."""
    return next((sighting.suggestion for sighting in _sightings(text, catalogue, competitors, merges)), None)


def switch_to(form: ReasonForm, suggestion_code: str, competitor: str | None, catalogue: Catalogue) -> ReasonForm:
    """The form once the rep switches to the suggested reason: the explanation kept; the competitor
    found in the words filled in, or the detail already typed kept when the suggested reason asks
    for the same kind; the revisit date left to the suggested reason's default, as picking the
    reason from the menu does."""
    before = catalogue.get(form.reason_code or "")
    after = catalogue.get(suggestion_code)
    requires = after.requires if after is not None else None
    detail = form.detail if before is not None and requires is not None and before.requires == requires else None
    if requires == Requirement.COMPETITOR and competitor is not None:
        detail = competitor
    return ReasonForm(reason_code=suggestion_code, detail=detail, explanation=form.explanation, revisit_on=None)


class _Points(StrEnum):
    COMPETITOR = "competitor"
    CUE = "cue"
    NO_DECISION = "no_decision"
    PRICE = "price"


@dataclass(frozen=True)
class _Sighting:
    points: _Points
    suggestion: Suggestion

    def backs(self, picked: Reason) -> bool:
        if self.points == _Points.COMPETITOR:
            return picked.requires == Requirement.COMPETITOR
        if self.points == _Points.NO_DECISION:
            return picked.group == ReasonGroup.NO_DECISION
        if self.points == _Points.PRICE:
            return False
        return picked.code == self.suggestion.code

    def questions(self, picked: Reason) -> bool:
        if self.points == _Points.PRICE:
            return picked.group == ReasonGroup.NO_DECISION
        return not self.backs(picked)


@dataclass(frozen=True)
class _Word:
    folded: str
    start: int
    end: int
    sentence: int


def _sightings(
    text: str, catalogue: Catalogue, competitors: Mapping[str, str], merges: Mapping[str, str]
) -> list[_Sighting]:
    """Everything the text points at, most telling first."""
    words = _words(text)
    cased = any(character.islower() for character in text)
    sightings: list[_Sighting] = []
    competitor = next((reason for reason in catalogue.active if reason.requires == Requirement.COMPETITOR), None)
    if competitor is not None:
        sightings += [
            _Sighting(_Points.COMPETITOR, Suggestion(competitor.code, noticed, Sign.CHOICE, name))
            for noticed, name in _choices(text, words, competitors, merges, cased=cased)
        ]
        sightings += [
            _Sighting(_Points.COMPETITOR, Suggestion(competitor.code, noticed, Sign.NAME, name))
            for noticed, name in _logged_names(text, words, competitors, merges)
        ]
    for reason in catalogue.active:
        sightings += _phrases(text, words, reason.cues, _Points.CUE, reason)
    no_decision = next((reason for reason in catalogue.active if reason.group == ReasonGroup.NO_DECISION), None)
    if no_decision is not None:
        sightings += _phrases(text, words, NO_DECISION_WORDS, _Points.NO_DECISION, no_decision)
    price = catalogue.get(PRICE_CODE)
    if price is not None and not price.retired:
        sightings += _phrases(text, words, PRICE_WORDS, _Points.PRICE, price)
    return sightings


def _words(text: str) -> list[_Word]:
    ends = [match.start() for match in SENTENCE_END.finditer(text)]
    return [
        _Word(_fold(match.group()), match.start(), match.end(), bisect.bisect(ends, match.start()))
        for match in WORD.finditer(text)
    ]


def _fold(word: str) -> str:
    return word.casefold().replace("’", "'")


def _runs(words: list[_Word], start: int, length: int) -> list[_Word] | None:
    """The `length` words from `start`, when they are all in one sentence."""
    run = words[start : start + length]
    return run if len(run) == length and run[0].sentence == run[-1].sentence else None


def _phrases(
    text: str, words: list[_Word], phrases: tuple[str, ...], points: _Points, reason: Reason
) -> list[_Sighting]:
    """Each place one of `phrases` is written, in the order of the text."""
    found: list[tuple[int, str]] = []
    for phrase in phrases:
        wanted = [_fold(word) for word in WORD.findall(phrase)]
        for start in range(len(words)):
            run = _runs(words, start, len(wanted))
            if run is not None and [word.folded for word in run] == wanted:
                found.append((run[0].start, text[run[0].start : run[-1].end]))
    found.sort()
    return [_Sighting(points, Suggestion(reason.code, noticed, Sign.WORDS, None)) for _, noticed in found]


def _choices(
    text: str, words: list[_Word], competitors: Mapping[str, str], merges: Mapping[str, str], *, cased: bool
) -> list[tuple[str, str]]:
    """(what they chose, written as "signed with Initech"; the name) for each choice of a name."""
    found: list[tuple[int, str, str]] = []
    for phrase in CHOICE_PHRASES:
        wanted = phrase.split()
        for start in range(len(words)):
            run = _runs(words, start, len(wanted))
            if run is None or [word.folded for word in run] != wanted:
                continue
            name = _name_after(text, words, start + len(wanted), run[0].sentence, competitors, merges, cased=cased)
            if name is not None:
                key = detail_key(name, merges)
                found.append((run[0].start, f"{phrase} {name}", competitors.get(key, name)))
    found.sort()
    return [(noticed, name) for _, noticed, name in found]


def _name_after(
    text: str,
    words: list[_Word],
    position: int,
    sentence: int,
    competitors: Mapping[str, str],
    merges: Mapping[str, str],
    *,
    cased: bool,
) -> str | None:
    """The name written from `position` on, after words such as "a cheaper competitor": capitalised
    words (in a text that is not all capitals), or one word that is a logged competitor."""
    while position < len(words) and words[position].sentence == sentence and words[position].folded in BEFORE_A_NAME:
        position += 1
    if position >= len(words) or words[position].sentence != sentence:
        return None
    first = words[position]
    if detail_key(text[first.start : first.end], merges) in competitors:
        return text[first.start : first.end]
    if not cased or not _is_name(text, first):
        return None
    last = first
    for word in words[position + 1 : position + MAX_NAME_WORDS]:
        if word.sentence != sentence or not _is_name(text, word):
            break
        last = word
    return text[first.start : last.end]


def _is_name(text: str, word: _Word) -> bool:
    return (
        text[word.start].isupper()
        and len(word.folded) > 1
        and word.folded not in FILLER_WORDS
        and word.folded not in DATE_WORDS
        and not PERIOD.match(word.folded)
    )


def _logged_names(
    text: str, words: list[_Word], competitors: Mapping[str, str], merges: Mapping[str, str]
) -> list[tuple[str, str]]:
    """(the name as written; its most used spelling) for each logged competitor the text names, the
    longest name at each place. Words that say nothing on their own ("other", "status quo") are not
    taken for a name, even if a rep once logged them as one."""
    found: list[tuple[str, str]] = []
    start = 0
    while start < len(words):
        for length in range(MAX_NAME_WORDS, 0, -1):
            run = _runs(words, start, length)
            if run is None or all(word.folded in FILLER_WORDS for word in run):
                continue
            written = text[run[0].start : run[-1].end]
            spelling = competitors.get(detail_key(written, merges))
            if spelling is not None:
                found.append((written, spelling))
                start += length - 1
                break
        start += 1
    return found
