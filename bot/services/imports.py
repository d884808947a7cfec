"""`closedlost import`: history, a CRM's closed deals or a file's rows, stored as the webhooks' events
are (README.md, "Importing history").

Pages are read one ahead (`read_ahead`): the next page is fetched, and the CRM's rate limit waited
for, while this one is stored.

Every deal goes through `record_deal_events`, the webhooks' own path, one transaction a page: the
same idempotency keys make a second run store nothing new, and a run cut short (the CRM down, the
command stopped) is simply run again, storing what the first did not.

No rep is asked about history: an imported loss is stored excluded from asking, with the reason its
history gives (the CRM's own loss reason, mapped as a webhook's is, or the file's), marked as the
CRM's. From `prompt_since` on, losses without such a reason are asked about as if just closed.
"""

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.api import CrmApiError
from bot.crm.event import CLOSED_LOST, CLOSED_WON, VIA_IMPORT, DealEvent, GivenReason
from bot.reasons import Catalogue, alias_key, code_for_crm_reason
from bot.services.deal_events import PromptPolicy, give_imported_reasons, record_deal_events

T = TypeVar("T")


@dataclass(frozen=True)
class HistoryRules:
    catalogue: Catalogue
    reason_aliases: Mapping[str, str]
    """REASON_ALIASES: how a CRM's loss reason maps to a reason code."""
    prompt_since: datetime | None
    """Losses closed from this time on that have no reason are asked about; None: none is."""


@dataclass
class ImportSummary:
    """What an import read and stored, so far."""

    read: int = 0
    lost: int = 0
    won: int = 0
    mapped: int = 0
    """Losses stored with the reason their history gives."""
    unmapped: Counter[str] = field(default_factory=Counter)
    """Each CRM loss reason that maps to no reason code, and on how many losses: its spellings that
    REASON_ALIASES would match alike count as one, under the first one read."""
    _spellings: dict[str, str] = field(default_factory=dict, repr=False)
    to_prompt: int = 0
    """Losses without a reason closed since `prompt_since`: their reps are asked."""
    stored: int = 0
    """Deals stored now; the others were already (an earlier run, a webhook, the sweep)."""
    reasons_given: int = 0
    """Losses an earlier import stored without a reason, given the one their CRM reason maps to now
    (REASON_ALIASES extended since)."""


class ImportStopped(Exception):
    """The import stopped before the end; what it stored stays, and a second run reads on."""

    def __init__(self, problem: str, summary: ImportSummary) -> None:
        super().__init__(problem)
        self.summary = summary


def as_history(event: DealEvent, rules: HistoryRules) -> tuple[DealEvent, str | None]:
    """The event as imported history: a loss with the reason it gives (the CRM's loss reason mapped
    through REASON_ALIASES and the catalogue's codes and labels, or the file's), not asked about
    unless it has none and closed since `prompt_since`. Also the CRM reason that mapped to nothing."""
    given, unmapped = event.given_reason, None
    if event.stage == CLOSED_LOST and given is None and event.crm_reason:
        code = code_for_crm_reason(event.crm_reason, aliases=rules.reason_aliases, catalogue=rules.catalogue)
        given = GivenReason(code=code) if code is not None else None
        unmapped = event.crm_reason if code is None else None
    closed_at = event.closed_at or event.changed_at
    prompt = (
        event.prompt
        and event.stage == CLOSED_LOST
        and given is None
        and rules.prompt_since is not None
        and closed_at >= rules.prompt_since
    )
    return dataclasses.replace(event, via=VIA_IMPORT, given_reason=given, prompt=prompt), unmapped


async def import_history(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    pages: AsyncIterable[list[DealEvent]],
    rules: HistoryRules,
    policy: PromptPolicy,
    clock: Callable[[], datetime],
    dry_run: bool,
    progress: Callable[[ImportSummary], None],
) -> ImportSummary:
    """Stores each page of events as history (`as_history`) in a transaction of its own, or with
    `dry_run` only counts them; calls `progress` after each page. Raises ImportStopped when the CRM
    fails (after its short 429s are waited out) or the database does, with what was done so far."""
    summary = ImportSummary()
    try:
        async with aclosing(read_ahead(pages)) as pages_read:
            async for page in pages_read:
                events = []
                for event in page:
                    imported, unmapped = as_history(event, rules)
                    events.append(imported)
                    _count(summary, imported, unmapped)
                if events and not dry_run:
                    now = clock()
                    result = await record_deal_events(
                        session_factory=session_factory, events=events, received_at=now, policy=policy
                    )
                    summary.stored += sum(result.is_new)
                    summary.reasons_given += await give_imported_reasons(
                        session_factory=session_factory, reasons=_reasons_already_read(events, result.is_new), now=now
                    )
                progress(summary)
    except CrmApiError as error:
        raise ImportStopped(str(error), summary) from None
    except (SQLAlchemyError, OSError) as error:
        first_line = str(getattr(error, "orig", None) or error).splitlines()[:1]
        raise ImportStopped(f"the database failed: {''.join(first_line)}", summary) from None
    return summary


async def read_ahead(pages: AsyncIterable[T]) -> AsyncGenerator[T]:
    """The pages, the next one asked for as soon as one is handed out, so that reading it runs while
    the caller works on this one. Closing it (`aclosing`) stops the reading of a page nobody will take."""
    iterator = aiter(pages)
    following = asyncio.ensure_future(anext(iterator))
    try:
        while True:
            try:
                page = await following
            except StopAsyncIteration:
                return
            following = asyncio.ensure_future(anext(iterator))
            yield page
    finally:
        following.cancel()


def _reasons_already_read(events: list[DealEvent], is_new: list[bool]) -> list[tuple[str, str, GivenReason]]:
    """The reasons of the losses among `events` that were stored before (`is_new` False): an
    earlier import may have stored them without one."""
    return [
        (event.source, event.deal_id, event.given_reason)
        for event, new in zip(events, is_new, strict=True)
        if not new and event.stage == CLOSED_LOST and event.given_reason is not None
    ]


def _count(summary: ImportSummary, event: DealEvent, unmapped: str | None) -> None:
    summary.read += 1
    if event.stage == CLOSED_WON:
        summary.won += 1
    if event.stage != CLOSED_LOST:
        return
    summary.lost += 1
    summary.mapped += event.given_reason is not None
    summary.to_prompt += event.prompt
    if unmapped is not None:
        spelling = summary._spellings.setdefault(alias_key(unmapped), unmapped)
        summary.unmapped[spelling] += 1
