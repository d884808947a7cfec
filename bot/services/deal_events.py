"""Recording deal stage changes: the audit trail, the deal as last reported, and its losses.

A batch is worked out in memory first (which deals change, which losses open or close), then
written with one bulk statement per table, so a batch of 100 events costs about ten statements
rather than hundreds of ORM round trips.
"""

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.event import CLOSED_LOST, OPEN, VIA_IMPORT, DealEvent, GivenReason
from bot.logs import log_ids
from bot.services import outbox, revisits
from storage import deal_queries, loss_queries, message_queries
from storage.models import Deal, LossState, ReasonSource

logger = logging.getLogger(__name__)

IMPORTED_HISTORY = "imported history (closedlost import)"
"""Why an imported loss is not asked about (`Loss.excluded_because`)."""

# The deal columns an event may change; optional fields an event leaves out keep their value.
OPTIONAL_FIELDS = ("account", "amount", "currency", "url", "crm_reason")

# The deal column each text of a DealEvent is stored in. An event id has no column of its own: it is
# held to a deal id's length, which keeps either form of the idempotency key within its column.
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
"""The most characters each text of a DealEvent is stored with: its column's length."""


def fit_to_columns(event: DealEvent) -> DealEvent:
    """The event with each text longer than its column cut to the column's length.

    The CRMs' text knows nothing of our columns: a HubSpot deal name of 5,000 characters failed on
    PostgreSQL, which enforces their lengths, so its fetch was retried for a day and dropped. Every
    event is stored through `record_deal_events`, whichever CRM and path it came from, so this is
    the one place that cuts. The generic webhook refuses over-long values before, with a 400.
    """
    too_long = {
        name: value[:limit]
        for name, limit in TEXT_LIMITS.items()
        if (value := getattr(event, name)) is not None and len(value) > limit
    }
    return dataclasses.replace(event, **too_long) if too_long else event


@dataclass(frozen=True)
class PromptPolicy:
    """Which new losses get a prompt, and when."""

    bulk_window: timedelta
    """A rep's prompt waits until no new loss of theirs has come for this long, so that a burst
    makes one DM ..."""
    bulk_max: timedelta
    """... and at most this long after the first loss it lists."""
    min_amount: Decimal
    """Losses of deals below this amount (in their own currency) are recorded but not prompted."""


@dataclass(frozen=True)
class IngestResult:
    is_new: list[bool]
    """One flag per event, in order: False for an event already seen."""
    stage_changes: list[bool]
    """One flag per event, in order: True when it moved its deal to another stage, or brought a deal
    the bot did not know in a closed stage; what a CRM's webhook exists to deliver."""
    messages_queued: int
    losses_opened: int
    """New losses that await a prompt."""


@dataclass
class _DealState:
    """A deal as the events of this batch leave it."""

    id: int | None
    """None for a deal first seen in this batch."""
    values: dict[str, Any]
    changed: bool = False
    awaiting_loss_id: int | None = None
    """The loss stored before this batch that still awaits a reason."""
    new_losses: list[dict[str, Any]] = field(default_factory=list)
    owner_changed: bool = False
    reopened: bool = False
    """The deal left closed-lost in this batch: its open revisits are win-backs."""


