"""`closedlost import` (README.md, "Importing history"): reads a CRM's closed deals, or a CSV file,
stores them as history through `bot.services.imports`, shows its progress, and sums up."""

import asyncio
import dataclasses
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import aiohttp

from bot.crm.connectors import build_connectors, crm_name
from bot.crm.csv_import import CsvFileError, read_history_csv
from bot.crm.event import DealEvent
from bot.reasons import Catalogue
from bot.services.deal_events import PromptPolicy
from bot.services.imports import HistoryRules, ImportStopped, ImportSummary, import_history
from bot.settings import Settings
from bot.views.text import plural
from storage.engine import create_engine, create_session_factory

CSV_ROWS_PER_TRANSACTION = 1000
PROGRESS_EVERY_SECONDS = 5.0
"""Away from a terminal (a log), a progress line at most this often."""
UNMAPPED_LISTED = 50
CREDENTIALS = {
    "hubspot": "HUBSPOT_TOKEN",
    "salesforce": "SALESFORCE_INSTANCE_URL, SALESFORCE_CLIENT_ID and SALESFORCE_CLIENT_SECRET",
    "pipedrive": "PIPEDRIVE_API_TOKEN",
}


class ImportRefused(Exception):
    """The import cannot start (no credentials, a file that cannot be read or has bad rows); the
    message says why, in as many lines as it needs."""


@dataclass(frozen=True)
class ImportRequest:
    crm: str | None
    """The CRM to read, by its source (hubspot, salesforce, pipedrive); None for a file."""
    csv_path: Path | None
    since: datetime | None
    """With a CRM: the deals closed from this time on."""
    prompt_since: datetime | None
    dry_run: bool


def check_crm_configured(settings: Settings, request: ImportRequest) -> None:
    """Raises ImportRefused when the CRM to read has no API credentials set."""
    if request.crm is None:
        return
    configured = {
        "hubspot": settings.hubspot_token is not None,
        "salesforce": settings.salesforce_instance_url is not None,
        "pipedrive": settings.pipedrive_api_token is not None,
    }
    if not configured[request.crm]:
        raise ImportRefused(
            f"{crm_name(request.crm)}'s API is not configured: set {CREDENTIALS[request.crm]} to import from it"
        )


def run_import(
    settings: Settings, catalogue: Catalogue, competitor_merges: dict[str, str], request: ImportRequest
) -> int:
    """Runs the import and prints its summary; returns the exit status (1 when it stopped early).
    Raises ImportRefused before anything is read or stored."""
    rules = HistoryRules(catalogue=catalogue, reason_aliases=settings.reason_aliases, prompt_since=request.prompt_since)
    progress = _Progress(sys.stderr)
    try:
        summary = asyncio.run(_import(settings, catalogue, competitor_merges, request, rules, progress))
    except ImportStopped as error:
        return _stopped(progress, error.summary, request, str(error))
    except KeyboardInterrupt:
        # The page being stored when Ctrl-C came is stored whole or not at all (its transaction).
        return _stopped(progress, progress.last, request, "interrupted")
    progress.end()
    print(_summary(summary, request))
    return 0


def _stopped(progress: "_Progress", summary: ImportSummary, request: ImportRequest, problem: str) -> int:
    progress.end()
    print(_summary(summary, request))
    print(
        f"closedlost: the import stopped: {problem}. What it stored stays: run the same command again "
        "to read on (nothing is stored twice).",
        file=sys.stderr,
    )
    return 1


async def _import(
    settings: Settings,
    catalogue: Catalogue,
    competitor_merges: dict[str, str],
    request: ImportRequest,
    rules: HistoryRules,
    progress: "_Progress",
) -> ImportSummary:
    policy = PromptPolicy(
        bulk_window=settings.bulk_window, bulk_max=settings.bulk_max, min_amount=settings.prompt_min_amount
    )
    engine = create_engine(settings.database_url)
    try:
        async with aiohttp.ClientSession() as http:
            if request.crm is not None:
                pages = _crm_pages(settings, http, request)
            else:
                pages = _csv_pages(settings, catalogue, competitor_merges, request)
            return await import_history(
                session_factory=create_session_factory(engine),
                pages=pages,
                rules=rules,
                policy=policy,
                clock=lambda: datetime.now(UTC),
                dry_run=request.dry_run,
                progress=progress.show,
            )
    finally:
        await engine.dispose()


