"""The one shape a deal stage change takes inside the bot, whatever CRM sent it."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from storage.models import Deal

CLOSED_LOST = "closed_lost"
CLOSED_WON = "closed_won"
OPEN = "open"
"""Any stage but the two closed ones: the bot only tells closed from open."""


# The column each text field of a DealEvent is stored in. An event id has no column of its own: it
# is cut to the length of a deal id, which keeps either form of the idempotency key within its column.
_COLUMNS = {
    "source": "source",
    "deal_id": "external_id",
    "name": "name",
    "stage": "stage",
    "owner_email": "owner_email",
    "owner_slack_id": "owner_slack_id",
    "currency": "currency",
    "account": "account",
    "url": "url",
    "crm_reason": "crm_reason",
    "event_id": "external_id",
}


def _length(column: str) -> int | None:
    """The column's length in characters; None for text of any length."""
    length = getattr(Deal.__table__.c[column].type, "length", None)
    return length if isinstance(length, int) else None


TEXT_LIMITS: dict[str, int] = {
    field: length for field, column in _COLUMNS.items() if (length := _length(column)) is not None
}
"""The most characters each text field of a DealEvent may hold: its column's length."""


@dataclass(frozen=True)
class DealEvent:
    """A deal reported in a stage. Optional fields left as None leave what is recorded unchanged.

    Whatever a CRM sent, an event fits the columns it is stored in: a text longer than its column
    (`TEXT_LIMITS`) is cut to it when the event is made. A CRM's deal name of 5,000 characters is
    then stored in part rather than failing on PostgreSQL, retried for a day and dropped. The
    generic webhook checks lengths first and refuses what is too long, so nothing of it is cut.
    """

    source: str
    deal_id: str
    name: str
    stage: str
    owner_email: str | None
    owner_slack_id: str | None
    changed_at: datetime
    """When the CRM says the stage changed; the time of receipt when it does not say."""
    amount: Decimal | None = None
    currency: str | None = None
    account: str | None = None
    url: str | None = None
    crm_reason: str | None = None
    """The loss reason the CRM already has, which pre-selects a reason for the rep to confirm."""
    event_id: str | None = None
    prompt: bool = True
    """False when the CRM asks that no reason be asked for this loss (it is still recorded)."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name, limit in TEXT_LIMITS.items():
            value = getattr(self, name)
            if value is not None and len(value) > limit:
                object.__setattr__(self, name, value[:limit])  # frozen: this is still its construction

    @property
    def idempotency_key(self) -> str:
        """The CRM's own event id, or else the deal, its stage and when it changed (DESIGN.md §3)."""
        if self.event_id is not None:
            return f"{self.source}:event:{self.event_id}"
        return f"{self.source}:deal:{self.deal_id}:{self.stage}:{self.changed_at.isoformat()}"


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with a webhook body: which event (`index`) and field, when it is about one."""

    index: int | None
    field: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


class PayloadError(ValueError):
    """A webhook body that cannot be stored; every problem found is in `errors`."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(error.message for error in errors))
        self.errors = errors


def parse_amount(value: Any) -> Decimal | None:
    """A deal amount as the bot stores it (0 or more, below 10^16, two decimals), from a number or
    a numeric string; None for anything else."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0 or amount >= Decimal("1e16"):
        return None
    return amount.quantize(Decimal("0.01"))


def parse_currency(value: Any) -> str | None:
    """A three-letter currency code in upper case; None for anything else."""
    return value.upper() if isinstance(value, str) and len(value) == 3 and value.isalpha() else None


def is_storable(value: Any) -> bool:
    """False for text neither database can store: NUL characters and lone surrogates."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")  # fails on a lone surrogate
        except UnicodeEncodeError:
            return False
        return "\x00" not in value
    if isinstance(value, list):
        return all(is_storable(item) for item in value)
    if isinstance(value, dict):
        return all(is_storable(key) and is_storable(item) for key, item in value.items())
    return True


def is_id(value: Any) -> bool:
    """A positive integer id as the CRMs' JSON gives it (a bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63
