"""`/closedlost` over real HTTP: every form, signed as Slack signs it, answered from a seeded database
with exact figures, ephemeral."""

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.views.text import day as day_text
from storage.models import LossState, ReasonEntry
from tests.bot_client import BotClient
from tests.seed import DANA, SAM, Seed, days_ago, in_days


def sections(reply: dict[str, Any]) -> list[str]:
    return [block["text"]["text"] for block in reply["blocks"] if block["type"] == "section"]


async def test_stats_for_everyone_over_the_last_30_days(bot: BotClient, team: dict[str, int]) -> None:
    answer = await bot.command("stats 30d", user_id=DANA)

    assert answer.status == 200
    assert answer.body["response_type"] == "ephemeral"
    assert answer.body["text"] == "Everyone's deals, the last 30 days: 5 lost, 1 won."
    assert sections(answer.body) == [
        "*Everyone's deals, the last 30 days*",
        "*5* lost · 13,000 EUR · 32,500.50 USD\n"
        "*1* won · 30,000 USD\n"
        "*Win rate* 17% by count · by value: EUR 0%, USD 48%\n"
        "*Logged* 80% (4 of 5 losses have a reason)\n"
        "*No decision / went dark* 25% of losses with a reason (1)\n"
        "*Reason quality* 0 picks kept over a suggestion (0% of logged losses) · 0 reasons re-coded by a manager",
        "*Reasons* (by deals, share of losses with a reason, value)\n"
        "• Price / budget — *2* (50%) · 12,500.50 USD\n"
        "• Lost to a competitor — *1* (25%) · 20,000 USD\n"
        "• No decision / went dark — *1* (25%) · 8,000 EUR",
    ]


async def test_stats_default_to_30_days_for_everyone(bot: BotClient, team: dict[str, int]) -> None:
    default = await bot.command("stats", user_id=SAM)
    explicit = await bot.command("stats 30d", user_id=SAM)
    assert default.body == explicit.body


async def test_stats_for_one_rep_over_90_days(bot: BotClient, team: dict[str, int]) -> None:
    answer = await bot.command(f"stats 90d <@{DANA}|dana>", user_id=SAM)

    assert sections(answer.body) == [
        f"*<@{DANA}>'s deals, the last 90 days*",
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
    mention_first = await bot.command(f"stats <@{DANA}> 90d", user_id=SAM)
    assert sections(mention_first.body) == sections(answer.body)


async def test_stats_of_all_time_count_deals_without_a_currency_apart(bot: BotClient, team: dict[str, int]) -> None:
    answer = await bot.command("stats all", user_id=DANA)

    summary = sections(answer.body)[1].splitlines()
    assert summary[0] == "*7* lost · 1,000 (no currency) · 13,000 EUR · 39,500.50 USD"
    assert summary[1] == "*2* won · 4,000 EUR · 30,000 USD"
    assert summary[2] == "*Win rate* 22% by count · by value: no currency 0%, EUR 24%, USD 43%"
    assert summary[3] == "*Logged* 71% (5 of 7 losses have a reason)"


async def test_stats_of_a_period_without_deals(bot: BotClient) -> None:
    answer = await bot.command("stats 7d", user_id=DANA)
    assert sections(answer.body) == ["*Everyone's deals, the last 7 days*", "No deals were closed in this period."]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("stats 45d", ":warning: `45d` is not a period: use one of `7d`, `30d`, `90d`, `quarter`, `year`, `all`."),
        (
            "stats @dana",
            ":warning: `@dana` is not someone Slack knows: pick the person from the list as you type `@`.",
        ),
        ("stats 7d 30d", ":warning: `stats` takes one period and one person at most (got `7d 30d`)."),
        ("pending now", ":warning: `pending` takes nothing after it (got `now`)."),
        ("<!channel> hi", ":warning: There is no `&lt;!channel&gt;` command."),
    ],
)
async def test_bad_arguments_get_the_usage_and_what_was_wrong(bot: BotClient, text: str, problem: str) -> None:
    answer = await bot.command(text, user_id=DANA)

    assert answer.status == 200
    assert answer.body["response_type"] == "ephemeral"
    shown = sections(answer.body)
    assert shown[0] == problem
    assert shown[1].startswith("*/closedlost stats* `[7d|30d|90d|quarter|year|all]` `[@user]`")


@pytest.mark.parametrize("text", ["help", "", "HELP"])
async def test_help_and_no_text_get_the_usage(bot: BotClient, text: str) -> None:
    answer = await bot.command(text, user_id=DANA)

    shown = sections(answer.body)
    assert len(shown) == 1
    assert "*/closedlost pending*" in shown[0] and "*/closedlost revisit*" in shown[0]
    assert answer.body["response_type"] == "ephemeral"


async def test_a_command_containing_the_word_payload_is_answered(bot: BotClient, team: dict[str, int]) -> None:
    """Bolt reads a form body with "payload" anywhere in it as empty; the bot reads its fields."""
    unknown = await bot.command("payload", user_id=DANA)
    assert unknown.status == 200
    assert sections(unknown.body)[0] == ":warning: There is no `payload` command."

    in_the_channel_name = await bot.command("stats 30d", user_id=DANA, channel_name="payload-team")
    plain = await bot.command("stats 30d", user_id=DANA)
    assert in_the_channel_name.status == 200
    assert in_the_channel_name.body == plain.body