def _crm_pages(
    settings: Settings, http: aiohttp.ClientSession, request: ImportRequest
) -> AsyncIterator[list[DealEvent]]:
    assert request.crm is not None and request.since is not None
    connector = build_connectors(settings, http)[request.crm]
    since = request.since

    async def pages() -> AsyncIterator[list[DealEvent]]:
        async for page in connector.list_closed(since):
            yield page.events

    return pages()


def _csv_pages(
    settings: Settings, catalogue: Catalogue, competitor_merges: dict[str, str], request: ImportRequest
) -> AsyncIterator[list[DealEvent]]:
    """The file's rows, all checked before the first is stored, in pages of CSV_ROWS_PER_TRANSACTION."""
    assert request.csv_path is not None
    try:
        text = request.csv_path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ImportRefused(f"cannot read {request.csv_path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ImportRefused(f"{request.csv_path} is not UTF-8 text") from None
    try:
        events = read_history_csv(
            text,
            now=datetime.now(UTC),
            catalogue=catalogue,
            reason_aliases=settings.reason_aliases,
            competitor_merges=competitor_merges,
        )
    except CsvFileError as error:
        lines = [f"{request.csv_path}: {problem}" for problem in error.problems]
        count = plural(len(error.problems), "problem")
        raise ImportRefused("\n".join([*lines, f"{count} found: nothing was imported"])) from None

    async def pages() -> AsyncIterator[list[DealEvent]]:
        for start in range(0, len(events), CSV_ROWS_PER_TRANSACTION):
            yield events[start : start + CSV_ROWS_PER_TRANSACTION]

    return pages()


class _Progress:
    """On a terminal, one line rewritten after each page; elsewhere (a log), a line every few seconds."""

    def __init__(self, out: TextIO, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._out = out
        self._clock = clock
        self._terminal = out.isatty()
        self._started = clock()
        self._last_line = self._started
        self._shown = False
        self.last = ImportSummary()
        """The summary as of the last page: what to sum up if the import is interrupted."""

    def show(self, summary: ImportSummary) -> None:
        self.last = dataclasses.replace(summary, unmapped=summary.unmapped.copy())
        now = self._clock()
        elapsed = max(now - self._started, 1e-9)
        line = (
            f"closedlost: {summary.read:,} deals read ({summary.lost:,} lost, {summary.won:,} won), "
            f"{summary.read / elapsed:,.0f} a second"
        )
        if self._terminal:
            self._out.write(f"\r{line}")
            self._shown = True
        elif now - self._last_line >= PROGRESS_EVERY_SECONDS:
            self._out.write(f"{line}\n")
            self._last_line = now
        self._out.flush()

    def end(self) -> None:
        if self._shown:
            self._out.write("\n")
            self._out.flush()


def _summary(summary: ImportSummary, request: ImportRequest) -> str:
    origin = crm_name(request.crm) if request.crm is not None else str(request.csv_path)
    lines = [
        f"closedlost: read {plural(summary.read, 'deal')} from {origin}: "
        f"{summary.lost:,} lost, {summary.won:,} won, {summary.read - summary.lost - summary.won:,} open",
        f"  reasons mapped: {summary.mapped:,} of {plural(summary.lost, 'loss', 'losses')}",
    ]
    if summary.unmapped:
        lines.append(
            f"  CRM reasons that map to no reason code ({plural(len(summary.unmapped), 'value')}; "
            "add them to REASON_ALIASES and run the import again):"
        )
        for value, count in summary.unmapped.most_common(UNMAPPED_LISTED):
            lines.append(f"    {count:>6,}  {value}")
        if len(summary.unmapped) > UNMAPPED_LISTED:
            lines.append(f"    and {len(summary.unmapped) - UNMAPPED_LISTED:,} more values")
    if request.prompt_since is not None:
        lines.append(f"  losses without a reason since --prompt-since, whose reps are asked: {summary.to_prompt:,}")
    if request.dry_run:
        lines.append("  dry run: nothing was stored")
    elif summary.stored:
        already = summary.read - summary.stored
        lines.append(
            f"  stored {plural(summary.stored, 'deal')}" + (f"; {already:,} were already stored" if already else "")
        )
    elif summary.read and not summary.reasons_given:
        lines.append("  nothing new to store: every deal read was already stored")
    if summary.reasons_given:
        lines.append(
            f"  reasons given to {plural(summary.reasons_given, 'loss', 'losses')} imported before without one"
        )
    return "\n".join(lines)
