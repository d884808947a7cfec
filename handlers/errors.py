"""The last word on errors a listener did not handle: the operator gets the traceback, the user
gets nothing they cannot act on."""

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

logger = logging.getLogger(__name__)


def register(app: AsyncApp) -> None:
    app.error(handle_unexpected_error)


async def handle_unexpected_error(error: Exception, body: dict[str, Any]) -> None:
    logger.error(
        "unhandled error for a %s from user %s",
        body.get("type") or body.get("command") or "request",
        (body.get("user") or {}).get("id") or body.get("user_id"),
        exc_info=error,
    )
