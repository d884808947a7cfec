"""The one Slack Web API client every outbound call goes through, and how its errors are sorted."""

import os
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import BinaryIO

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
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


class ConnectionErrorRetryHandler(AsyncConnectionErrorRetryHandler):
    """slack_sdk's retry of a call whose connection failed, except a post that may have reached
    Slack: sent again, it could be posted twice. Such a post fails instead, and the outbox looks for
    it in the conversation before posting it again (`bot.services.delivery`). A post whose
    connection was never made is retried as any call."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if request.url.endswith("/chat.postMessage") and not isinstance(error, aiohttp.ClientConnectorError):
            return False
        return await super()._can_retry_async(state=state, request=request, response=response, error=error)


def create_slack_client(settings: Settings, *, metrics: Metrics | None = None) -> AsyncWebClient:
    """A client on `SLACK_API_URL` that honours 429 + Retry-After and retries 500/503 a few times;
    slack_sdk retries only connection errors by default (here: not a post that may have been sent).
    With `metrics`, every request it makes is counted there by method and outcome.
    https://docs.slack.dev/tools/python-slack-sdk/web#retryhandler"""
    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        retry_handlers=[ConnectionErrorRetryHandler()],
    )
    if metrics is not None:
        # First, so that it sees every answer before a handler that retries takes it.
        client.retry_handlers.insert(0, SlackCallCounter(metrics, base_url=client.base_url))
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
        # A body that is not JSON (a proxy's error page) comes as text: no error code in it.
        code = error.response.data.get("error") if isinstance(error.response.data, dict) else None
        if code in PERMANENT_ERRORS:
            raise PermanentFailure(f"Slack answered {code}") from error
        raise


class UploadFailed(Exception):
    """The file's bytes did not reach Slack's upload URL; the message says what it answered."""


async def upload_file(
    slack: AsyncWebClient, *, file: BinaryIO, filename: str, title: str, channel_id: str, initial_comment: str
) -> str:
    """Shares `file` (an open binary file, read from its start) in `channel_id` through Slack's
    external upload flow, and returns the file's id: `files.getUploadURLExternal`, a POST of the
    bytes to the URL it gives (no token), then `files.completeUploadExternal`.
    https://docs.slack.dev/messaging/working-with-files#uploading_files

    slack_sdk's `files_upload_v2` makes the same three calls but reads the whole file into memory
    first; this streams it from disk, so a large file costs the process no more than a small one.
    """
    length = os.fstat(file.fileno()).st_size
    ticket = await slack.files_getUploadURLExternal(filename=filename, length=length)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(str(ticket["upload_url"]), data=file) as answer,
    ):
        if answer.status != 200:
            raise UploadFailed(f"the upload URL answered HTTP {answer.status}")
    await slack.files_completeUploadExternal(
        files=[{"id": ticket["file_id"], "title": title}], channel_id=channel_id, initial_comment=initial_comment
    )
    return str(ticket["file_id"])
