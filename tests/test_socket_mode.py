"""Socket Mode: with SLACK_APP_TOKEN set, Slack's traffic comes over a WebSocket, and the deal
webhook is still served over HTTP."""

import asyncio
import contextlib
import sys

import pytest

from tests.bot_client import button, deal, eventually
from tests.bot_process import REPOSITORY, bot_environment, free_port
from tests.conftest import make_settings, serve
from tests.fake_slack import Failure, FakeSlack


async def test_socket_mode_serves_slack_over_the_socket_and_webhooks_over_http(
    database_url, fake_slack, session_factory
) -> None:
    settings = make_settings(database_url, fake_slack.url, slack_app_token="xapp-1-test", slack_signing_secret=None)
    async with serve(settings, fake_slack, session_factory) as bot:
        assert (await bot.post_deals(deal())).status == 202
        message, (channel, ts) = await bot.prompt()
        assert fake_slack.calls_to("apps.connections.open")
        acknowledgement = await fake_slack.send_envelope("interactive", log_reason_click(message, channel, ts))

        assert "envelope_id" in acknowledgement
        (opened,) = await fake_slack.wait_for("views.open")
        assert opened["trigger_id"] == "1234.5678.trigger"
        async with bot.http.post("/slack/events", data="payload={}") as response:
            assert response.status == 404


def log_reason_click(message: dict, channel: str, ts: str) -> dict:
    """A block_actions payload as it comes inside a Socket Mode envelope (JSON, not form-encoded)."""
    return {
        "type": "block_actions",
        "user": {"id": "U0DANA001", "team_id": "T0001"},
        "api_app_id": "A0001",
        "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
        "trigger_id": "1234.5678.trigger",
        "team": {"id": "T0001", "domain": "acme"},
        "channel": {"id": channel, "name": "directmessage"},
        "actions": [
            {
                "action_id": "log_reason",
                "block_id": "b",
                "value": button(message, "log_reason")["value"],
                "type": "button",
            }
        ],
    }


@pytest.mark.parametrize("refusal", ["invalid_auth", "not_allowed_token_type"])
async def test_a_token_slack_refuses_stops_serve_with_one_line_naming_it(database_url, fake_slack, refusal) -> None:
    fake_slack.fail("apps.connections.open", Failure(200, error=refusal))
    environment = bot_environment(database_url, fake_slack.url, free_port(), SLACK_APP_TOKEN="xapp-1-test")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", cwd=REPOSITORY, env=environment, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(60):  # before the fix it waited for Slack for ever
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    output = stderr.decode()
    assert process.returncode == 2, output
    assert "Traceback" not in output
    lines = output.strip().splitlines()
    assert [line for line in lines if line.startswith("closedlost:")] == [lines[-1]], output
    assert lines[-1] == (
        f"closedlost: SLACK_APP_TOKEN was refused by Slack ({refusal}): it must be an app-level token "
        "(xapp-…) of this app, with the connections:write scope"
    )
    assert len(fake_slack.calls_to("apps.connections.open")) == 1


async def test_serves_at_once_while_slack_cannot_be_reached_and_connects_once_it_can(
    database_url, session_factory
) -> None:
    port = free_port()  # where Slack will be; nothing listens there yet
    slack = FakeSlack(users_by_email={"dana@example.com": "U0DANA001"})
    settings = make_settings(
        database_url, f"http://127.0.0.1:{port}/api/", slack_app_token="xapp-1-test", slack_signing_secret=None
    )
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(slack.stop)
        async with asyncio.timeout(5):  # at once: before the fix, start-up waited for Slack for ever
            bot = await stack.enter_async_context(serve(settings, slack, session_factory))
            assert await health(bot) == (200, "degraded", "connecting")
            assert (await bot.post_deals(deal())).status == 202

        await slack.start(port)

        await eventually(lambda: is_connected(bot), what="the socket to connect once Slack can be reached")
        acknowledgement = await slack.send_envelope("slash_commands", slash_command("reasons", slack.response_url))
        assert acknowledgement["envelope_id"]
        (answer,) = await slack.wait_for("response_url")
        assert answer["text"] == "The loss reasons reps pick from."


async def test_apps_connections_open_failing_at_start_is_tried_again_until_it_answers(
    database_url, fake_slack, session_factory
) -> None:
    # The client retries a 503 twice itself: these fail the bot's first attempt.
    fake_slack.fail("apps.connections.open", *[Failure(503)] * 3)
    settings = make_settings(database_url, fake_slack.url, slack_app_token="xapp-1-test", slack_signing_secret=None)
    async with serve(settings, fake_slack, session_factory) as bot:
        assert await health(bot) == (200, "degraded", "connecting")

        await eventually(lambda: is_connected(bot), what="the socket to connect once apps.connections.open answers")
        assert len(fake_slack.calls_to("apps.connections.open")) == 4
        acknowledgement = await fake_slack.send_envelope(
            "slash_commands", slash_command("reasons", fake_slack.response_url)
        )
        assert acknowledgement["envelope_id"]
        (answer,) = await fake_slack.wait_for("response_url")
        assert answer["text"] == "The loss reasons reps pick from."


async def health(bot) -> tuple[int, str, str]:
    """The check's HTTP status, its "status" and its "slack_socket"."""
    async with bot.http.get("/healthz") as response:
        body = await response.json()
        return response.status, body["status"], body["slack_socket"]


async def is_connected(bot) -> bool:
    return await health(bot) == (200, "ok", "connected")


def slash_command(text: str, response_url: str) -> dict:
    """`/closedlost {text}` as it comes inside a Socket Mode envelope (JSON, not form-encoded)."""
    return {
        "token": "legacy",
        "team_id": "T0001",
        "team_domain": "acme-sales",
        "channel_id": "C0SALESOPS",
        "channel_name": "sales-ops",
        "user_id": "U0DANA001",
        "user_name": "dana",
        "command": "/closedlost",
        "text": text,
        "api_app_id": "A0001",
        "is_enterprise_install": "false",
        "response_url": f"{response_url}1",
        "trigger_id": "1234.5678.trigger",
    }
