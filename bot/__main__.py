"""The `closedlost` command (also `python -m bot`): `serve` (the default), `migrate` and `digest`."""

import argparse
import asyncio
import errno
import json
import logging
import signal
import socket
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from bot.app import create_app, utc_now
from bot.periods import Week, last_full_week, week_of
from bot.reasons import Catalogue, CatalogueError, load_catalogue
from bot.scheduler import claim_lease
from bot.services import digest_posting, outbox
from bot.services.chasing import ChasePolicy
from bot.services.delivery import SlackDelivery
from bot.services.digest import build_digest
from bot.services.digest_chart import loss_trend
from bot.services.health import connection_problem
from bot.services.losses import reason_codes_missing_from
from bot.settings import DatabaseSettings, Settings, describe_settings_error
from bot.slack_client import create_slack_client
from bot.team import TeamFileError, load_team
from bot.views.chart import chart_span, draw_loss_chart
from bot.views.data import LossTrend
from bot.views.digest import build_digest_message, render_text
from storage.engine import create_engine, create_session_factory
from storage.migrate import upgrade_to_head

SettingsT = TypeVar("SettingsT", bound=DatabaseSettings)
DATABASE_RETRY_SECONDS = 2


class StartupError(Exception):
    """A problem the admin must fix before the bot can start; its message is one line."""


class DigestNotPosted(Exception):
    """`closedlost digest` did not post the digest; its message is one line saying why."""


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
    arguments = parser.parse_args(argv)
    if arguments.command == "digest" and arguments.chart is not None and not arguments.dry_run:
        digest.error("--chart needs --dry-run: a posted digest shares its chart in its channel")

    try:
        if arguments.command == "digest":
            settings = _load(Settings)
            _configure_logging(settings.log_level)
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
            _configure_logging(database.log_level)
            _migrate(database.database_url)
            print("closedlost: the database is up to date")
            return 0
        settings = _load(Settings)
        _configure_logging(settings.log_level)
        catalogue = _load_catalogue(settings)
        team = _load_team(settings)
        # Bound first, before the app starts anything: a bad HOST or a busy PORT is one line.
        listening = _listen(settings.host, settings.port)
        _wait_for_database(settings.database_url, settings.database_wait)
        _migrate(settings.database_url)
        asyncio.run(_check_catalogue_keeps_stored_codes(settings, catalogue))
    except StartupError as error:
        for line in str(error).splitlines():
            print(f"closedlost: {line}", file=sys.stderr)
        return 2
    problem = asyncio.run(_serve(settings, catalogue, team, listening))
    if problem is not None:
        print(f"closedlost: {problem}", file=sys.stderr)
        return 2
    return 0


def _load(settings_class: type[SettingsT]) -> SettingsT:
    try:
        return settings_class()  # type: ignore[call-arg]
    except ValidationError as error:
        raise StartupError(describe_settings_error(error)) from None


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as error:
        setting = "PORT" if error.errno == errno.EADDRINUSE else "HOST"
        raise StartupError(f"cannot listen on {host}:{port} ({setting}): {error}") from None


async def _serve(
    settings: Settings, catalogue: Catalogue, team: dict[str, str], listening: socket.socket
) -> str | None:
    """Serves the bot on `listening` until SIGINT or SIGTERM, or until it cannot go on (Slack
    refused SLACK_APP_TOKEN); shuts it down gracefully either way, and returns the one line saying
    why it could not go on, or None.

    Not `web.run_app`: it offers the app no way to stop the process
    (https://github.com/aio-libs/aiohttp/issues/6723)."""
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[str | None] = loop.create_future()

    def stop(problem: str | None) -> None:
        if not stopped.done():
            stopped.set_result(problem)

    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop, None)
    runner = web.AppRunner(create_app(settings, catalogue=catalogue, team=team, on_fatal=stop))
    await runner.setup()
    try:
        await web.SockSite(runner, listening).start()
        return await stopped
    finally:
        await runner.cleanup()


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # matplotlib (the digest's chart) tells at INFO how it built its font cache: nothing to act on.
    logging.getLogger("matplotlib").setLevel(max(logging.WARNING, logging.getLogger().level))


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


def _load_catalogue(settings: Settings) -> Catalogue:
    try:
        catalogue = load_catalogue(settings.reasons_file)
    except CatalogueError as error:
        raise StartupError(f"REASONS_FILE {error}") from None
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
        digest = await build_digest(session_factory=session_factory, catalogue=catalogue, week=week, now=now, tz=tz)
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
            team={},  # a digest mentions no rep's manager
            clock=utc_now,
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
