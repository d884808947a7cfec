"""The bot's settings: environment variables or a `.env` file (README.md, "Settings").

Every field's description says what it expects, so that a bad value can be reported in one line
that names the setting (see `describe_settings_error`). Every setting that is a number or a
duration is bounded at both ends, so that a typo stops start-up rather than overflowing later, once
per loss.
"""

import re
from datetime import timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.durations import parse_duration, parse_durations
from bot.weekly_schedule import WeeklyTime, parse_weekly_time
from bot.working_time import WorkingHours, parse_working_days, parse_working_hours


def _duration(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


def _durations(value: object) -> object:
    return parse_durations(value) if isinstance(value, str) else value


def _duration_or_off(value: object) -> object:
    if isinstance(value, str) and value.strip().lower() == "off":
        return None
    return _duration(value)


# Durations are written with s, m or h suffixes (README.md, "Settings"): "90s", "2m", "8h".
Duration = Annotated[timedelta, BeforeValidator(_duration)]
# A comma list of durations; NoDecode keeps pydantic-settings from reading it as JSON.
Durations = Annotated[tuple[timedelta, ...], NoDecode, BeforeValidator(_durations)]
# A duration, or `off` (None).
DurationOrOff = Annotated[timedelta | None, BeforeValidator(_duration_or_off)]


URL_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,}")


def is_channel_id(value: str) -> bool:
    # chat.postMessage takes a name too, but chat.update needs the id, and names change.
    return value[:1] in "CG" and value[1:].isalnum() and len(value) > 1


USER_ID = re.compile(r"[UW][A-Z0-9]{2,31}")


def is_user_id(value: str) -> bool:
    # U… for a workspace's own users, W… for those of an Enterprise Grid.
    return USER_ID.fullmatch(value) is not None


def parse_user_ids(text: str) -> frozenset[str]:
    """`"U0123ABCD, W0456EFGH"` → those Slack user ids."""
    ids = {part.strip() for part in text.split(",") if part.strip()}
    for user_id in sorted(ids):
        if not is_user_id(user_id):
            raise ValueError(f"{user_id!r} is not a Slack user id (a member's profile has it: More → Copy member ID)")
    return frozenset(ids)


def _user_ids(value: object) -> object:
    return parse_user_ids(value) if isinstance(value, str) else value


# A comma list of Slack user ids; NoDecode keeps pydantic-settings from reading it as JSON.
UserIds = Annotated[frozenset[str], NoDecode, BeforeValidator(_user_ids)]


def parse_reason_routes(text: str) -> dict[str, tuple[str, ...]]:
    """`"missing_feature=C0PRODUCT,price=C0PRICING"` → each reason code's channels, in the order
    given; a code may be named more than once to reach several channels."""
    routes: dict[str, tuple[str, ...]] = {}
    for part in text.split(","):
        code, equals, channel = (piece.strip() for piece in part.partition("="))
        if not equals or not code:
            raise ValueError(f"{part.strip()!r} is not code=channel")
        if not is_channel_id(channel):
            raise ValueError(f"{channel!r} is not a channel id (channel details in Slack show it)")
        if channel not in routes.get(code, ()):
            routes[code] = (*routes.get(code, ()), channel)
    return routes


def _reason_routes(value: object) -> object:
    return parse_reason_routes(value) if isinstance(value, str) else value


ReasonRoutes = Annotated[dict[str, tuple[str, ...]], NoDecode, BeforeValidator(_reason_routes)]


# A threshold compares with deal amounts, which are stored below 10^16 (bot.crm.event.parse_amount).
AMOUNTS_BELOW = Decimal("1e16")
AMOUNT_RANGE = "0 or more and below 10000000000000000"

# How far in calendar time a reminder or escalation offset may reach: 10,000h (the longest duration)
# of a 45-hour working week is 223 weeks.
OFFSET_REACH_WEEKS = 260


def _hours(duration: timedelta) -> str:
    return f"{duration.total_seconds() / 3600:g}h"


class DatabaseSettings(BaseSettings):
    """What `closedlost migrate` needs: the database, and nothing of Slack's."""

    model_config = SettingsConfigDict(env_file=".env", env_ignore_empty=True, extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///closedlost.db",
        description="a SQLAlchemy URL, sqlite+aiosqlite:///file.db or postgresql+asyncpg://…",
    )
    log_level: str = Field(default="INFO", description="one of DEBUG, INFO, WARNING, ERROR")
    log_format: str = Field(default="text", description="text, or json for one JSON object a line")

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        """Accept the URLs hosting platforms hand out and give them the async driver."""
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                value = "postgresql+asyncpg://" + value.removeprefix(prefix)
        if value.startswith("sqlite://"):
            value = "sqlite+aiosqlite://" + value.removeprefix("sqlite://")
        if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("is neither a PostgreSQL nor a SQLite URL")
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("is not a database URL") from None
        if "sslmode" in url.query:
            # libpq's sslmode, as hosting platforms write it, is asyncpg's ssl.
            query = {**url.query, "ssl": url.query["sslmode"]}
            del query["sslmode"]
            value = url.set(query=query).render_as_string(hide_password=False)
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError(f"{value!r} is not a log level")
        return value.upper()

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        if value.lower() not in {"text", "json"}:
            raise ValueError(f"{value!r} is not a log format")
        return value.lower()


