"""The `closedlost` command (also `python -m bot`): `serve` (the default), `migrate` and `digest`."""

import argparse
import asyncio
import errno
import json
import logging
import socket
import sys
import uuid
from datetime import UTC, date, datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import ValidationError
from slack_sdk.errors import SlackApiError

from bot.app import create_app, utc_now
from bot.metrics import Metrics
from bot.periods import Week, last_full_week, week_of
from bot.reasons import Catalogue, CatalogueError, load_catalogue
from bot.scheduler import claim_lease
from bot.services import digest_posting, outbox
from bot.services.chasing import ChasePolicy
from bot.services.delivery import SlackDelivery
from bot.services.digest import build_digest
from bot.services.losses import reason_codes_missing_from
from bot.settings import DatabaseSettings, Settings, describe_settings_error
from bot.slack_client import create_slack_client
from bot.team import TeamFileError, load_team
from bot.views.digest import build_digest_message, render_text
from storage.engine import create_engine, create_session_factory
from storage.migrate import upgrade_to_head

SettingsT = TypeVar("SettingsT", bound=DatabaseSettings)


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
        "--week",
        type=date.fromisoformat,
        metavar="DATE",
        help="any date (YYYY-MM-DD) in the week to cover; default: the last full week. "
        "The current week can only be printed (--dry-run), marked 'so far'",
    )
    arguments = parser.parse_args(argv)

    try:
        if arguments.command == "digest":
            settings = _load(Settings)
            _configure_logging(settings.log_level)
            catalogue = _load_catalogue(settings)
            if arguments.dry_run:
                print(asyncio.run(_print_digest(settings, catalogue, arguments.week)))
                return 0
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
        listening = _listen(settings.host, settings.port, "PORT")
        metrics_socket = None
        if settings.metrics_port is not None:
            metrics_socket = _listen(settings.host, settings.metrics_port, "METRICS_PORT")
        _migrate(settings.database_url)
        asyncio.run(_check_catalogue_keeps_stored_codes(settings, catalogue))
    except StartupError as error:
        for line in str(error).splitlines():
            print(f"closedlost: {line}", file=sys.stderr)
        return 2
    try:
        app = create_app(settings, catalogue=catalogue, team=team, metrics_socket=metrics_socket)
        web.run_app(app, sock=listening, print=None)
    except SlackApiError as error:
        print(f"closedlost: SLACK_APP_TOKEN was refused by Slack: {error.response.get('error')}", file=sys.stderr)
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


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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


async def _print_digest(settings: Settings, catalogue: Catalogue, day: date | None) -> str:
    now = datetime.now(UTC)
    tz = settings.tz
    week = _week(day, now=now, tz=tz)
    engine = create_engine(settings.database_url)
    try:
        digest = await build_digest(
            session_factory=create_session_factory(engine), catalogue=catalogue, week=week, now=now, tz=tz
        )
    finally:
        await engine.dispose()
    message = build_digest_message(digest, catalogue)
    return f"{render_text(message)}\n\n{json.dumps(message.as_kwargs(), indent=2, ensure_ascii=False)}"


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
