"""The one Slack Web API client every outbound call goes through, and how its errors are sorted."""

from collections.abc import Awaitable

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncSlackResponse, AsyncWebClient

from bot.metrics import Metrics, SlackCallCounter
from bot.settings import Settings

# Errors about this one message or recipient: sending again cannot succeed.
PERMANENT_ERRORS = frozenset(
    {
        "users_not_found",
        "user_not_found",
        "channel_not_found",
        "account_inactive",
        "user_disabled",
        "not_in_channel",
        "is_archived",
        "cannot_dm_bot",
        "message_not_found",
        "cant_update_message",
        "invalid_blocks",
        "msg_too_long",
        "msg_blocks_too_long",
    }
)


class PermanentFailure(Exception):
    """Sending cannot succeed; the message says why, for the loss and the log."""


def create_slack_client(settings: Settings, *, metrics: Metrics | None = None) -> AsyncWebClient:
    """A client on `SLACK_API_URL` that honours 429 + Retry-After and retries 500/503 a few times;
    slack_sdk retries only connection errors by default. With `metrics`, every request it makes is
    counted there by method and outcome.
    https://docs.slack.dev/tools/python-slack-sdk/web#retryhandler"""
    client = AsyncWebClient(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)
    if metrics is not None:
        # First, so that it sees every answer before a handler that retries takes it.
        client.retry_handlers.insert(0, SlackCallCounter(metrics, base_url=client.base_url))
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
    client.retry_handlers.append(AsyncServerErrorRetryHandler(max_retry_count=2))
    return client


async def call(request: Awaitable[AsyncSlackResponse]) -> AsyncSlackResponse:
    """Awaits a Slack Web API call, turning errors that retrying cannot fix into PermanentFailure."""
    try:
        return await request
    except SlackApiError as error:
        code = error.response.get("error")
        if code in PERMANENT_ERRORS:
            raise PermanentFailure(f"Slack answered {code}") from error
        raise