class ExportSettings(DatabaseSettings):
    """What `closedlost export` needs: the database, the days its dates name, and the reasons' labels."""

    timezone: str = Field(default="UTC", description="an IANA time zone name such as Europe/Paris")
    reasons_file: Path | None = Field(
        default=None, description="the path of a TOML file that replaces the reason catalogue"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Settings(ExportSettings):
    """Everything `closedlost serve` needs."""

    slack_bot_token: SecretStr = Field(description="the bot token, starting with xoxb-")
    slack_signing_secret: SecretStr | None = Field(
        default=None, description="the app's signing secret (required unless SLACK_APP_TOKEN is set)"
    )
    slack_app_token: SecretStr | None = Field(
        default=None, description="an app-level token starting with xapp-, for Socket Mode"
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/", description="the Slack Web API base URL, http:// or https://"
    )
    host: str = Field(default="0.0.0.0", description="the address the HTTP server listens on")
    port: int = Field(default=3000, ge=1, le=65535, description="a TCP port from 1 to 65535")
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="a TCP port from 1 to 65535 other than PORT, for GET /metrics"
    )
    admin_users: UserIds = Field(
        default=frozenset(), description="a comma list of Slack user ids, such as U0123ABCD,W0456EFGH"
    )
    deals_webhook_secret: SecretStr | None = Field(
        default=None, description="the HMAC secret that signs POST /webhooks/deals"
    )
    manager_channel: str | None = Field(
        default=None, description="the id of the Slack channel for escalations, such as C0123ABCD"
    )
    reminder_after: Durations = Field(
        default=(timedelta(hours=8), timedelta(hours=16)),
        description="increasing working-time durations after the prompt, such as 8h,16h",
    )
    escalate_after: Duration = Field(
        default=timedelta(hours=24), description="a working-time duration after the prompt, such as 24h"
    )
    prompt_anytime: bool = Field(
        default=False, description="true to prompt as soon as a loss is in, false to wait for working hours"
    )
    working_hours: str = Field(default="09:00-18:00", description="a daily span HH:MM-HH:MM, such as 09:00-18:00")
    working_days: str = Field(default="mon-fri", description="a day range such as mon-fri, or days such as mon,wed,fri")
    team_file: Path | None = Field(
        default=None, description="the path of a CSV file with the header rep_email,manager_email"
    )
    competitors_file: Path | None = Field(
        default=None, description='the path of a TOML file of names and their aliases, such as "IBM" = ["Big Blue"]'
    )
    prompt_min_amount: Decimal = Field(
        default=Decimal(0), ge=0, lt=AMOUNTS_BELOW, description=f"an amount in the deal's own currency, {AMOUNT_RANGE}"
    )
    bulk_window: Duration = Field(
        default=timedelta(minutes=2), description="a duration such as 2m, to gather a rep's losses into one DM"
    )
    bulk_max: Duration = Field(
        default=timedelta(minutes=15),
        description="a duration of at least BULK_WINDOW, such as 15m, the longest a rep's prompt waits",
    )
    scheduler_tick: Duration = Field(
        default=timedelta(seconds=60), description="a duration of at least 1s, such as 60s"
    )
    digest_channel: str | None = Field(
        default=None, description="the id of the Slack channel for the weekly digest, such as C0123ABCD"
    )
    digest_schedule: str = Field(
        default="mon 09:00", description="a day name and a time in TIMEZONE, such as mon 09:00"
    )
    currency: str = Field(default="USD", description="the team's main currency, an ISO 4217 code such as USD or EUR")
    debrief_min_amount: Decimal | None = Field(
        default=None, ge=0, lt=AMOUNTS_BELOW, description=f"an amount in the deal's own currency, {AMOUNT_RANGE}"
    )
    database_wait: Duration = Field(
        default=timedelta(seconds=30),
        description="a duration such as 30s, how long serve waits for the database at start",
    )
    reason_routes: ReasonRoutes = Field(
        default_factory=dict, description="a comma list of code=channel id, such as missing_feature=C0PRODUCT"
    )

    # The CRMs (README.md, "Connecting a CRM"). A CRM's webhook answers 503 until its secret is set;
    # writing reasons back is off until its API credentials are set.
    public_url: str | None = Field(
        default=None, description="the bot's public base URL, such as https://bot.example.com"
    )
    reason_aliases: dict[str, str] = Field(
        default_factory=dict,
        description='a JSON object from a CRM loss reason to a reason code, such as {"Too expensive": "price"}',
    )
    hubspot_client_secret: SecretStr | None = Field(
        default=None, description="the HubSpot app's client secret, which signs POST /webhooks/hubspot"
    )
    hubspot_token: SecretStr | None = Field(
        default=None, description="a HubSpot access token with the crm.objects.deals and owners scopes"
    )
    hubspot_api_url: str = Field(
        default="https://api.hubapi.com/", description="the HubSpot API base URL, http:// or https://"
    )
    hubspot_reason_property: str = Field(
        default="closed_lost_reason", description="the deal property that holds the loss reason (empty: none)"
    )
    hubspot_explanation_property: str | None = Field(
        default=None, description="the deal property the rep's explanation is written to"
    )
    hubspot_searches_per_second: float = Field(
        default=5.0,
        gt=0,
        le=1_000_000,
        description="HubSpot's search rate limit, which the sweep and the import keep under",
    )
    salesforce_org_id: str | None = Field(
        default=None, description="the Salesforce organization id (15 or 18 characters, starting with 00D)"
    )
    salesforce_webhook_token: SecretStr | None = Field(
        default=None,
        description="a random string of at least 16 letters, digits, '-', '_', '.' or '~', "
        "given to Salesforce in the endpoint URL (…/webhooks/salesforce?token=…)",
    )
    salesforce_owner_email_field: str = Field(
        default="Owner_Email__c", description="the Opportunity field the outbound message carries the owner's email in"
    )
    salesforce_reason_field: str | None = Field(
        default=None, description="the Opportunity field that holds the loss reason, such as Loss_Reason__c"
    )
    salesforce_explanation_field: str | None = Field(
        default=None, description="the Opportunity field the rep's explanation is written to"
    )
    salesforce_instance_url: str | None = Field(
        default=None, description="the org's My Domain URL, such as https://acme.my.salesforce.com"
    )
    salesforce_client_id: SecretStr | None = Field(
        default=None, description="the consumer key of the external client app (client credentials flow)"
    )
    salesforce_client_secret: SecretStr | None = Field(
        default=None, description="the consumer secret of the external client app (client credentials flow)"
    )
    pipedrive_webhook_user: str | None = Field(
        default=None, description="the HTTP Basic user name given to the Pipedrive webhook"
    )
    pipedrive_webhook_password: SecretStr | None = Field(
        default=None, description="the HTTP Basic password given to the Pipedrive webhook"
    )
    pipedrive_api_token: SecretStr | None = Field(
        default=None, description="a Pipedrive API token, to look up deal owners and write reasons back"
    )
    pipedrive_api_url: str = Field(
        default="https://api.pipedrive.com", description="the Pipedrive API base URL without a version"
    )
    sweep_every: DurationOrOff = Field(
        default=timedelta(minutes=10),
        description="a duration of at least 1s, such as 10m, or off: how often each CRM's API is swept",
    )

    @field_validator("currency")
    @classmethod
    def _currency_code(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{3}", value):
            raise ValueError(f"{value!r} is not a currency code")
        return value.upper()

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("does not start with xoxb-")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("does not start with xapp-")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _api_url_shape(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("is not an http:// or https:// URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("public_url", "hubspot_api_url", "salesforce_instance_url", "pipedrive_api_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("is not an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("metrics_port")
    @classmethod
    def _metrics_apart_from_the_public_port(cls, value: int | None, info: ValidationInfo) -> int | None:
        # The metrics are for the operator's network only: never on the port Slack and the CRMs reach.
        if value is not None and value == info.data.get("port"):
            raise ValueError(f"is {value}, the same as PORT")
        return value

    @field_validator("salesforce_org_id")
    @classmethod
    def _org_id_shape(cls, value: str | None) -> str | None:
        if value is not None and (len(value) not in {15, 18} or not value.isalnum()):
            raise ValueError("is not a 15- or 18-character Salesforce id")
        return value

    @field_validator("salesforce_webhook_token")
    @classmethod
    def _webhook_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # Characters a URL carries as they are, so the admin pastes the token into the endpoint URL unchanged.
        if value is not None and not URL_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("is too short or has characters a URL would have to escape")
        return value

    @field_validator("working_hours")
    @classmethod
    def _working_hours_shape(cls, value: str) -> str:
        parse_working_hours(value)
        return value

    @field_validator("working_days")
    @classmethod
    def _working_days_shape(cls, value: str) -> str:
        parse_working_days(value)
        return value

    @field_validator("manager_channel", "digest_channel")
    @classmethod
    def _channel_id_shape(cls, value: str | None) -> str | None:
        if value is not None and not is_channel_id(value):
            raise ValueError(f"{value!r} is not a channel id (channel details in Slack show it)")
        return value

    @field_validator("digest_schedule")
    @classmethod
    def _digest_schedule_shape(cls, value: str) -> str:
        parse_weekly_time(value)
        return value

    @field_validator("bulk_max")
    @classmethod
    def _bulk_max_at_least_the_window(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        window = info.data.get("bulk_window")
        if window is not None and value < window:
            raise ValueError(f"is shorter than BULK_WINDOW ({int(window.total_seconds())}s)")
        return value

    @field_validator("scheduler_tick")
    @classmethod
    def _tick_at_least_a_second(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("is shorter than 1s")
        return value

    @field_validator("sweep_every")
    @classmethod
    def _sweep_at_least_a_second(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(seconds=1):
            raise ValueError("is shorter than 1s (write off to turn the sweep off)")
        return value

    @model_validator(mode="after")
    def _http_mode_needs_signing_secret(self) -> "Settings":
        if self.slack_app_token is None and self.slack_signing_secret is None:
            raise ValueError("SLACK_SIGNING_SECRET is required unless SLACK_APP_TOKEN is set")
        return self

    @model_validator(mode="after")
    def _offsets_fall_within_reach(self) -> "Settings":
        """Working-time arithmetic walks the calendar a day at a time, per loss: an offset that a short
        working week stretches over decades would cost every loss that walk, and past year 9999 fail."""
        per_week = self.hours.per_week
        offsets = [("REMINDER_AFTER", offset) for offset in self.reminder_after[-1:]]
        for name, offset in [*offsets, ("ESCALATE_AFTER", self.escalate_after)]:
            weeks = offset / per_week
            if weeks > OFFSET_REACH_WEEKS:
                raise ValueError(
                    f"{name} {_hours(offset)} of working time is {weeks:.0f} weeks away with WORKING_HOURS "
                    f"{self.working_hours} on WORKING_DAYS {self.working_days}; it must fall within "
                    f"{OFFSET_REACH_WEEKS} weeks (5 years): shorten it or widen the working hours"
                )
        return self

    @model_validator(mode="after")
    def _crm_settings_come_in_pairs(self) -> "Settings":
        if (self.pipedrive_webhook_user is None) != (self.pipedrive_webhook_password is None):
            raise ValueError("PIPEDRIVE_WEBHOOK_USER and PIPEDRIVE_WEBHOOK_PASSWORD are set together")
        if self.pipedrive_webhook_user is not None and self.pipedrive_api_token is None:
            raise ValueError("PIPEDRIVE_API_TOKEN is required with PIPEDRIVE_WEBHOOK_USER, to look up deal owners")
        if self.hubspot_client_secret is not None and self.hubspot_token is None:
            raise ValueError("HUBSPOT_TOKEN is required with HUBSPOT_CLIENT_SECRET, to fetch the deals")
        salesforce_api = (self.salesforce_instance_url, self.salesforce_client_id, self.salesforce_client_secret)
        if any(value is not None for value in salesforce_api) and None in salesforce_api:
            raise ValueError(
                "SALESFORCE_INSTANCE_URL, SALESFORCE_CLIENT_ID and SALESFORCE_CLIENT_SECRET are set together"
            )
        return self

    @cached_property
    def hours(self) -> WorkingHours:
        start, end = parse_working_hours(self.working_hours)
        return WorkingHours(start=start, end=end, days=parse_working_days(self.working_days))

    @cached_property
    def digest_at(self) -> WeeklyTime:
        return parse_weekly_time(self.digest_schedule)

    @property
    def digest_to(self) -> str | None:
        """Where the weekly digest goes: DIGEST_CHANNEL, else MANAGER_CHANNEL; None: no digest."""
        return self.digest_channel or self.manager_channel

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None


def describe_settings_error(error: ValidationError) -> str:
    """One line per bad setting: its environment name, what is wrong, and what it expects."""
    lines = []
    for problem in error.errors():
        if not problem["loc"]:
            lines.append(f"settings: {problem['msg'].removeprefix('Value error, ')}")
            continue
        name = str(problem["loc"][0])
        field = Settings.model_fields.get(name)
        expected = field.description if field is not None else ""
        what = "is missing" if problem["type"] == "missing" else problem["msg"].removeprefix("Value error, ")
        lines.append(f"{name.upper()} {what}: expected {expected}")
    return "\n".join(lines)
