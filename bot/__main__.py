"""The `closedlost` command (also `python -m bot`): `serve` (the default), `migrate`, `digest`,
`export` and `import`."""

import argparse
import asyncio
import contextlib
import errno
import io
import json
import os
import signal
import socket
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.access_log import AccessLogger
from bot.app import create_app, utc_now
from bot.competitors import CompetitorsFileError, load_competitors
from bot.import_command import ImportRefused, ImportRequest, check_crm_configured, run_import
from bot.logs import configure_logging
from bot.metrics import Metrics
from bot.periods import Week, last_full_week, start_of_day, week_of
from bot.reasons import Catalogue, CatalogueError, load_catalogue
from bot.scheduler import claim_lease
from bot.services import digest_posting, outbox
from bot.services.chasing import ChasePolicy
from bot.services.delivery import SlackDelivery
from bot.services.digest import build_digest
from bot.services.digest_chart import loss_trend
from bot.services.export import Bounds, Progress, write_losses_csv
from bot.services.health import connection_problem
from bot.services.losses import reason_codes_missing_from
from bot.settings import DatabaseSettings, ExportSettings, Settings, describe_settings_error
from bot.slack_client import create_slack_client
from bot.team import TeamFileError, load_team
from bot.views.chart import chart_span, draw_loss_chart
from bot.views.data import LossTrend
from bot.views.digest import build_digest_message, render_text
from storage.engine import create_engine, create_session_factory, ping
from storage.migrate import upgrade_to_head

SettingsT = TypeVar("SettingsT", bound=DatabaseSettings)
DATABASE_RETRY_SECONDS = 2


class StartupError(Exception):
    """A problem the admin must fix before the bot can start; its message is one line."""


class DigestNotPosted(Exception):
    """`closedlost digest` did not post the digest; its message is one line saying why."""


