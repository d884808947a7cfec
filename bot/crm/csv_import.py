"""The file `closedlost import --csv` reads (README.md, "Importing history"): a header row of the
deal webhook's field names, plus the optional `reason`, `explanation`, `competitor` and `feature`.

Each row is checked as the webhook checks an event (`generic.parse_event`), and its reason as the
catalogue and REASON_ALIASES allow; every problem of every row is reported at once, by line and
field, so that the file is fixed in one go. A file with any problem is refused whole.
"""

import csv
import dataclasses
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.competitors import competitor_key, detail_key
from bot.crm import generic
from bot.crm.event import CLOSED_LOST, VIA_IMPORT, DealEvent, GivenReason
from bot.reasons import Catalogue, Requirement, code_for_crm_reason
from bot.validation import MAX_DETAIL_LENGTH, MAX_EXPLANATION_LENGTH

EVENT_FIELDS = (
    "deal_id",
    "name",
    "stage",
    "owner_email",
    "owner_slack_id",
    "amount",
    "currency",
    "account",
    "url",
    "changed_at",
    "event_id",
    "prompt",
)
"""The deal webhook's fields (README.md, "The deal webhook")."""
REASON_FIELDS = ("reason", "explanation", "competitor", "feature")
REQUIRED_FIELDS = ("deal_id", "name", "stage", "changed_at")
HEADER_LINE = 1


@dataclass(frozen=True)
class RowProblem:
    line: int
    """The line of the file the row starts on (the header is line 1)."""
    field: str | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}" + (f", {self.field}" if self.field else "") + f": {self.message}"


class CsvFileError(ValueError):
    """The file cannot be imported; `problems` lists every one found, in line order."""

    def __init__(self, problems: list[RowProblem]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


def read_history_csv(
    text: str,
    *,
    now: datetime,
    catalogue: Catalogue,
    reason_aliases: Mapping[str, str],
    competitor_merges: Mapping[str, str],
) -> list[DealEvent]:
    """The file's rows as imported events (VIA_IMPORT), a loss's reason as its GivenReason; raises
    CsvFileError with every problem found. `changed_at` is required: a row is history, dated by it,
    and the date is half of its idempotency key when it has no `event_id`."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise CsvFileError([RowProblem(HEADER_LINE, None, "the file is empty: it needs a header row")])
    columns = [name.strip() for name in header]
    header_problems = _header_problems(columns)
    if header_problems:
        raise CsvFileError(header_problems)
    events: list[DealEvent] = []
    problems: list[RowProblem] = []
    line = reader.line_num + 1
    for cells in reader:
        row_problems, event = _read_row(
            cells, columns, line, now=now, catalogue=catalogue, aliases=reason_aliases, merges=competitor_merges
        )
        problems += row_problems
        if event is not None:
            events.append(event)
        line = reader.line_num + 1
    if problems:
        raise CsvFileError(problems)
    return events


def _header_problems(columns: list[str]) -> list[RowProblem]:
    known = (*EVENT_FIELDS, *REASON_FIELDS)
    problems = [
        RowProblem(HEADER_LINE, name or None, f"is not a field the import knows (known: {', '.join(known)})")
        for name in dict.fromkeys(columns)
        if name not in known
    ]
    problems += [
        RowProblem(HEADER_LINE, name, "appears more than once in the header")
        for name in dict.fromkeys(columns)
        if columns.count(name) > 1
    ]
    problems += [
        RowProblem(HEADER_LINE, name, "is a required column") for name in REQUIRED_FIELDS if name not in columns
    ]
    if "owner_email" not in columns and "owner_slack_id" not in columns:
        problems.append(RowProblem(HEADER_LINE, "owner_email", "is a required column (or give owner_slack_id)"))
    return problems


def _read_row(
    cells: list[str],
    columns: list[str],
    line: int,
    *,
    now: datetime,
    catalogue: Catalogue,
    aliases: Mapping[str, str],
    merges: Mapping[str, str],
) -> tuple[list[RowProblem], DealEvent | None]:
    if len(cells) > len(columns):
        return [RowProblem(line, None, f"has {len(cells)} cells, more than the header's {len(columns)}")], None
    # An empty cell is a field left out, as in the webhook's JSON.
    values = {name: cell.strip() for name, cell in zip(columns, cells, strict=False) if cell.strip()}
    item: dict[str, Any] = {name: value for name, value in values.items() if name in EVENT_FIELDS}
    if "prompt" in item:
        item["prompt"] = {"true": True, "false": False}.get(item["prompt"].lower(), item["prompt"])
    problems: list[RowProblem] = []
    if "changed_at" not in item:
        problems.append(RowProblem(line, "changed_at", "required: when the deal reached this stage"))
    parsed = generic.parse_event(item, 0, now)
    if not isinstance(parsed, DealEvent):
        problems += [RowProblem(line, error.field, error.message) for error in parsed]
    stage = parsed.stage if isinstance(parsed, DealEvent) else generic.normalise_stage(values.get("stage", ""))
    given, reason_problems = _given_reason(values, stage, line, catalogue=catalogue, aliases=aliases, merges=merges)
    problems += reason_problems
    if problems or not isinstance(parsed, DealEvent):
        return problems, None
    return [], dataclasses.replace(parsed, via=VIA_IMPORT, given_reason=given)


def _given_reason(
    values: dict[str, str],
    stage: str,
    line: int,
    *,
    catalogue: Catalogue,
    aliases: Mapping[str, str],
    merges: Mapping[str, str],
) -> tuple[GivenReason | None, list[RowProblem]]:
    """The row's reason, checked: a reason the catalogue has (its code, its label, or a value
    REASON_ALIASES maps), on a closed-lost row, with a competitor or feature only where it asks for one."""
    problems: list[RowProblem] = []
    text = values.get("reason")
    if text is None:
        problems += [
            RowProblem(line, name, "needs a reason on the same row")
            for name in ("explanation", "competitor", "feature")
            if name in values
        ]
        return None, problems
    if stage != CLOSED_LOST:
        return None, [RowProblem(line, "reason", f"only a closed_lost row can have a reason (this one is {stage!r})")]
    code = code_for_crm_reason(text, aliases=aliases, catalogue=catalogue)
    reason = catalogue.get(code) if code is not None else None
    if reason is None:
        message = f"{text!r} is not a reason code, label or REASON_ALIASES value of an active reason"
        return None, [RowProblem(line, "reason", message)]
    # The columns are named as the requirements are: competitor, feature.
    wanted = reason.requires.value if reason.requires is not None else None
    for name in ("competitor", "feature"):
        if name in values and name != wanted:
            problems.append(RowProblem(line, name, f"the reason {reason.code!r} names no {name}"))
    detail = values.get(wanted) if wanted is not None else None
    if detail is not None and len(detail) > MAX_DETAIL_LENGTH:
        problems.append(RowProblem(line, wanted, f"is longer than {MAX_DETAIL_LENGTH} characters"))
    explanation = values.get("explanation", "")
    if len(explanation) > MAX_EXPLANATION_LENGTH:
        problems.append(RowProblem(line, "explanation", f"is longer than {MAX_EXPLANATION_LENGTH} characters"))
    if problems:
        return None, problems
    key = None
    if detail is not None:
        key = detail_key(detail, merges) if reason.requires == Requirement.COMPETITOR else competitor_key(detail)
    return GivenReason(code=reason.code, detail=detail, detail_key=key, explanation=explanation), []