async def test_pending_lists_my_awaiting_losses_with_the_log_button(bot: BotClient, team: dict[str, int]) -> None:
    answer = await bot.command("pending", user_id=DANA)

    assert answer.body["response_type"] == "ephemeral"
    header, loss = answer.body["blocks"]
    assert header["text"]["text"] == "*1 deal needs a reason*"
    assert answer.body["text"] == "1 deal of yours needs a reason."
    assert loss["text"]["text"].startswith("*Globex &lt;EU&gt;* · Account 3 · 5,000 EUR · lost <!date^")
    assert loss["accessory"]["action_id"] == "log_reason"
    assert loss["accessory"]["value"] == str(team["awaiting"])

    others = await bot.command("pending", user_id=SAM)
    assert sections(others.body) == ["*All caught up* :tada: No deal of yours is waiting for a reason."]


async def test_the_log_button_in_pending_opens_the_modal_and_saves(bot: BotClient, team: dict[str, int]) -> None:
    answer = await bot.command("pending", user_id=DANA)
    value = answer.body["blocks"][1]["accessory"]["value"]

    # A click in an ephemeral message: Slack's container says so, and carries the channel.
    view = await bot.open_modal(user_id=DANA, value=value, message=("C0SALESOPS", "1700000000.000001"))
    saved = await bot.submit(
        user_id=DANA,
        view=view,
        values={"reason_select": "timing", "explanation_input": "Budget moved to next fiscal year, restart in Q2."},
    )
    assert (saved.status, saved.body) == (200, "")
    entries = [entry for entry in await bot.rows(ReasonEntry) if entry.loss_id == int(value)]
    assert [(entry.reason_code, entry.logged_by) for entry in entries] == [("timing", DANA)]

    after = await bot.command("pending", user_id=DANA)
    assert sections(after.body)[0] == "*All caught up* :tada: No deal of yours is waiting for a reason."


async def test_revisit_lists_my_upcoming_revisit_dates(bot: BotClient, team: dict[str, int]) -> None:
    answer = await bot.command("revisit", user_id=DANA)

    assert answer.body["response_type"] == "ephemeral"
    assert sections(answer.body) == [
        "*2 upcoming revisits*\n"
        f"• {day_text(in_days(30))} — *Deal 1* (10,000 USD) · Price / budget\n"
        f"• {day_text(in_days(60))} — *Deal 2* (20,000 USD) · Lost to a competitor",
    ]


async def test_reasons_lists_the_catalogue_by_label(bot: BotClient) -> None:
    """A rep reads labels; the codes, which only the reasons file uses, are for ADMIN_USERS
    (tests/test_admin.py)."""
    answer = await bot.command("reasons", user_id=DANA)

    # Ten reasons to a section: the eleventh begins the second.
    lines = "\n".join(sections(answer.body)).splitlines()
    assert lines[0] == "• *Price / budget* (revisit after 180 days)"
    assert lines[1] == "• *Lost to a competitor* (names the competitor, revisit after 300 days)"
    assert lines[3] == "• *No decision / went dark* (kept apart from real losses, revisit after 90 days)"
    assert "`" not in "\n".join(sections(answer.body))
    assert [line.split("*")[1] for line in lines] == [
        "Price / budget",
        "Lost to a competitor",
        "Bad timing / postponed",
        "No decision / went dark",
        "Missing feature",
        "No need / not a fit",
        "Poor qualification",
        "No decision-maker buy-in",
        "Stale / pipeline clean-up",
        "Contract or legal terms",
        "Other",
    ]


async def test_losses_that_need_no_reason_count_as_lost_but_not_against_logging(
    bot: BotClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    seed = Seed()
    logged = seed.loss(owner=DANA, lost_at=days_ago(2), amount="1000")
    seed.reason(logged, "price", logged_at=days_ago(1))
    seed.loss(owner=DANA, lost_at=days_ago(2), amount="2000", state=LossState.AWAITING)
    seed.loss(owner=DANA, lost_at=days_ago(2), amount="50", state=LossState.EXCLUDED)
    await seed.save(session_factory)

    answer = await bot.command("stats 7d", user_id=DANA)

    summary = sections(answer.body)[1].splitlines()
    assert summary[0] == "*3* lost · 3,050 USD"
    assert summary[2] == "*Logged* 50% (1 of 2 losses has a reason; 1 more needs none)"


async def test_pending_shows_the_newest_twenty_and_counts_them_all(
    bot: BotClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    seed = Seed()
    for day in range(1, 24):
        seed.loss(owner=DANA, lost_at=days_ago(day), amount="1000", state=LossState.AWAITING, name=f"Dana {day}")
    seed.loss(owner=SAM, lost_at=days_ago(1), amount="1000", state=LossState.AWAITING, name="Sam's")
    seed.loss(owner=DANA, lost_at=days_ago(1), amount="1000", state=LossState.CANCELLED, name="Reopened")
    seed.reason(
        seed.loss(owner=DANA, lost_at=days_ago(1), amount="1000", name="Logged"), "price", logged_at=days_ago(1)
    )
    await seed.save(session_factory)

    answer = await bot.command("pending", user_id=DANA)

    header, *losses = sections(answer.body)
    assert header == "*23 deals need a reason*"
    assert [loss.split(" · ")[0] for loss in losses] == [f"*Dana {day}*" for day in range(1, 21)]
    assert answer.body["blocks"][-1]["elements"][0]["text"] == "and 3 more: log these first, or see the DMs."
