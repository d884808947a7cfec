"""The Slack client keeps one aiohttp session, and so one pool of kept-alive connections, for the
life of the app, and closes it when the app stops."""

import gc
import warnings

from tests.bot_client import deal, eventually
from tests.conftest import make_settings, serve


async def test_slack_calls_share_kept_alive_connections_closed_when_the_bot_stops(
    database_url, fake_slack, session_factory
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory) as bot:
            # One prompt after the other, so that no two Slack calls are made at the same time.
            for number, email in enumerate(["dana@example.com", "sam@example.com", "dana@example.com"], start=1):
                assert (await bot.post_deals(deal(deal_id=f"D{number}", owner_email=email))).status == 202
                await fake_slack.wait_for("chat.postMessage", number)
        await eventually(lambda: fake_slack.open_connections() == 0, what="the bot to close its connections to Slack")
        gc.collect()

    # users.lookupByEmail and chat.postMessage for each prompt, at least.
    calls = [(call.method, call.client_port) for call in fake_slack.calls]
    assert len(calls) >= 5, calls
    assert len({port for _, port in calls}) == 1, calls
    assert not [warning for warning in caught if "Unclosed" in str(warning.message)]
