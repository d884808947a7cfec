"""Unit tests of the settings (README.md, "Settings") and of how the CLI reports a bad one at start-up."""

import os
import socket
import subprocess
import sys
import types
import typing
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from bot.settings import Settings, describe_settings_error, parse_reason_routes
from tests.bot_process import free_port

REQUIRED = {"slack_bot_token": "xoxb-test-token", "slack_signing_secret": "signing-secret"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the process environment: the developer's own must not leak into these tests."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **{**REQUIRED, **values})  # type: ignore[arg-type]


# --- defaults and normalisation -------------------------------------------------------------------


def test_the_defaults_match_the_design() -> None:
    loaded = settings()

    assert loaded.slack_api_url == "https://slack.com/api/"
    assert loaded.database_url == "sqlite+aiosqlite:///closedlost.db"
    assert loaded.port == 3000
    assert loaded.host == "0.0.0.0"
    assert loaded.timezone == "UTC"
    assert loaded.tz.key == "UTC"
    assert loaded.deals_webhook_secret is None
    assert loaded.slack_app_token is None
    assert loaded.socket_mode is False
    assert loaded.reasons_file is None
    assert loaded.log_format == "text"
    assert (loaded.bulk_window, loaded.bulk_max) == (timedelta(minutes=2), timedelta(minutes=15))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgres://bot:pw@db.example.com:5432/closedlost",
            "postgresql+asyncpg://bot:pw@db.example.com:5432/closedlost",
        ),
        ("postgresql://bot@localhost/closedlost", "postgresql+asyncpg://bot@localhost/closedlost"),
        ("postgresql+asyncpg://bot@localhost/closedlost", "postgresql+asyncpg://bot@localhost/closedlost"),
        ("sqlite:///data/closedlost.db", "sqlite+aiosqlite:///data/closedlost.db"),
        ("sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite:///:memory:"),
        # libpq's sslmode (what hosting platforms hand out) is asyncpg's ssl.
        (
            "postgres://u:p@db.example.com:5432/app?sslmode=require",
            "postgresql+asyncpg://u:p@db.example.com:5432/app?ssl=require",
        ),
        (
            "postgresql://u:p@db.example.com:5432/app?sslmode=disable",
            "postgresql+asyncpg://u:p@db.example.com:5432/app?ssl=disable",
        ),
    ],
)
def test_database_urls_get_the_async_driver(given: str, expected: str) -> None:
    assert settings(database_url=given).database_url == expected


def test_sslmode_is_renamed_and_the_other_query_parameters_are_kept() -> None:
    given = "postgres://u:p@db.example.com:5432/app?application_name=closedlost&sslmode=verify-full&connect_timeout=10"

    loaded = make_url(settings(database_url=given).database_url)

    assert (loaded.drivername, loaded.username, loaded.password) == ("postgresql+asyncpg", "u", "p")
    assert (loaded.host, loaded.port, loaded.database) == ("db.example.com", 5432, "app")
    assert dict(loaded.query) == {"application_name": "closedlost", "ssl": "verify-full", "connect_timeout": "10"}


def test_the_slack_api_url_ends_with_a_slash() -> None:
    assert settings(slack_api_url="http://127.0.0.1:8080/api").slack_api_url == "http://127.0.0.1:8080/api/"


def test_an_app_token_turns_on_socket_mode_without_a_signing_secret() -> None:
    loaded = Settings(_env_file=None, slack_bot_token="xoxb-1", slack_app_token="xapp-1")  # type: ignore[call-arg]

    assert loaded.socket_mode is True
    assert loaded.slack_signing_secret is None


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-env")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret-from-env")
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("TIMEZONE", "Europe/Paris")

    loaded = Settings(_env_file=None)  # type: ignore[call-arg]

    assert loaded.slack_bot_token.get_secret_value() == "xoxb-from-env"
    assert loaded.port == 8080
    assert loaded.tz.key == "Europe/Paris"


