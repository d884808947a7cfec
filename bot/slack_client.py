"""The one Slack Web API client every outbound call goes through, and how its errors are sorted."""

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncSlackResponse, AsyncWebClient

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


def create_slack_client(settings: Settings) -> AsyncWebClient:
    """A client on `SLACK_API_URL` that honours 429 + Retry-After and retries 500/503 a few times;
    slack_sdk retries only connection errors by default.
    https://docs.slack.dev/tools/python-slack-sdk/web#retryhandler"""
    client = AsyncWebClient(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
    client.retry_handlers.append(AsyncServerErrorRetryHandler(max_retry_count=2))
    return client


@asynccontextmanager
async def connection_pool(client: AsyncWebClient) -> AsyncIterator[None]:
    """Gives `client` one aiohttp session until the block ends, so that its calls share kept-alive
    connections. Without one, slack_sdk opens a new session, and so a new connection (and TLS
    handshake), for every call. The session gets the client's `timeout`, which slack_sdk applies
    only to the sessions it opens itself."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=client.timeout)) as session:
        client.session = session
        try:
            yield
        finally:
            client.session = None


async def call(request: Awaitable[AsyncSlackResponse]) -> AsyncSlackResponse:
    """Awaits a Slack Web API call, turning errors that retrying cannot fix into PermanentFailure."""
    try:
        return await request
    except SlackApiError as error:
        code = error.response.get("error")
        if code in PERMANENT_ERRORS:
            raise PermanentFailure(f"Slack answered {code}") from error
        raise
