"""Losses as CSV, for the spreadsheets of the people who run sales: `closedlost export` writes it to
a file or stdout, `/closedlost export` sends it to the DM of the person who asked.

One row per loss, whatever its state (cancelled ones included: the state column says so), oldest
first, read a page at a time so that a million losses take no more memory than a hundred.
"""

import csv
import io
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.logs import log_ids
from bot.periods import Period
from bot.reasons import Catalogue
from bot.slack_client import UploadFailed, upload_file
from storage import export_queries
from storage.export_queries import ExportedLoss, PageEnd

logger = logging.getLogger(__name__)

COLUMNS = (
    "deal_id",
    "source",
    "name",
    "account",
    "amount",
    "currency",
    "owner_email",
    "lost_at",
    "state",
    "reason_code",
    "reason_label",
    "reason_group",
    "competitor_or_feature",
    "explanation",
    "logged_by",
    "logged_at",
    "revisit_on",
    "revisit_outcome",
    "imported",
)
PAGE_SIZE = 2_000
# What a spreadsheet reads as the start of a formula (or, tab and carriage return, can hide one):
# https://owasp.org/www-community/attacks/CSV_Injection
FORMULA_STARTS = frozenset("=+-@\t\r")
# The bot has no history import yet, so no loss came from one; the column is there so that a
# spreadsheet built on this export keeps working when imports arrive.

Progress = Callable[[int, int], None]
"""Called after each page with the losses written so far and the number to write."""


class ExportNotSent(Exception):
    """The CSV did not reach the person's DM; the message says why in one line."""


@dataclass(frozen=True)
class Bounds:
    since: datetime | None
    """Inclusive; None: from the first loss."""
    until: datetime | None
    """Exclusive; None: up to the last loss."""


def neutralise(cell: str) -> str:
    """The cell as text a spreadsheet shows rather than runs: one that starts like a formula gets a
    leading single quote, as OWASP advises. Deal and account names come from CRMs, where anyone can
    type `=HYPERLINK(…)`."""
    return "'" + cell if cell[:1] in FORMULA_STARTS else cell


async def write_losses_csv(
    out: TextIO,
    *,
    session_factory: async_sessionmaker[AsyncSession],
    catalogue: Catalogue,
    bounds: Bounds,
    progress: Progress | None = None,
) -> int:
    """Writes the header, then one row per loss lost within `bounds`, to `out` (opened with
    `newline=""`, as the csv module asks); returns the number of losses written. Each page is read
    in its own transaction (see `storage.export_queries`)."""
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    total = 0
    if progress is not None:
        async with session_factory() as session, session.begin():
            total = await export_queries.count_losses(session, since=bounds.since, until=bounds.until)
    written = 0
    after: PageEnd | None = None
    while True:
        async with session_factory() as session, session.begin():
            page = await export_queries.exported_losses(
                session, since=bounds.since, until=bounds.until, after=after, limit=PAGE_SIZE
            )
        writer.writerows(_row(loss, catalogue) for loss in page)
        written += len(page)
        if progress is not None:
            progress(written, max(total, written))
        if len(page) < PAGE_SIZE:
            return written
        after = PageEnd(page[-1].lost_at, page[-1].loss_id)


async def send_export(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    slack: AsyncWebClient,
    catalogue: Catalogue,
    user_id: str,
    period: Period,
    filename: str,
) -> int:
    """Sends the CSV of the losses lost in `period` to the DM between the bot and `user_id`, as a
    file; returns how many losses it holds. With none, nothing is sent. The CSV is written to a
    temporary file and streamed from there, never held in memory whole."""
    with tempfile.TemporaryFile() as file:
        text = io.TextIOWrapper(file, encoding="utf-8", newline="")
        bounds = Bounds(since=period.since, until=period.until)
        count = await write_losses_csv(text, session_factory=session_factory, catalogue=catalogue, bounds=bounds)
        text.flush()
        text.detach()  # the file stays open for the upload
        if count == 0:
            return 0
        file.seek(0)
        try:
            opened = await slack.conversations_open(users=user_id)
            await upload_file(
                slack,
                file=file,
                filename=filename,
                title=f"Closed-lost deals, {period.label}",
                channel_id=str(opened["channel"]["id"]),
                initial_comment=f"Closed-lost deals, {period.label}: {count:,} losses, one row each.",
            )
        except SlackApiError as error:
            problem = f"Slack answered {error.response.get('error')}"
            logger.warning("cannot send an export to %s: %s", user_id, problem, extra=log_ids(user=user_id))
            raise ExportNotSent(problem) from error
        except (UploadFailed, aiohttp.ClientError, TimeoutError) as error:
            problem = f"the file did not reach Slack ({error or type(error).__name__})"
            logger.warning("cannot send an export to %s: %s", user_id, problem, extra=log_ids(user=user_id))
            raise ExportNotSent(problem) from error
    return count


def _row(loss: ExportedLoss, catalogue: Catalogue) -> list[str]:
    reason = catalogue.get(loss.reason_code) if loss.reason_code is not None else None
    cells = [
        loss.deal_id,
        loss.source,
        loss.name,
        loss.account,
        loss.amount,
        loss.currency,
        loss.owner_email,
        _instant(loss.lost_at),
        loss.state,
        loss.reason_code,
        catalogue.label(loss.reason_code) if loss.reason_code is not None else None,
        reason.group if reason is not None else None,
        loss.detail,
        loss.explanation,
        loss.logged_by,
        _instant(loss.logged_at),
        loss.revisit_on.isoformat() if loss.revisit_on is not None else None,
        loss.revisit_state,
        "yes" if loss.imported else "no",
    ]
    return [neutralise(str(cell)) if cell is not None else "" for cell in cells]


def _instant(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC to the second, which spreadsheets and scripts both read. Built with
    isoformat, several times faster than strftime, which a million rows call twice each."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