class ExportFailed(Exception):
    """`closedlost export` stopped before the end; its message is one line saying why."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="closedlost", description="A Slack bot that makes every closed-lost deal leave a reason behind."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "serve",
        help="apply pending migrations, then serve Slack and the webhooks (the default)",
        description="Apply pending database migrations, then serve Slack (HTTP, or Socket Mode when "
        "SLACK_APP_TOKEN is set) and the deal webhooks on HOST:PORT. Settings come from the "
        "environment or a .env file; see README.md.",
    )
    commands.add_parser(
        "migrate",
        help="bring the database up to the newest schema and exit",
        description="Apply every pending migration to DATABASE_URL and exit.",
    )
    digest = commands.add_parser(
        "digest",
        help="post the weekly digest now, or print it with --dry-run",
        description="Post the weekly digest of a past week to DIGEST_CHANNEL (default MANAGER_CHANNEL), "
        "once: a week already posted to that channel, by the scheduler or by this command, is not posted "
        "again. Weeks start on Monday in TIMEZONE.",
    )
    digest.add_argument(
        "--dry-run",
        action="store_true",
        help="print the digest instead of posting it: readable text, then the Block Kit message as JSON",
    )
    digest.add_argument(
        "--chart",
        type=Path,
        metavar="FILE",
        help="with --dry-run: also write the digest's chart (the last 12 weeks) to FILE as a PNG",
    )
    digest.add_argument(
        "--week",
        type=date.fromisoformat,
        metavar="DATE",
        help="any date (YYYY-MM-DD) in the week to cover; default: the last full week. "
        "The current week can only be printed (--dry-run), marked 'so far'",
    )
    export = commands.add_parser(
        "export",
        help="write every loss as CSV, one row each, to stdout or a file",
        description="Write one CSV row per loss (its deal, state, current reason, revisit and more; "
        "README.md lists the columns), oldest first, UTF-8 with a header. Cells a spreadsheet would run "
        "as formulas are written as text. Needs only DATABASE_URL, and TIMEZONE for the dates.",
    )
    export.add_argument(
        "--since", metavar="DATE", help="the first day (YYYY-MM-DD, in TIMEZONE) of the losses to write, included"
    )
    export.add_argument(
        "--until", metavar="DATE", help="the last day (YYYY-MM-DD, in TIMEZONE) of the losses to write, included"
    )
    export.add_argument("--output", metavar="FILE", type=Path, help="write to FILE instead of stdout")
    importing = commands.add_parser(
        "import",
        help="store history: a CRM's closed deals, or a CSV file's, without asking reps about them",
        description="Store the deals closed since a date in a CRM (its API credentials set), or the rows of "
        "a CSV file with the deal webhook's fields, as history: counted in the figures, never prompted. A "
        "loss's CRM reason is mapped through REASON_ALIASES and the catalogue. Running it again stores "
        "nothing twice, and reads on after a run cut short. README.md, 'Importing history'.",
    )
    source = importing.add_mutually_exclusive_group(required=True)
    source.add_argument("--crm", choices=["hubspot", "salesforce", "pipedrive"], help="the CRM to read")
    source.add_argument("--csv", type=Path, metavar="FILE", help="a CSV file to read instead of a CRM")
    importing.add_argument(
        "--since",
        metavar="DATE",
        help="with --crm: read the deals closed from this day (YYYY-MM-DD, in TIMEZONE) on",
    )
    importing.add_argument(
        "--prompt-since",
        metavar="DATE",
        help="ask reps, as if just closed, about the losses without a reason closed from this day (YYYY-MM-DD, "
        "in TIMEZONE) on; one DM per rep",
    )
    importing.add_argument("--dry-run", action="store_true", help="read and count, store nothing")
    arguments = parser.parse_args(argv)
    if arguments.command == "import" and (arguments.crm is None) != (arguments.since is None):
        importing.error("--since DATE goes with --crm, and only with it")
    if arguments.command == "digest" and arguments.chart is not None and not arguments.dry_run:
        digest.error("--chart needs --dry-run: a posted digest shares its chart in its channel")

    try:
        if arguments.command == "export":
            exporting = _load(ExportSettings)
            configure_logging(exporting.log_level, exporting.log_format)
            first, last = _day(arguments.since, "--since"), _day(arguments.until, "--until")
            if first is not None and last is not None and first > last:
                raise StartupError(f"--since {first} is after --until {last}")
            reasons = _read_reasons(exporting)
            try:
                print(_write_export(exporting, reasons, first, last, arguments.output), file=sys.stderr)
            except ExportFailed as error:
                print(f"closedlost: {error}", file=sys.stderr)
                return 1
            return 0
        if arguments.command == "import":
            settings = _load(Settings)
            configure_logging(settings.log_level, settings.log_format)
            request = ImportRequest(
                crm=arguments.crm,
                csv_path=arguments.csv,
                since=_start_of(arguments.since, "--since", settings),
                prompt_since=_start_of(arguments.prompt_since, "--prompt-since", settings),
                dry_run=arguments.dry_run,
            )
            catalogue = _load_catalogue(settings)
            competitor_merges = _load_competitors(settings)
            try:
                check_crm_configured(settings, request)
                if not request.dry_run:
                    _wait_for_database(settings.database_url, settings.database_wait)
                    _migrate(settings.database_url)
                return run_import(settings, catalogue, competitor_merges, request)
            except ImportRefused as error:
                raise StartupError(str(error)) from None
        if arguments.command == "digest":
            settings = _load(Settings)
            configure_logging(settings.log_level, settings.log_format)
            catalogue = _load_catalogue(settings)
            if arguments.dry_run:
                wants_chart = arguments.chart is not None
                text, trend = asyncio.run(_print_digest(settings, catalogue, arguments.week, wants_chart))
                print(text)
                return 0 if arguments.chart is None else _write_chart(arguments.chart, trend, catalogue)
            if settings.digest_to is None:
                raise StartupError("no channel to post the digest to: set DIGEST_CHANNEL or MANAGER_CHANNEL")
            try:
                print(asyncio.run(_post_digest(settings, catalogue, arguments.week)))
            except DigestNotPosted as error:
                print(f"closedlost: {error}", file=sys.stderr)
                return 1
            return 0
        if arguments.command == "migrate":
            database = _load(DatabaseSettings)
            configure_logging(database.log_level, database.log_format)
            _migrate(database.database_url)
            print("closedlost: the database is up to date")
            return 0
        settings = _load(Settings)
        configure_logging(settings.log_level, settings.log_format)
        catalogue = _load_catalogue(settings)
        team = _load_team(settings)
        competitor_merges = _load_competitors(settings)
        # Bound first, before the app starts anything: a bad HOST or a busy PORT is one line.
        listening = _listen(settings.host, settings.port, "PORT")
        metrics_socket = None
        if settings.metrics_port is not None:
            metrics_socket = _listen(settings.host, settings.metrics_port, "METRICS_PORT")
        _wait_for_database(settings.database_url, settings.database_wait)
        _migrate(settings.database_url)
        asyncio.run(_check_catalogue_keeps_stored_codes(settings, catalogue))
    except StartupError as error:
        for line in str(error).splitlines():
            print(f"closedlost: {line}", file=sys.stderr)
        return 2
    problem = asyncio.run(_serve(settings, catalogue, team, competitor_merges, listening, metrics_socket))
    if problem is not None:
        print(f"closedlost: {problem}", file=sys.stderr)
        return 2
    return 0


def _load(settings_class: type[SettingsT]) -> SettingsT:
    try:
        return settings_class()  # type: ignore[call-arg]
    except ValidationError as error:
        raise StartupError(describe_settings_error(error)) from None


def _listen(host: str, port: int, port_setting: str) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as error:
        setting = port_setting if error.errno == errno.EADDRINUSE else "HOST"
        raise StartupError(f"cannot listen on {host}:{port} ({setting}): {error}") from None


async def _serve(
    settings: Settings,
    catalogue: Catalogue,
    team: dict[str, str],
    competitor_merges: dict[str, str],
    listening: socket.socket,
    metrics_socket: socket.socket | None,
) -> str | None:
    """Serves the bot on `listening` (and its metrics on `metrics_socket`) until SIGINT or SIGTERM,
    or until it cannot go on (Slack refused SLACK_APP_TOKEN); shuts it down gracefully either way,
    and returns the one line saying why it could not go on, or None.

    Not `web.run_app`: it offers the app no way to stop the process
    (https://github.com/aio-libs/aiohttp/issues/6723)."""
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[str | None] = loop.create_future()

    def stop(problem: str | None) -> None:
        if not stopped.done():
            stopped.set_result(problem)

    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop, None)
    runner = web.AppRunner(
        create_app(
            settings,
            catalogue=catalogue,
            team=team,
            competitor_merges=competitor_merges,
            on_fatal=stop,
            metrics_socket=metrics_socket,
        ),
        access_log_class=AccessLogger,
    )
    await runner.setup()
    try:
        await web.SockSite(runner, listening).start()
        return await stopped
    finally:
        await runner.cleanup()


