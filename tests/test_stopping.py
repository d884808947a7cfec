"""Stopping the bot: what is under way finishes, and nothing is logged as an error."""

import logging

from tests.conftest import make_settings, serve


async def test_stopping_right_after_start_lets_the_first_tick_finish_without_an_error(
    database_url, fake_slack, session_factory, caplog
) -> None:
    # The scheduler's first tick starts with the app: stopping at once finds it under way.
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory):
        pass

    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []
