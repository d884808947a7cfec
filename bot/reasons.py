"""The reason catalogue (README.md, "The reason catalogue"): the built-in list, or a team's own TOML file.

A file looks like this; `requires` is "competitor", "feature" or absent, `group` is "loss" or
"no_decision", a code that stored answers use is kept with `retired = true` rather than deleted, and
`cues` are words that point at the reason when a rep's explanation or the CRM's reason uses them
(bot/second_look.py):

    [[reason]]
    code = "price"
    label = "Price / budget"
    revisit_after_days = 180
    cues = ["procurement said no"]
"""

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Requirement(StrEnum):
    COMPETITOR = "competitor"
    FEATURE = "feature"


class ReasonGroup(StrEnum):
    LOSS = "loss"
    NO_DECISION = "no_decision"


@dataclass(frozen=True)
class Reason:
    code: str
    label: str
    group: ReasonGroup = ReasonGroup.LOSS
    requires: Requirement | None = None
    revisit_after_days: int | None = None
    retired: bool = False
    cues: tuple[str, ...] = ()
    """The team's own words for this reason (`cues = [...]` in the reasons file): an explanation or
    a CRM's reason that uses one points at it (bot/second_look.py)."""


DEFAULT_REASONS = (
    Reason("price", "Price / budget", revisit_after_days=180),
    Reason("competitor", "Lost to a competitor", requires=Requirement.COMPETITOR, revisit_after_days=300),
    Reason("timing", "Bad timing / postponed", revisit_after_days=90),
    Reason("no_decision", "No decision / went dark", group=ReasonGroup.NO_DECISION, revisit_after_days=90),
    Reason("missing_feature", "Missing feature", requires=Requirement.FEATURE, revisit_after_days=180),
    Reason("no_need", "No need / not a fit"),
    Reason("poor_fit", "Poor qualification"),
    Reason("no_champion", "No decision-maker buy-in", revisit_after_days=120),
    Reason("stale", "Stale / pipeline clean-up", group=ReasonGroup.NO_DECISION),
    Reason("terms", "Contract or legal terms"),
    Reason("other", "Other"),
)

CLEAN_UP_CODE = "stale"
"""The reason a bulk clean-up's one-click answer logs (README.md, "Bulk clean-ups"), when the
catalogue has it and it is not retired."""

CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# A static_select holds at most 100 options: https://docs.slack.dev/reference/block-kit/block-elements/select-menu-element
MAX_ACTIVE_REASONS = 100
LABEL_MAX_LENGTH = 75
CUE_MAX_LENGTH = 100


class CatalogueError(ValueError):
    """The reasons file cannot be used; the message says which entry and why."""


class Catalogue:
    def __init__(self, reasons: Iterable[Reason]) -> None:
        self._by_code = {reason.code: reason for reason in reasons}

    def get(self, code: str) -> Reason | None:
        return self._by_code.get(code)

    @property
    def active(self) -> list[Reason]:
        """The reasons a rep can pick, in catalogue order."""
        return [reason for reason in self._by_code.values() if not reason.retired]

    @property
    def codes(self) -> set[str]:
        return set(self._by_code)

    @property
    def offers_clean_up(self) -> bool:
        """Whether a bulk prompt can offer its one-click answer: the catalogue has CLEAN_UP_CODE, not retired."""
        reason = self.get(CLEAN_UP_CODE)
        return reason is not None and not reason.retired

    def label(self, code: str) -> str:
        """The label of a code, or the code itself for one the catalogue no longer knows."""
        reason = self.get(code)
        return reason.label if reason is not None else code


def code_for_crm_reason(text: str | None, *, aliases: Mapping[str, str], catalogue: Catalogue) -> str | None:
    """The active reason a CRM's own loss reason stands for: through REASON_ALIASES, or else a
    reason whose code or label it is. Compared ignoring case and repeated spaces."""
    if not text:
        return None
    wanted = alias_key(text)
    code = next((code for alias, code in aliases.items() if alias_key(alias) == wanted), None)
    if code is None:
        code = next(
            (reason.code for reason in catalogue.active if wanted in {reason.code, alias_key(reason.label)}), None
        )
    reason = catalogue.get(code) if code is not None else None
    return reason.code if reason is not None and not reason.retired else None


def alias_key(text: str) -> str:
    """A CRM reason as REASON_ALIASES matches it: case and repeated spaces ignored."""
    return " ".join(text.split()).casefold()


def load_catalogue(path: Path | None) -> Catalogue:
    if path is None:
        return Catalogue(DEFAULT_REASONS)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CatalogueError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise CatalogueError(f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise CatalogueError(f"{path} is not valid TOML: {error}") from None
    entries = document.get("reason")
    if not isinstance(entries, list) or not entries:
        raise CatalogueError(f"{path} has no [[reason]] entries")
    reasons = [_parse_reason(entry, position) for position, entry in enumerate(entries, start=1)]
    _check_whole(reasons)
    return Catalogue(reasons)


def _parse_reason(entry: object, position: int) -> Reason:
    where = f"reason #{position}"
    if not isinstance(entry, dict):
        raise CatalogueError(f"{where} is not a table")
    unknown = set(entry) - {"code", "label", "group", "requires", "revisit_after_days", "retired", "cues"}
    if unknown:
        raise CatalogueError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    code = entry.get("code")
    if not isinstance(code, str) or not CODE_PATTERN.match(code):
        raise CatalogueError(f"{where}: code must be lower-case letters, digits and _ (got {code!r})")
    where = f"reason {code!r}"
    label = entry.get("label")
    if not isinstance(label, str) or not label.strip() or len(label) > LABEL_MAX_LENGTH:
        raise CatalogueError(f"{where}: label must be text of 1 to {LABEL_MAX_LENGTH} characters")
    try:
        group = ReasonGroup(entry.get("group", ReasonGroup.LOSS))
        requires = Requirement(entry["requires"]) if "requires" in entry else None
    except ValueError:
        raise CatalogueError(
            f"{where}: group must be loss or no_decision, requires must be competitor or feature"
        ) from None
    days = entry.get("revisit_after_days")
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650):
        raise CatalogueError(f"{where}: revisit_after_days must be a whole number from 1 to 3650")
    retired = entry.get("retired", False)
    if not isinstance(retired, bool):
        raise CatalogueError(f"{where}: retired must be true or false")
    return Reason(code, label.strip(), group, requires, days, retired, _parse_cues(entry.get("cues", []), where))


def _parse_cues(cues: object, where: str) -> tuple[str, ...]:
    if not isinstance(cues, list) or not all(
        isinstance(cue, str) and any(character.isalnum() for character in cue) and len(cue.strip()) <= CUE_MAX_LENGTH
        for cue in cues
    ):
        raise CatalogueError(
            f"{where}: cues must be a list of words or phrases of at most {CUE_MAX_LENGTH} characters, "
            'such as ["procurement freeze"]'
        )
    return tuple(" ".join(cue.split()) for cue in cues)


def _check_whole(reasons: list[Reason]) -> None:
    codes = [reason.code for reason in reasons]
    repeated = sorted({code for code in codes if codes.count(code) > 1})
    if repeated:
        raise CatalogueError(f"codes appear more than once: {', '.join(repeated)}")
    cued: dict[str, str] = {}
    for reason in reasons:
        for cue in reason.cues:
            earlier = cued.setdefault(alias_key(cue), reason.code)
            if earlier != reason.code:
                raise CatalogueError(f"the cue {cue!r} is listed under both {earlier!r} and {reason.code!r}")
    active = [reason for reason in reasons if not reason.retired]
    if not active:
        raise CatalogueError("every reason is retired: reps would have nothing to pick")
    if len(active) > MAX_ACTIVE_REASONS:
        raise CatalogueError(f"at most {MAX_ACTIVE_REASONS} reasons can be active (Slack's menu limit)")
