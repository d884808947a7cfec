"""The last word on errors a listener did not handle: the operator gets the traceback, the user a
short message instead of silence."""

import contextlib
import logging
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.logs import log_ids

logger = logging.getLogger(__name__)

SOMETHING_WENT_WRONG = "Something went wrong on our side and nothing was changed. Please try again in a minute."


def register(app: AsyncApp) -> None:
    app.error(handle_unexpected_error)


async def handle_unexpected_error(
    error: Exception, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
) -> None:
    user_id = (body.get("user") or {}).get("id") or body.get("user_id")
    logger.error(
        "unhandled error for a %s from user %s",
        body.get("type") or "request",
        user_id,
        exc_info=error,
        extra=log_ids(user=user_id),
    )
    if body.get("type") != "block_actions":
        return
    # As the refusals in handlers.actions: the click's response_url reaches the person anywhere.
    channel_id = (body.get("container") or {}).get("channel_id")
    with contextlib.suppress(SlackApiError, aiohttp.ClientError, TimeoutError):
        if body.get("response_url"):
            await respond(text=SOMETHING_WENT_WRONG, response_type="ephemeral", replace_original=False)
        elif channel_id and user_id:
            await client.chat_postEphemeral(channel=channel_id, user=user_id, text=SOMETHING_WENT_WRONG)