def _wait_for_database(database_url: str, wait: timedelta) -> None:
    """Tries to connect to PostgreSQL every DATABASE_RETRY_SECONDS for up to `wait`, saying so in one
    line per try: a platform or a compose file often starts the bot and its database together.
    A SQLite file does not come up later, so it is not waited for. The URL's password is never shown."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    give_up_at = time.monotonic() + wait.total_seconds()
    while (problem := asyncio.run(connection_problem(database_url))) is not None:
        if time.monotonic() + DATABASE_RETRY_SECONDS > give_up_at:
            raise StartupError(
                f"the database at {where} (DATABASE_URL) cannot be reached, "
                f"after waiting {wait.total_seconds():g} s (DATABASE_WAIT): {problem}"
            )
        print(
            f"closedlost: waiting for the database at {where}: {problem}; trying again in {DATABASE_RETRY_SECONDS} s",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(DATABASE_RETRY_SECONDS)


def _migrate(database_url: str) -> None:
    try:
        upgrade_to_head(database_url)
    except Exception as error:  # whatever the driver raises, the admin gets one line, not a traceback
        raise StartupError(f"DATABASE_URL cannot be reached or migrated: {error}") from None


def _read_reasons(settings: ExportSettings) -> Catalogue:
    try:
        return load_catalogue(settings.reasons_file)
    except CatalogueError as error:
        raise StartupError(f"REASONS_FILE {error}") from None


def _load_catalogue(settings: Settings) -> Catalogue:
    catalogue = _read_reasons(settings)
    unknown = sorted(set(settings.reason_aliases.values()) - catalogue.codes)
    if unknown:
        raise StartupError(f"REASON_ALIASES names reason codes the catalogue does not have: {', '.join(unknown)}")
    unknown = sorted(set(settings.reason_routes) - catalogue.codes)
    if unknown:
        raise StartupError(f"REASON_ROUTES names reason codes the catalogue does not have: {', '.join(unknown)}")
    return catalogue


def _load_team(settings: Settings) -> dict[str, str]:
    if settings.team_file is None:
        return {}
    try:
        return load_team(settings.team_file)
    except TeamFileError as error:
        raise StartupError(f"TEAM_FILE {error}") from None


def _load_competitors(settings: Settings) -> dict[str, str]:
    if settings.competitors_file is None:
        return {}
    try:
        return load_competitors(settings.competitors_file)
    except CompetitorsFileError as error:
        raise StartupError(f"COMPETITORS_FILE {error}") from None


async def _check_catalogue_keeps_stored_codes(settings: Settings, catalogue: Catalogue) -> None:
    engine = create_engine(settings.database_url)
    try:
        missing = await reason_codes_missing_from(catalogue, session_factory=create_session_factory(engine))
    finally:
        await engine.dispose()
    if missing:
        raise StartupError(
            f"REASONS_FILE drops reason codes that stored answers use: {', '.join(sorted(missing))}; "
            "keep them with retired = true"
        )


def _day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise StartupError(f"{option} {text!r} is not a date: expected YYYY-MM-DD") from None


def _start_of(text: str | None, option: str, settings: Settings) -> datetime | None:
    """The start of the day `text` names, in TIMEZONE."""
    day = _day(text, option)
    return start_of_day(day, settings.tz) if day is not None else None


def _write_export(
    settings: ExportSettings, catalogue: Catalogue, first: date | None, last: date | None, output: Path | None
) -> str:
    """Writes the CSV of the losses lost from day `first` through day `last` (in TIMEZONE; None:
    open) to `output`, or to stdout; returns the summary to print. A file is written beside
    `output` and renamed at the end, so `output` is never left half-written."""
    bounds = Bounds(
        since=start_of_day(first, settings.tz) if first else None,
        until=start_of_day(last + timedelta(days=1), settings.tz) if last else None,
    )
    progress = _show_progress if sys.stderr.isatty() else None
    if output is None:
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
        try:
            count = asyncio.run(_export(settings, catalogue, bounds, out, progress))
            out.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): nothing more can be written, not even at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise ExportFailed("stdout was closed before the export ended") from None
        finally:
            with contextlib.suppress(BrokenPipeError):
                out.detach()
        where = "stdout"
    else:
        partial = output.with_name(f"{output.name}.partial")
        try:
            with partial.open("w", encoding="utf-8", newline="") as out:
                count = asyncio.run(_export(settings, catalogue, bounds, out, progress))
            partial.replace(output)
        except OSError as error:  # opening, writing (a full disk) or renaming the file
            raise ExportFailed(f"cannot write {output}: {error.strerror or error}") from None
        finally:
            partial.unlink(missing_ok=True)
        where = str(output)
    if progress is not None:
        sys.stderr.write("\n")
    days = {
        (True, True): f" lost from {first} to {last}",
        (True, False): f" lost since {first}",
        (False, True): f" lost up to {last}",
        (False, False): "",
    }[(first is not None, last is not None)]
    return f"closedlost: wrote {count:,} losses{days} to {where}"


async def _export(
    settings: ExportSettings, catalogue: Catalogue, bounds: Bounds, out: TextIO, progress: Progress | None
) -> int:
    engine = create_engine(settings.database_url)
    session_factory = create_session_factory(engine)
    try:
        try:
            async with session_factory() as session:
                await ping(session)
        except (SQLAlchemyError, OSError) as error:  # the driver's, for a host that does not answer
            raise ExportFailed(f"DATABASE_URL cannot be reached: {_first_line(error)}") from None
        try:
            return await write_losses_csv(
                out, session_factory=session_factory, catalogue=catalogue, bounds=bounds, progress=progress
            )
        except SQLAlchemyError as error:
            raise ExportFailed(f"DATABASE_URL cannot be read: {_first_line(error)}") from None
    finally:
        await engine.dispose()


def _first_line(error: Exception) -> str:
    """The driver's own message ("no such table: loss"), without the SQL that SQLAlchemy adds."""
    lines = str(getattr(error, "orig", None) or error).splitlines()
    return lines[0] if lines else type(error).__name__


