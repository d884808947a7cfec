"""Slack's Socket Mode connection, opened in the background so that the HTTP server, the webhooks
and the workers never wait for Slack.

slack_sdk's aiohttp `SocketModeClient` speaks the protocol and, once connected, keeps the
connection up by itself: when Slack drops the WebSocket or asks the app to reconnect, it asks
`apps.connections.open` for a new URL and connects to it. What it cannot do is tell a token Slack
refuses from a Slack it cannot reach: its `connect()` retries both alike, forever. So the first
connection is made here in its two steps: the URL from `apps.connections.open` (retried with
backoff while Slack cannot be reached; a refused token is reported and not retried), then the
client's own `connect()`.
https://docs.slack.dev/apis/events-api/using-socket-mode
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient

logger = logging.getLogger(__name__)

# apps.connections.open's answers about the token itself: trying again cannot help.
REFUSALS = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
        "missing_scope",
        "no_permission",
        "ekm_access_denied",
        "team_access_not_granted",
        "org_login_required",
    }
)
FIRST_RETRY_SECONDS = 1.0
LONGEST_RETRY_SECONDS = 60.0


class SlackSocket:
    """The Socket Mode connection: `start` it once the event loop runs, `close` it on the way out.

    `on_refused` is called, once, with one line naming SLACK_APP_TOKEN when Slack refuses the token
    at start; the socket then stops trying."""

    def __init__(self, app_token: str, *, on_refused: Callable[[str], None]) -> None:
        self._app_token = app_token
        self._on_refused = on_refused
        self._handler: AsyncSocketModeHandler | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._refused = False

    def start(self, bolt_app: AsyncApp) -> None:
        """Starts connecting in the background and returns at once."""
        # Built here, not in __init__: slack_sdk's client opens its HTTP session and starts its
        # message task when it is built, so it needs the running event loop.
        self._handler = AsyncSocketModeHandler(bolt_app, self._app_token)
        self._connecting = asyncio.create_task(self._connect(self._handler.client), name="slack-socket-connect")

    async def state(self) -> str:
        """Where the connection is: "connected"; "connecting" (at start, and while slack_sdk
        reconnects); or "refused"."""
        if self._refused:
            return "refused"
        if self._handler is not None and await self._handler.client.is_connected():
            return "connected"
        return "connecting"

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._handler is not None:
            await self._handler.close_async()

    async def _connect(self, client: SocketModeClient) -> None:
        delay = FIRST_RETRY_SECONDS
        while True:
            try:
                url = await client.issue_new_wss_url()
            except SlackApiError as error:
                code = error.response.get("error")
                if code in REFUSALS:
                    self._refused = True
                    self._on_refused(
                        f"SLACK_APP_TOKEN was refused by Slack ({code}): it must be an app-level token "
                        "(xapp-…) of this app, with the connections:write scope"
                    )
                    return
                problem = f"apps.connections.open answered {code}"
            # Whatever else stands between the bot and Slack (no route, a refused connection, a
            # timeout, a proxy's error page) may pass: it is logged and tried again.
            except Exception as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                client.wss_uri = url
                await client.connect()
                return
            logger.warning("Socket Mode: Slack cannot be reached (%s); trying again in %.0f s", problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, LONGEST_RETRY_SECONDS)