async def record_deal_events(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    events: list[DealEvent],
    received_at: datetime,
    policy: PromptPolicy,
) -> IngestResult:
    """Stores a batch of events in one transaction, in the order given.

    Text longer than its column is cut to fit (`fit_to_columns`). An event already seen (same
    idempotency key) has no effect. An event older than what is recorded
    for its deal joins the audit trail but changes nothing, so deliveries out of order are safe.
    New losses are prompted by the scheduler (`bot.services.chasing.queue_due_prompts`) at the
    times `policy` gives them; a loss that changes owner starts over with the new owner, and the
    messages about it are updated. A deal that leaves closed-lost closes its open revisits as
    win-backs.
    """
    events = [fit_to_columns(event) for event in events]
    is_new: list[bool] = []
    stage_changes: list[bool] = []
    audit: list[tuple[tuple[str, str], dict[str, Any]]] = []
    cancelled: list[int] = []
    async with session_factory() as session, session.begin():
        await deal_queries.lock_deals(session, ((event.source, event.deal_id) for event in events))
        keyed = [(event.idempotency_key, event) for event in events]
        seen = await deal_queries.existing_event_keys(session, (key for key, _ in keyed))
        deals = await _load_deals(session, events)

        for key, event in keyed:
            is_new.append(key not in seen)
            stage_changes.append(False)
            if key in seen:
                continue
            seen.add(key)
            deal_key = (event.source, event.deal_id)
            state = deals.get(deal_key)
            applied = state is None or event.changed_at >= state.values["stage_changed_at"]
            if applied:
                if state is None:
                    state = deals[deal_key] = _new_deal(event, received_at)
                stage_changes[-1] = _changes_stage(state.values["stage"], event.stage)
                cancelled.extend(_apply(state, event, received_at, policy))
            else:
                logger.info(
                    "older event for deal %s:%s kept in the audit trail only",
                    *deal_key,
                    extra=log_ids(deals=[deal_key]),
                )
            audit.append(
                (
                    deal_key,
                    {
                        "idempotency_key": key,
                        "stage": event.stage,
                        "changed_at": event.changed_at,
                        "received_at": received_at,
                        "applied": applied,
                        "payload": event.raw,
                        "via": event.via,
                    },
                )
            )

        deal_ids = await _write_deals(session, deals)
        opened = await _write_new_losses(session, deals, deal_ids)
        if cancelled:
            await loss_queries.cancel_losses(session, cancelled, received_at)
        reassigned = _reassigned_losses(deals)
        if reassigned:
            await loss_queries.restart_losses(
                session,
                reassigned,
                prompt_after=received_at + policy.bulk_window,
                prompt_by=received_at + policy.bulk_max,
            )
        messages = await message_queries.message_ids_about(session, cancelled + reassigned)
        messages += await revisits.close_reopened_deals(
            session, deal_ids=[deal_ids[key] for key, state in deals.items() if state.reopened], now=received_at
        )
        queued = await outbox.queue_updates(session, message_ids=messages, now=received_at)
        if audit:
            await deal_queries.insert_deal_events(
                session, [{**row, "deal_id": deal_ids[deal_key]} for deal_key, row in audit]
            )
    return IngestResult(is_new=is_new, stage_changes=stage_changes, messages_queued=queued, losses_opened=opened)


def _changes_stage(stored: str | None, reported: str) -> bool:
    """A deal first seen (`stored` None) counts only when closed: an open deal the bot had not heard
    of may simply have been edited, which no stage webhook announces."""
    return reported != stored and (stored is not None or reported != OPEN)


async def _load_deals(session: AsyncSession, events: list[DealEvent]) -> dict[tuple[str, str], _DealState]:
    """The batch's deals that are already stored, each with its loss awaiting a reason, if any."""
    rows = []
    for source in {event.source for event in events}:
        rows += await deal_queries.deal_rows(
            session, source, {event.deal_id for event in events if event.source == source}
        )
    awaiting = await loss_queries.awaiting_loss_ids(session, [row["id"] for row in rows])
    return {
        (row["source"], row["external_id"]): _DealState(
            id=row["id"], values=dict(row), awaiting_loss_id=awaiting.get(row["id"])
        )
        for row in rows
    }


def _new_deal(event: DealEvent, now: datetime) -> _DealState:
    columns = ("name", "owner_email", "owner_slack_id", "stage", "stage_changed_at", *OPTIONAL_FIELDS)
    values: dict[str, Any] = dict.fromkeys(columns)
    values.update(source=event.source, external_id=event.deal_id, created_at=now)
    return _DealState(id=None, values=values)


def _apply(state: _DealState, event: DealEvent, now: datetime, policy: PromptPolicy) -> list[int]:
    """Brings the deal to the event's state and opens or closes its loss. Returns the stored losses
    this event cancelled."""
    values = state.values
    previous_stage = values["stage"]
    values.update(name=event.name, stage=event.stage, stage_changed_at=event.changed_at, updated_at=now)
    for name in OPTIONAL_FIELDS:
        if getattr(event, name) is not None:
            values[name] = getattr(event, name)
    owner_before = (values["owner_email"], values["owner_slack_id"])
    if event.owner_slack_id is not None:
        values["owner_slack_id"] = event.owner_slack_id
    if event.owner_email is not None and event.owner_email != values["owner_email"]:
        values["owner_email"] = event.owner_email
        if event.owner_slack_id is None:
            values["owner_slack_id"] = None
    state.changed = True
    state.owner_changed |= owner_before != (values["owner_email"], values["owner_slack_id"])

    if event.stage == CLOSED_LOST and previous_stage != CLOSED_LOST:
        excluded_because = _excluded_because(event, values["amount"], policy)
        loss = {
            "lost_at": event.changed_at,
            "state": LossState.EXCLUDED if excluded_because else LossState.AWAITING,
            "excluded_because": excluded_because,
            "prompt_after": None if excluded_because else now + policy.bulk_window,
            "prompt_by": None if excluded_because else now + policy.bulk_max,
            "reminders_sent": 0,
            "created_at": now,
            "cancelled_at": None,
            "imported": event.via == VIA_IMPORT,
            "given_reason": event.given_reason,
        }
        state.new_losses.append(loss)
    elif event.stage != CLOSED_LOST and previous_stage == CLOSED_LOST:
        state.reopened = True
        if state.new_losses and state.new_losses[-1]["state"] == LossState.AWAITING:
            state.new_losses[-1].update(state=LossState.CANCELLED, cancelled_at=now)
        elif state.awaiting_loss_id is not None:
            cancelled, state.awaiting_loss_id = state.awaiting_loss_id, None
            return [cancelled]
    return []


