"""The one shape a deal stage change takes inside the bot, whatever CRM sent it."""

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

CLOSED_LOST = "closed_lost"
CLOSED_WON = "closed_won"
OPEN = "open"
"""Any stage but the two closed ones: the bot only tells closed from open."""
MAX_NESTING = 64
"""The deepest a webhook body's arrays and objects may nest. The CRMs send 4 levels; a bound far
below Python's recursion limit lets every walk over a stored body (ours, json's, the database
driver's) finish, wherever on the stack it runs."""

VIA_WEBHOOK = "webhook"
VIA_SWEEP = "sweep"
"""Read from the CRM's API by the periodic sweep (`bot.services.sweeps`)."""
VIA_IMPORT = "import"


@dataclass(frozen=True)
class GivenReason:
    """A loss reason that comes with a deal's history (`closedlost import`): the CRM's own loss
    reason, or a file's `reason`, already mapped to a reason code. It is stored as the loss's answer,
    marked as the CRM's, and no rep is asked."""

    code: str
    detail: str | None = None
    """The competitor or missing feature, for a reason that names one."""
    detail_key: str | None = None
    """The key `detail` is counted under (bot.competitors.detail_key)."""
    explanation: str = ""


@dataclass(frozen=True)
class DealEvent:
    """A deal reported in a stage. Optional fields left as None leave what is recorded unchanged."""

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
    closed_at: datetime | None = None
    """When the CRM says the deal was closed (lost or won), if it says; None for an open deal."""
    via: str = VIA_WEBHOOK
    """How the event reached the bot: VIA_WEBHOOK, VIA_SWEEP or VIA_IMPORT (kept in the audit trail)."""
    given_reason: GivenReason | None = None
    """For an imported loss, the reason its history already gives (see GivenReason)."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def idempotency_key(self) -> str:
        """The CRM's own event id, or else the deal, its stage and when it changed (README.md, "The deal webhook")."""
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


def load_json(body: bytes) -> Any:
    """A webhook body's JSON. PayloadError when it is not JSON, holds a number JSON has not
    (NaN, Infinity, or 1e400, which Python would read as Infinity: PostgreSQL's json refuses them),
    or nests deeper than MAX_NESTING."""
    too_deep = FieldError(None, None, f"the body nests arrays and objects more than {MAX_NESTING} deep")
    try:
        document = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise PayloadError([too_deep]) from None
    except ValueError as error:  # also JSONDecodeError, bad UTF-8 and integers too long to read
        raise PayloadError([FieldError(None, None, f"the body is not valid JSON: {error}")]) from None
    if _nesting(document) > MAX_NESTING:
        raise PayloadError([too_deep])
    return document


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text[:40]} is too large a number")
    return number


def _nesting(document: Any) -> int:
    """How deep arrays and objects nest in `document` (0 for a scalar), without recursion."""
    deepest = 0
    waiting = [(document, 1)]
    while waiting:
        value, depth = waiting.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            waiting.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return deepest


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
    """A three-letter currency code in upper case; None for anything else (ISO 4217 codes are ASCII:
    `ß`, a letter, would be `SS` in upper case)."""
    is_code = isinstance(value, str) and len(value) == 3 and value.isascii() and value.isalpha()
    return value.upper() if is_code else None


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
