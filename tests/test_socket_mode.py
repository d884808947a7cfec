"""Socket Mode: with SLACK_APP_TOKEN set, Slack's traffic comes over a WebSocket, and the deal
webhook is still served over HTTP."""

from tests.bot_client import button, deal
from tests.conftest import make_settings, serve


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