def _show_progress(written: int, total: int) -> None:
    sys.stderr.write(f"\rclosedlost: {written:,} of {total:,} losses written")
    sys.stderr.flush()


def _week(day: date | None, *, now: datetime, tz: ZoneInfo) -> Week:
    return week_of(day, tz=tz, today=now.astimezone(tz).date()) if day else last_full_week(now=now, tz=tz)


async def _print_digest(
    settings: Settings, catalogue: Catalogue, day: date | None, chart: bool
) -> tuple[str, LossTrend | None]:
    """The digest as text to print, and with `chart` the figures of its chart."""
    now = datetime.now(UTC)
    tz = settings.tz
    week = _week(day, now=now, tz=tz)
    engine = create_engine(settings.database_url)
    session_factory = create_session_factory(engine)
    try:
        digest = await build_digest(
            session_factory=session_factory, catalogue=catalogue, week=week, now=now, tz=tz, currency=settings.currency
        )
        trend = (
            await loss_trend(session_factory=session_factory, catalogue=catalogue, week=week, tz=tz) if chart else None
        )
    finally:
        await engine.dispose()
    message = build_digest_message(digest, catalogue)
    return f"{render_text(message)}\n\n{json.dumps(message.as_kwargs(), indent=2, ensure_ascii=False)}", trend