def test_settings_are_read_from_a_dotenv_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SLACK_BOT_TOKEN=xoxb-from-file\nSLACK_SIGNING_SECRET=s\nDATABASE_URL=postgres://h/db\n")

    loaded = Settings(_env_file=env_file)  # type: ignore[call-arg]

    assert loaded.slack_bot_token.get_secret_value() == "xoxb-from-file"
    assert loaded.database_url == "postgresql+asyncpg://h/db"


@pytest.mark.parametrize(
    ("values", "name"),
    [
        ({"slack_bot_token": "xoxp-user-token"}, "slack_bot_token"),
        ({"slack_app_token": "xoxb-wrong"}, "slack_app_token"),
        ({"slack_api_url": "slack.com/api"}, "slack_api_url"),
        ({"database_url": "mysql://localhost/db"}, "database_url"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"log_level": "LOUD"}, "log_level"),
        ({"log_format": "xml"}, "log_format"),
        ({"salesforce_webhook_token": "short-token"}, "salesforce_webhook_token"),
        ({"salesforce_webhook_token": "a token with spaces in it"}, "salesforce_webhook_token"),
        ({"salesforce_webhook_token": "token&org=00D5g000004XyZa"}, "salesforce_webhook_token"),
        ({"bulk_max": "1m"}, "bulk_max"),
        ({"bulk_window": "20m"}, "bulk_max"),
    ],
)
def test_a_malformed_setting_is_refused(values: dict[str, object], name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(**values)

    assert [problem["loc"] for problem in caught.value.errors()] == [(name,)]


# --- bounds: a number or duration that cannot be meant is refused, naming its setting ---------------


def fields_of_type(*kinds: type) -> set[str]:
    """The settings whose type is one of `kinds`, alone, optional, or as a tuple of them."""

    def matches(annotation: object) -> bool:
        if annotation in kinds:
            return True
        if typing.get_origin(annotation) in {tuple, typing.Union, types.UnionType}:
            return any(matches(argument) for argument in typing.get_args(annotation) if argument is not Ellipsis)
        return False

    return {name for name, field in Settings.model_fields.items() if matches(field.annotation)}


DURATIONS = fields_of_type(timedelta)
NUMBERS = fields_of_type(int, float, Decimal)


def test_the_bounded_settings_are_found() -> None:
    """So the tests below cannot pass by finding nothing to check."""
    assert {"reminder_after", "escalate_after", "bulk_window", "scheduler_tick"} <= DURATIONS
    assert {"port", "prompt_min_amount", "debrief_min_amount"} <= NUMBERS


@pytest.mark.parametrize("name", sorted(DURATIONS))
def test_every_duration_takes_10000h_and_no_more(name: str) -> None:
    # BULK_WINDOW may not be longer than BULK_MAX, which is checked with it.
    others = {"bulk_max": "10000h"} if name == "bulk_window" else {}
    loaded = getattr(settings(**others, **{name: "10000h"}), name)
    assert loaded in {timedelta(hours=10_000), (timedelta(hours=10_000),)}

    with pytest.raises(ValidationError) as caught:
        settings(**others, **{name: "10001h"})

    assert [problem["loc"] for problem in caught.value.errors()] == [(name,)]
    assert "'10001h' is longer than 10000h" in str(caught.value)


@pytest.mark.parametrize("value", ["99999999999999999999h", "1000000h", "36000001s", "600001m", "9" * 5000 + "s"])
def test_escalate_after_beyond_10000h_is_refused_in_one_line(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(escalate_after=value)

    assert describe_settings_error(caught.value) == (
        f"ESCALATE_AFTER {value!r} is longer than 10000h, the longest duration a setting takes: "
        "expected a working-time duration after the prompt, such as 24h"
    )


@pytest.mark.parametrize("name", sorted(NUMBERS))
@pytest.mark.parametrize("value", ["-1", "1" + "0" * 30, "9" * 5000])
def test_every_number_is_bounded(name: str, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(**{name: value})

    assert [problem["loc"] for problem in caught.value.errors()] == [(name,)]
    assert describe_settings_error(caught.value).startswith(name.upper() + " ")


@pytest.mark.parametrize("name", ["prompt_min_amount", "debrief_min_amount"])
def test_an_amount_threshold_goes_as_high_as_a_deal_amount(name: str) -> None:
    assert getattr(settings(**{name: "9999999999999999.99"}), name) == Decimal("9999999999999999.99")

    with pytest.raises(ValidationError, match=name):
        settings(**{name: "1e16"})


@pytest.mark.parametrize(
    ("values", "named"),
    [
        # One minute a week: the default 16h reminder alone is 18 years of calendar time away.
        ({"working_hours": "00:00-00:01", "working_days": "sun"}, "REMINDER_AFTER 16h of working time is 960 weeks"),
        (
            {
                "reminder_after": "",
                "escalate_after": "10000h",
                "working_hours": "09:00-17:00",
                "working_days": "mon-thu",
            },
            "ESCALATE_AFTER 10000h of working time is 312 weeks",
        ),
    ],
)
def test_an_offset_a_short_working_week_puts_years_away_is_refused(values: dict[str, str], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(**values)

    line = describe_settings_error(caught.value)
    assert named in line
    assert "it must fall within 260 weeks (5 years)" in line


def test_the_longest_offsets_fit_the_default_working_week() -> None:
    loaded = settings(reminder_after="8h,10000h", escalate_after="10000h")

    assert (loaded.reminder_after[-1], loaded.escalate_after) == (timedelta(hours=10_000), timedelta(hours=10_000))


def test_the_crm_settings_default_to_off_and_hubspots_public_api() -> None:
    loaded = settings()

    assert (loaded.hubspot_client_secret, loaded.salesforce_org_id, loaded.pipedrive_webhook_user) == (None, None, None)
    assert loaded.hubspot_api_url == "https://api.hubapi.com"
    assert loaded.pipedrive_api_url == "https://api.pipedrive.com"
    assert loaded.hubspot_reason_property == "closed_lost_reason"
    assert loaded.salesforce_owner_email_field == "Owner_Email__c"
    assert loaded.reason_aliases == {}


def test_sweep_every_is_ten_minutes_a_duration_or_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings().sweep_every == timedelta(minutes=10)
    assert settings(sweep_every="30s").sweep_every == timedelta(seconds=30)
    monkeypatch.setenv("SWEEP_EVERY", " Off ")
    assert settings().sweep_every is None


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("0s", "SWEEP_EVERY is shorter than 1s (write off to turn the sweep off)"),
        ("never", "SWEEP_EVERY 'never' is not a duration: expected a number with s, m or h, like 90s, 2m or 8h"),
    ],
)
def test_a_bad_sweep_every_is_refused_in_one_line(value: str, said: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(sweep_every=value)

    assert describe_settings_error(caught.value) == (
        f"{said}: expected a duration of at least 1s, such as 10m, or off: how often each CRM's API is swept"
    )


def test_reason_aliases_are_read_as_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASON_ALIASES", '{"Too expensive": "price", "Went with Initech": "competitor"}')

    assert settings().reason_aliases == {"Too expensive": "price", "Went with Initech": "competitor"}


def test_reason_routes_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings().reason_routes == {}
    monkeypatch.setenv("REASON_ROUTES", "missing_feature=C0PRODUCT,price=C0PRICING")

    assert settings().reason_routes == {"missing_feature": ("C0PRODUCT",), "price": ("C0PRICING",)}


def test_a_code_named_twice_in_reason_routes_reaches_both_channels_in_order() -> None:
    routes = parse_reason_routes(" price = C0PRICING , missing_feature=G0PRODUCT, price=C0FINANCE,price=C0PRICING")

    assert routes == {"price": ("C0PRICING", "C0FINANCE"), "missing_feature": ("G0PRODUCT",)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("price", "'price' is not code=channel"),
        ("=C0PRICING", "'=C0PRICING' is not code=channel"),
        ("price=C0PRICING,", "'' is not code=channel"),
        ("price=#pricing", "'#pricing' is not a channel id"),
        ("price=", "'' is not a channel id"),
        ("price=U0DANA001", "'U0DANA001' is not a channel id"),
    ],
)
def test_a_reason_route_that_is_not_code_equals_channel_id_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_reason_routes(text)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"public_url": "bot.example.com"}, "public_url"),
        ({"salesforce_org_id": "00D5g000004XyZ"}, "salesforce_org_id"),
        ({"pipedrive_webhook_user": "closedlost", "pipedrive_api_token": "t"}, "PIPEDRIVE_WEBHOOK_PASSWORD"),
        ({"pipedrive_webhook_user": "u", "pipedrive_webhook_password": "p"}, "PIPEDRIVE_API_TOKEN"),
        ({"hubspot_client_secret": "s"}, "HUBSPOT_TOKEN"),
        ({"salesforce_instance_url": "https://acme.my.salesforce.com"}, "SALESFORCE_CLIENT_ID"),
    ],
)
def test_incomplete_crm_settings_are_refused_naming_what_is_missing(values: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(**values)

    assert named in str(caught.value)


def test_admins_are_nobody_by_default_and_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings().admin_users == frozenset()
    monkeypatch.setenv("ADMIN_USERS", "U0ADMIN01, W0GRID0001")

    assert settings().admin_users == frozenset({"U0ADMIN01", "W0GRID0001"})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"admin_users": "U0ADMIN01,@dana"}, "'@dana' is not a Slack user id"),
        ({"admin_users": "C0CHANNEL"}, "'C0CHANNEL' is not a Slack user id"),
        ({"admin_users": "u0admin01"}, "'u0admin01' is not a Slack user id"),
    ],
)
def test_a_bad_admin_id_is_refused_naming_it(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(**values)

    (problem,) = caught.value.errors()
    assert problem["loc"] == ("admin_users",)
    assert message in problem["msg"]


def test_metrics_are_off_by_default_and_their_port_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings().metrics_port is None
    monkeypatch.setenv("METRICS_PORT", "9464")

    assert settings().metrics_port == 9464


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"metrics_port": 0}, "greater than or equal to 1"),
        ({"metrics_port": 65536}, "less than or equal to 65535"),
        ({"metrics_port": 3000}, "is 3000, the same as PORT"),
        ({"port": 8080, "metrics_port": 8080}, "is 8080, the same as PORT"),
    ],
)
def test_a_bad_metrics_port_is_refused_naming_it(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(**values)

    (problem,) = caught.value.errors()
    assert problem["loc"] == ("metrics_port",)
    assert message in problem["msg"]


def test_secrets_are_not_shown_in_the_repr() -> None:
    assert "xoxb-test-token" not in repr(settings())


# --- the CLI at start-up --------------------------------------------------------------------------

CLOSEDLOST = str(Path(sys.executable).parent / "closedlost")


def run(tmp_path: Path, arguments: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """The bot as an admin starts it: a fresh process, only the environment given, no .env around."""
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **env}
    return subprocess.run(
        arguments, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60, check=False
    )


def serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run(tmp_path, [sys.executable, "-m", "bot", "serve"], **env)


def assert_one_line_naming(result: subprocess.CompletedProcess[str], name: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0]


def assert_one_error_line_naming(result: subprocess.CompletedProcess[str], name: str) -> None:
    """For a failure found after the migrations ran: their INFO log lines may come first; the error
    is the last line, the only one from closedlost itself."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("closedlost:")]
    assert len(errors) == 1, result.stderr
    assert lines[-1] == errors[0], result.stderr
    assert name in errors[0]


GOOD_ENV = {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_SIGNING_SECRET": "signing-secret"}


def test_a_missing_bot_token_stops_start_up_in_one_line(tmp_path: Path) -> None:
    result = serve(tmp_path, SLACK_SIGNING_SECRET="signing-secret")

    assert_one_line_naming(result, "SLACK_BOT_TOKEN")
    assert "missing" in result.stderr


def test_a_port_that_is_not_a_number_stops_start_up_in_one_line(tmp_path: Path) -> None:
    result = serve(tmp_path, **GOOD_ENV, PORT="abc")

    assert_one_line_naming(result, "PORT")
    assert "1 to 65535" in result.stderr


def test_an_unknown_time_zone_stops_start_up_in_one_line(tmp_path: Path) -> None:
    result = serve(tmp_path, **GOOD_ENV, TIMEZONE="Mars/Base")

    assert_one_line_naming(result, "TIMEZONE")
    assert "Mars/Base" in result.stderr


def test_the_currency_is_usd_by_default_and_read_as_a_code(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings().currency == "USD"
    monkeypatch.setenv("CURRENCY", "eur")

    assert settings().currency == "EUR"


def test_a_currency_that_is_no_code_stops_start_up_in_one_line(tmp_path: Path) -> None:
    result = serve(tmp_path, **GOOD_ENV, CURRENCY="dollars")

    assert_one_line_naming(result, "CURRENCY")
    assert "'dollars' is not a currency code" in result.stderr


def test_a_salesforce_webhook_token_a_url_cannot_carry_stops_start_up_in_one_line_without_showing_it(
    tmp_path: Path,
) -> None:
    result = serve(tmp_path, **GOOD_ENV, SALESFORCE_WEBHOOK_TOKEN="secret#part")

    assert_one_line_naming(result, "SALESFORCE_WEBHOOK_TOKEN")
    assert "secret#part" not in result.stderr


def test_a_bulk_max_shorter_than_the_bulk_window_stops_start_up_in_one_line(tmp_path: Path) -> None:
    result = serve(tmp_path, **GOOD_ENV, BULK_WINDOW="10m", BULK_MAX="5m")

    assert_one_line_naming(result, "BULK_MAX")
    assert "shorter than BULK_WINDOW (600s)" in result.stderr and "at least BULK_WINDOW" in result.stderr


def test_http_mode_without_a_signing_secret_stops_start_up_in_one_line(tmp_path: Path) -> None:
    result = serve(tmp_path, SLACK_BOT_TOKEN="xoxb-test-token")

    assert_one_line_naming(result, "SLACK_SIGNING_SECRET")
    assert "SLACK_APP_TOKEN" in result.stderr


def test_an_escalation_beyond_10000h_stops_start_up_in_one_line(tmp_path: Path) -> None:
    result = serve(tmp_path, **GOOD_ENV, ESCALATE_AFTER="99999999999999999999h")

    assert_one_line_naming(result, "ESCALATE_AFTER")
    assert "is longer than 10000h" in result.stderr


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'[[reason]]\ncode = "price\n', id="invalid-toml"),
        pytest.param(b'[[reason]]\ncode = "Price"\nlabel = "Price"\n', id="bad-code"),
        pytest.param(b'[[reason]]\ncode = "price"\nlabel = "Prix \xe9lev\xe9"\n', id="not-utf8"),
    ],
)
def test_a_bad_reasons_file_stops_start_up_in_one_line(tmp_path: Path, content: bytes) -> None:
    reasons = tmp_path / "reasons.toml"
    reasons.write_bytes(content)

    result = serve(tmp_path, **GOOD_ENV, REASONS_FILE=str(reasons))

    assert_one_line_naming(result, "REASONS_FILE")


def test_a_missing_reasons_file_stops_start_up_in_one_line(tmp_path: Path) -> None:
    result = serve(tmp_path, **GOOD_ENV, REASONS_FILE=str(tmp_path / "nowhere.toml"))

    assert_one_line_naming(result, "REASONS_FILE")
    assert "nowhere.toml" in result.stderr


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'"IBM" = ["Big Blue"\n', id="invalid-toml"),
        pytest.param(b'"IBM" = "Big Blue"\n', id="not-a-list"),
        pytest.param(b'"IBM" = ["Big Blue"]\n"Hooli" = ["Big Blue Inc."]\n', id="alias-twice"),
    ],
)
def test_a_bad_competitors_file_stops_start_up_in_one_line(tmp_path: Path, content: bytes) -> None:
    competitors = tmp_path / "competitors.toml"
    competitors.write_bytes(content)

    result = serve(tmp_path, **GOOD_ENV, COMPETITORS_FILE=str(competitors))

    assert_one_line_naming(result, "COMPETITORS_FILE")
    assert "competitors.toml" in result.stderr


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param([CLOSEDLOST, "--help"], id="closedlost"),
        pytest.param([CLOSEDLOST, "serve", "--help"], id="serve"),
        pytest.param([CLOSEDLOST, "migrate", "--help"], id="migrate"),
        pytest.param([CLOSEDLOST, "export", "--help"], id="export"),
        pytest.param([sys.executable, "-m", "bot", "--help"], id="python-m-bot"),
    ],
)
def test_help_works_without_any_setting(tmp_path: Path, arguments: list[str]) -> None:
    result = run(tmp_path, arguments)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: closedlost")
    assert result.stderr == ""


def test_the_top_level_help_lists_the_commands(tmp_path: Path) -> None:
    result = run(tmp_path, [CLOSEDLOST, "--help"])

    assert "serve" in result.stdout
    assert "migrate" in result.stdout
    assert "export" in result.stdout


def test_a_host_that_does_not_resolve_stops_start_up_in_one_line(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'closedlost.db'}"

    result = serve(tmp_path, **GOOD_ENV, DATABASE_URL=database, HOST="no.such.host.invalid")

    assert_one_error_line_naming(result, "HOST")


def test_a_port_in_use_stops_start_up_in_one_line(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'closedlost.db'}"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = serve(tmp_path, **GOOD_ENV, DATABASE_URL=database, HOST="127.0.0.1", PORT=str(port))

    assert_one_error_line_naming(result, "PORT")


def test_reason_aliases_naming_an_unknown_code_stop_start_up_in_one_line(tmp_path: Path) -> None:
    result = serve(tmp_path, **GOOD_ENV, REASON_ALIASES='{"Too expensive": "pricing"}')

    assert_one_line_naming(result, "REASON_ALIASES")
    assert "pricing" in result.stderr


@pytest.mark.parametrize("routes", ["price", "price=#pricing", "=C0PRICING"])
def test_a_badly_shaped_reason_route_stops_start_up_in_one_line(tmp_path: Path, routes: str) -> None:
    result = serve(tmp_path, **GOOD_ENV, REASON_ROUTES=routes)

    assert_one_line_naming(result, "REASON_ROUTES")
    assert "code=channel id" in result.stderr


def test_reason_routes_naming_an_unknown_code_stop_start_up_in_one_line(tmp_path: Path) -> None:
    result = serve(tmp_path, **GOOD_ENV, REASON_ROUTES="price=C0PRICING,pricing=C0PRICING")

    assert_one_line_naming(result, "REASON_ROUTES")
    assert "pricing" in result.stderr


def test_a_bad_admin_id_stops_start_up_in_one_line(tmp_path: Path) -> None:
    result = serve(tmp_path, **GOOD_ENV, ADMIN_USERS="U0ADMIN01,dana")

    assert_one_line_naming(result, "ADMIN_USERS")
    assert "'dana' is not a Slack user id" in result.stderr


def test_a_metrics_port_equal_to_port_stops_start_up_in_one_line(tmp_path: Path) -> None:
    result = serve(tmp_path, **GOOD_ENV, PORT="9000", METRICS_PORT="9000")

    assert_one_line_naming(result, "METRICS_PORT")
    assert "the same as PORT" in result.stderr


def test_a_metrics_port_in_use_stops_start_up_in_one_line(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'closedlost.db'}"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        public = str(free_port())
        result = serve(
            tmp_path, **GOOD_ENV, DATABASE_URL=database, HOST="127.0.0.1", PORT=public, METRICS_PORT=str(port)
        )

    assert_one_error_line_naming(result, "METRICS_PORT")
