"""App Home over real HTTP: published on `app_home_opened`, and again after the rep logs a reason."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.views.text import day as day_text
from storage.models import LossState
from tests.bot_client import BotClient
from tests.seed import DANA, SAM, Seed, days_ago, in_days


def texts(view: dict[str, Any]) -> list[str]:
    return [block["text"]["text"] for block in view["blocks"] if block["type"] in ("section", "header")]


async def test_opening_the_home_tab_publishes_my_deals(bot: BotClient, team: dict[str, int]) -> None:
    answer = await bot.open_home(user_id=DANA)
    assert answer.status == 200

    (published,) = await bot.slack.wait_for("views.publish")
    assert published["user_id"] == DANA
    view = published["view"]
    assert view["type"] == "home"
    shown = texts(view)
    assert shown[:2] == ["Your closed-lost deals", "*1 deal needs a reason*"]
    assert shown[2].startswith("*Globex &lt;EU&gt;* · Account 3 · 5,000 EUR · lost <!date^")
    log = next(block["accessory"] for block in view["blocks"] if "accessory" in block)
    assert (log["action_id"], log["value"]) == ("log_reason", str(team["awaiting"]))
    assert shown[3:] == [
        "*2 upcoming revisits*\n"
        f"• {day_text(in_days(30))} — *Deal 1* (10,000 USD) · Price / budget\n"
        f"• {day_text(in_days(60))} — *Deal 2* (20,000 USD) · Lost to a competitor",
        "*Your numbers, the last 90 days*",
        "*4* lost · 5,000 EUR · 37,000 USD\n"
        "*1* won · 30,000 USD\n"
        "*Win rate* 20% by count · by value: EUR 0%, USD 45%\n"
        "*Logged* 75% (3 of 4 losses have a reason)\n"
        "*No decision / went dark* 33% of losses with a reason (1)\n"
        "*Reason quality* 0 picks kept over a suggestion (0% of logged losses) · 0 reasons re-coded by a manager",
        "*Reasons* (by deals, share of losses with a reason, value)\n"
        "• Lost to a competitor — *1* (33%) · 20,000 USD\n"
        "• No decision / went dark — *1* (33%) · 7,000 USD\n"
        "• Price / budget — *1* (33%) · 10,000 USD",
    ]


async def test_opening_the_messages_tab_publishes_nothing(bot: BotClient, team: dict[str, int]) -> None:
    assert (await bot.open_home(user_id=DANA, tab="messages")).status == 200
    # Events are handled in order of arrival here; once Sam's Home is published, Dana's event is done.
    await bot.open_home(user_id=SAM)
    (published,) = await bot.slack.wait_for("views.publish")
    assert published["user_id"] == SAM


async def test_a_new_rep_sees_an_empty_home(bot: BotClient) -> None:
    await bot.open_home(user_id=DANA)
    (published,) = await bot.slack.wait_for("views.publish")
    assert texts(published["view"]) == [
        "Your closed-lost deals",
        "*All caught up* :tada: No deal of yours is waiting for a reason.",
        "*Upcoming revisits:* none planned.",
        "*Your numbers, the last 90 days*",
        "No deals were closed in this period.",
    ]


async def test_logging_from_the_home_tab_publishes_it_again(bot: BotClient, team: dict[str, int]) -> None:
    await bot.open_home(user_id=DANA)
    (first,) = await bot.slack.wait_for("views.publish")
    log = next(block["accessory"] for block in first["view"]["blocks"] if "accessory" in block)

    opened = await click_in_home(bot, user_id=DANA, value=log["value"])
    assert opened["view"]["callback_id"] == "reason_modal"
    view = {**opened["view"], "id": "V0MODAL01", "hash": "h1"}
    saved = await bot.submit(
        user_id=DANA,
        view=view,
        values={
            "reason_select": "timing",
            "explanation_input": "Budget moved to next fiscal year, restart in Q2.",
            "revisit_input": in_days(90).isoformat(),
        },
    )
    assert (saved.status, saved.body) == (200, "")

    _, second = await bot.slack.wait_for("views.publish", 2)
    assert second["user_id"] == DANA
    shown = texts(second["view"])
    assert shown[1] == "*All caught up* :tada: No deal of yours is waiting for a reason."
    assert shown[2].startswith("*3 upcoming revisits*\n")
    assert f"• {day_text(in_days(90))} — *Globex &lt;EU&gt;* (5,000 EUR) · Bad timing / postponed" in shown[2]
    assert "*Logged* 100% (4 of 4 losses have a reason)" in shown[4]


async def test_a_deal_that_is_not_mine_clicked_in_home_says_why_in_a_modal(
    bot: BotClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    seed = Seed()
    sams = seed.loss(owner=SAM, lost_at=days_ago(1), amount="100", state=LossState.AWAITING)
    await seed.save(session_factory)

    opened = await click_in_home(bot, user_id=DANA, value=str(sams.id))

    assert opened["view"]["title"]["text"] == "Nothing to log"
    notice = opened["view"]["blocks"][0]["text"]["text"]
    assert notice == f"This deal belongs to <@{SAM}>: only they can log its reason."
    assert bot.slack.calls_to("chat.postEphemeral") == []


async def test_home_puts_the_count_and_one_action_first_and_the_biggest_deals_first(
    bot: BotClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    seed = Seed()
    for name, amount in [("Small", "1000"), ("No amount", None), ("Big", "90000"), ("Middle", "20000")]:
        seed.loss(owner=DANA, lost_at=days_ago(2), amount=amount, state=LossState.AWAITING, name=name)
    await seed.save(session_factory)

    await bot.open_home(user_id=DANA)
    (published,) = await bot.slack.wait_for("views.publish")
    blocks = published["view"]["blocks"]
    assert blocks[1]["text"]["text"] == "*4 deals need a reason*"
    assert blocks[1]["accessory"]["text"]["text"] == "Log one reason for several"
    listed = [block["text"]["text"].split("*")[1] for block in blocks[2:6]]
    assert listed == ["Big", "Middle", "Small", "No amount"]
    # No deal was won in the period: no win rate at all, rather than a "0%" that says nothing.
    assert not any("Win rate" in text for text in texts(published["view"]))

    opened = await click_in_home(bot, user_id=DANA, value="awaiting", action_id=blocks[1]["accessory"]["action_id"])
    assert opened["view"]["callback_id"] == "several_modal"


async def click_in_home(bot: BotClient, *, user_id: str, value: str, action_id: str = "log_reason") -> dict[str, Any]:
    """A click on the Home tab (Log reason unless said otherwise): the container is the home view, no channel."""
    answer = await bot.post_slack(
        {
            "type": "block_actions",
            "user": {"id": user_id, "username": "rep", "name": "rep", "team_id": "T0001"},
            "api_app_id": "A0001",
            "token": "legacy",
            "container": {"type": "view", "view_id": "V0HOME001"},
            "trigger_id": "1234.5678.trigger",
            "team": {"id": "T0001", "domain": "acme"},
            "enterprise": None,
            "is_enterprise_install": False,
            "view": {"id": "V0HOME001", "type": "home", "blocks": [], "private_metadata": "", "hash": "h0"},
            "state": {"values": {}},
            "actions": [
                {"action_id": action_id, "block_id": "b", "value": value, "type": "button", "action_ts": "1.2"}
            ],
        }
    )
    assert answer.status == 200
    (opened,) = await bot.slack.wait_for("views.open")
    return opened
