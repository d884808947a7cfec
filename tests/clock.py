"""A clock the test moves, for the bot's scheduler, and the deal webhook signed at its time."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.bot_client import BotClient, sign_deals

# Long enough for the scheduler (one tick a second) to have run twice: how a test shows that
# nothing more was sent.
TWO_TICKS = 2.5


class Clock:
    """The bot's clock: starts at the real time (request signatures are checked against it) and
    moves only when the test says."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def post(bot: BotClient, clock: Clock, *events: dict[str, Any]) -> None:
    """Posts the events to the deal webhook, signed at the clock's time."""
    body = json.dumps(list(events)).encode()
    answer = await bot.post_deals(body, headers=sign_deals(body, timestamp=int(clock().timestamp())))
    assert answer.status == 202, answer