def _write_chart(path: Path, trend: LossTrend | None, catalogue: Catalogue) -> int:
    """Writes the chart as the digest would share it; says what it did on stderr (stdout holds the
    digest). Returns the exit status."""
    assert trend is not None
    if trend.empty:
        print(f"closedlost: no chart: no deal closed in the {chart_span(trend)}", file=sys.stderr)
        return 0
    try:
        path.write_bytes(draw_loss_chart(trend, catalogue))
    except OSError as error:
        print(f"closedlost: cannot write the chart to {path}: {error.strerror}", file=sys.stderr)
        return 1
    print(f"closedlost: wrote the chart of the {chart_span(trend)} to {path}", file=sys.stderr)
    return 0


async def _post_digest(settings: Settings, catalogue: Catalogue, day: date | None) -> str:
    """Records the week's digest for its channel and posts it now, through the outbox like the
    scheduler's; returns what to print."""
    channel = settings.digest_to
    assert channel is not None
    now = utc_now()
    week = _week(day, now=now, tz=settings.tz)
    if week.so_far:
        # Posting it would take the place of the full week's digest, which is posted once.
        raise DigestNotPosted(f"{week.period.label} is not over yet: only --dry-run shows it")
    engine = create_engine(settings.database_url)
    session_factory = create_session_factory(engine)
    try:
        message_id = await digest_posting.record_digest(
            session_factory=session_factory, channel=channel, week_start=week.monday, now=now, again_if_refused=True
        )
        if message_id is None:
            raise DigestNotPosted(
                f"the digest of {week.period.label} already went to {channel} (once per channel and week); "
                "nothing posted"
            )
        delivery = SlackDelivery(
            session_factory=session_factory,
            slack=create_slack_client(settings),
            catalogue=catalogue,
            chase=ChasePolicy.from_settings(settings),
            team_tz=settings.tz,
            team_currency=settings.currency,
            team={},  # a digest mentions no rep's manager
            clock=utc_now,
            metrics=Metrics(),  # counted, but not served: this command serves nothing
        )
        await outbox.deliver_due_messages(
            session_factory=session_factory,
            send=delivery.send,
            record_failure=delivery.record_failure,
            process_id=str(uuid.uuid4()),
            lease=claim_lease(settings),
            clock=utc_now,
            stopping=lambda: False,
            message_id=message_id,
        )
        problem = await digest_posting.posting_problem(session_factory=session_factory, message_id=message_id)
    finally:
        await engine.dispose()
    if problem is not None:
        raise DigestNotPosted(f"the digest of {week.period.label} for {channel} is not posted: {problem}")
    return f"closedlost: posted the digest of {week.period.label} to {channel}"


if __name__ == "__main__":
    sys.exit(main())
