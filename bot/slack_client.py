"""The one Slack Web API client every outbound call goes through."""

from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings


def create_slack_client(settings: Settings) -> AsyncWebClient:
    """A client on `SLACK_API_URL` that honours 429 + Retry-After and retries 500/503 a few times;
    slack_sdk retries only connection errors by default.
    https://docs.slack.dev/tools/python-slack-sdk/web#retryhandler"""
    client = AsyncWebClient(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
    client.retry_handlers.append(AsyncServerErrorRetryHandler(max_retry_count=2))
    return client