async def _write_deals(session: AsyncSession, deals: dict[tuple[str, str], _DealState]) -> dict[tuple[str, str], int]:
    """Inserts the new deals and updates the changed ones; returns every deal's id."""
    changed = [{**state.values, "id": state.id} for state in deals.values() if state.id is not None and state.changed]
    new = [state for state in deals.values() if state.id is None]
    if new:
        for deal_id, source, external_id in await deal_queries.insert_deals(session, [state.values for state in new]):
            deals[(source, external_id)].id = deal_id
    if changed:
        await deal_queries.update_deals(session, changed)
    return {key: state.id for key, state in deals.items() if state.id is not None}


def _excluded_because(event: DealEvent, amount: Decimal | None, policy: PromptPolicy) -> str | None:
    if not event.prompt:
        return IMPORTED_HISTORY if event.via == VIA_IMPORT else "the CRM sent prompt: false"
    if amount is not None and amount < policy.min_amount:
        return f"the amount is below PROMPT_MIN_AMOUNT ({policy.min_amount})"
    return None


async def _write_new_losses(
    session: AsyncSession, deals: dict[tuple[str, str], _DealState], deal_ids: dict[tuple[str, str], int]
) -> int:
    """Inserts the losses this batch opened, with the reasons their history gives (the import);
    returns how many await a prompt."""
    sources = [key[0] for key, state in deals.items() for _ in state.new_losses]
    rows = [{**loss, "deal_id": deal_ids[key]} for key, state in deals.items() for loss in state.new_losses]
    if not rows:
        return 0
    given: list[GivenReason | None] = [row.pop("given_reason") for row in rows]
    inserted = await loss_queries.insert_losses(session, rows)
    entries = [
        _given_entry(loss_id, reason, source=source, now=row["created_at"])
        for loss_id, reason, source, row in zip(inserted, given, sources, rows, strict=True)
        if reason is not None
    ]
    if entries:
        await loss_queries.insert_reason_entries(session, entries)
    return sum(row["state"] == LossState.AWAITING for row in rows)


async def give_imported_reasons(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    reasons: list[tuple[str, str, GivenReason]],
    now: datetime,
) -> int:
    """Stores, for each (source, deal id, reason), the reason as the answer of the deal's newest loss
    imported as history without one: an earlier import read its CRM reason before REASON_ALIASES
    mapped it. Losses the bot asked about, or that have a reason, are left alone. Returns how many
    losses were given a reason."""
    async with session_factory() as session, session.begin():
        found = await loss_queries.imported_losses_without_reason(
            session, [(source, deal_id) for source, deal_id, _ in reasons]
        )
        entries = {
            found[(source, deal_id)]: _given_entry(found[(source, deal_id)], reason, source=source, now=now)
            for source, deal_id, reason in reasons
            if (source, deal_id) in found
        }
        if entries:
            await loss_queries.insert_reason_entries(session, list(entries.values()))
    return len(entries)


def _given_entry(loss_id: int, reason: GivenReason, *, source: str, now: datetime) -> dict[str, Any]:
    """The reason entry of an imported loss: the CRM's answer, logged by the deal's source."""
    return {
        "loss_id": loss_id,
        "revision": 1,
        "reason_code": reason.code,
        "detail": reason.detail,
        "detail_key": reason.detail_key,
        "explanation": reason.explanation,
        "revisit_on": None,
        "logged_by": source,
        "logged_at": now,
        "view_id": None,
        "bulk": False,
        "source": ReasonSource.CRM,
    }


def _reassigned_losses(deals: dict[tuple[str, str], _DealState]) -> list[int]:
    """Stored losses awaiting a reason whose deal changed owner: the prompt, its reminders and its
    escalation follow the new owner (a corrected email included)."""
    return [
        state.awaiting_loss_id for state in deals.values() if state.owner_changed and state.awaiting_loss_id is not None
    ]
