"""The bot's settings: environment variables or a `.env` file (DESIGN.md §3).

Every field's description says what it expects, so that a bad value can be reported in one line
that names the setting (see `describe_settings_error`).
"""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.durations import parse_duration, parse_durations
from bot.working_time import WorkingHours, parse_working_days, parse_working_hours


def _duration(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


def _durations(value: object) -> object:
    return parse_durations(value) if isinstance(value, str) else value


# Durations are written with s, m or h suffixes (DESIGN.md §7): "90s", "2m", "8h".
Duration = Annotated[timedelta, BeforeValidator(_duration)]
# A comma list of durations; NoDecode keeps pydantic-settings from reading it as JSON.
Durations = Annotated[tuple[timedelta, ...], NoDecode, BeforeValidator(_durations)]


class DatabaseSettings(BaseSettings):
    """What `closedlost migrate` needs: the database, and nothing of Slack's."""

    model_config = SettingsConfigDict(env_file=".env", env_ignore_empty=True, extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///closedlost.db",
        description="a SQLAlchemy URL, sqlite+aiosqlite:///file.db or postgresql+asyncpg://…",
    )
    log_level: str = Field(default="INFO", description="one of DEBUG, INFO, WARNING, ERROR")

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


class Settings(DatabaseSettings):
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
    deals_webhook_secret: SecretStr | None = Field(
        default=None, description="the HMAC secret that signs POST /webhooks/deals"
    )
    timezone: str = Field(default="UTC", description="an IANA time zone name such as Europe/Paris")
    reasons_file: Path | None = Field(
        default=None, description="the path of a TOML file that replaces the reason catalogue"
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
    working_hours: str = Field(default="09:00-18:00", description="a daily span HH:MM-HH:MM, such as 09:00-18:00")
    working_days: str = Field(default="mon-fri", description="a day range such as mon-fri, or days such as mon,wed,fri")
    team_file: Path | None = Field(
        default=None, description="the path of a CSV file with the header rep_email,manager_email"
    )
    prompt_min_amount: Decimal = Field(
        default=Decimal(0), ge=0, description="a non-negative amount in the deal's own currency"
    )
    bulk_window: Duration = Field(
        default=timedelta(minutes=2), description="a duration such as 2m, to gather a rep's losses into one DM"
    )
    scheduler_tick: Duration = Field(
        default=timedelta(seconds=60), description="a duration of at least 1s, such as 60s"
    )

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

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone") from None
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

    @field_validator("manager_channel")
    @classmethod
    def _channel_id_shape(cls, value: str | None) -> str | None:
        # chat.postMessage takes a name too, but chat.update needs the id, and names change.
        if value is not None and not (value[:1] in "CG" and value[1:].isalnum() and len(value) > 1):
            raise ValueError(f"{value!r} is not a channel id (channel details in Slack show it)")
        return value

    @field_validator("scheduler_tick")
    @classmethod
    def _tick_at_least_a_second(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("is shorter than 1s")
        return value

    @model_validator(mode="after")
    def _http_mode_needs_signing_secret(self) -> "Settings":
        if self.slack_app_token is None and self.slack_signing_secret is None:
            raise ValueError("SLACK_SIGNING_SECRET is required unless SLACK_APP_TOKEN is set")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def hours(self) -> WorkingHours:
        start, end = parse_working_hours(self.working_hours)
        return WorkingHours(start=start, end=end, days=parse_working_days(self.working_days))

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
