"""The reason modal over real HTTP: who may log, inline validation, double submissions, edits,
and a deal reopened while the modal was open."""

from datetime import date, timedelta

import aiohttp
import pytest
from sqlalchemy import text

from storage.models import Loss, ReasonEntry
from tests.bot_client import BotClient, button, deal

DANA = "U0DANA001"
GOOD = "Budget moved to next fiscal year after the CFO froze all new vendor spend."


@pytest.fixture
async def prompted(bot: BotClient) -> tuple[str, tuple[str, str]]:
    """A lost deal of Dana's whose DM went out: its loss id and the DM's (channel, ts)."""
    await bot.post_deals(deal())
    message, where = await bot.prompt()
    return button(message, "log_reason")["value"], where


async def submit_timing(bot: BotClient, view: dict, explanation: str = GOOD, user_id: str = DANA):
    return await bot.submit(
        user_id=user_id, view=view, values={"reason_select": "timing", "explanation_input": explanation}
    )


async def test_someone_else_gets_told_whose_deal_it_is(bot: BotClient, prompted) -> None:
    loss_id, where = prompted
    before = await bot.snapshot()

    await bot.click(user_id="U0SAM0001", action_id="log_reason", value=loss_id, message=where)

    (refusal,) = await bot.slack.wait_for("response_url")
    assert refusal["id"] == "click-1"
    assert (refusal["response_type"], refusal["replace_original"]) == ("ephemeral", False)
    assert f"belongs to <@{DANA}>" in refusal["text"]
    assert bot.slack.calls_to("views.open") == []
    assert await bot.snapshot() == before


async def test_a_refusal_reaches_a_click_from_a_conversation_the_bot_is_not_in(bot: BotClient, prompted) -> None:
    """The prompt shared into a DM between Sam and Dana, where the bot is not a member: Slack
    answers chat.postEphemeral there with channel_not_found, the click's response_url still works."""
    loss_id, (_, ts) = prompted
    ephemeral = {"channel": "D0SAMDANA", "user": "U0SAM0001", "text": "?"}
    async with aiohttp.ClientSession() as http, http.post(f"{bot.slack.url}chat.postEphemeral", data=ephemeral) as sent:
        assert await sent.json() == {"ok": False, "error": "channel_not_found"}

    await bot.click(user_id="U0SAM0001", action_id="log_reason", value=loss_id, message=("D0SAMDANA", ts))

    (refusal,) = await bot.slack.wait_for("response_url")
    assert f"belongs to <@{DANA}>" in refusal["text"] and refusal["response_type"] == "ephemeral"
    assert bot.slack.calls_to("views.open") == []


async def test_log_one_reason_for_several_with_nothing_awaiting_says_so(bot: BotClient, prompted) -> None:
    _, where = prompted

    await bot.click(user_id="U0SAM0001", action_id="log_several", value="1", message=where)

    (refusal,) = await bot.slack.wait_for("response_url")
    assert refusal["text"] == "Every one of your closed-lost deals has its reason: there is nothing left to log."
    assert refusal["response_type"] == "ephemeral" and bot.slack.calls_to("views.open") == []


async def test_a_submission_by_someone_else_stores_nothing(bot: BotClient, prompted) -> None:
    loss_id, where = prompted
    view = await bot.open_modal(user_id=DANA, value=loss_id, message=where)
    before = await bot.snapshot()

    answer = await submit_timing(bot, view, user_id="U0SAM0001")

    assert answer.body["response_action"] == "update"
    assert f"belongs to <@{DANA}>" in str(answer.body["view"]["blocks"])
    assert await bot.snapshot() == before


@pytest.mark.parametrize(
    ("values", "block", "says"),
    [
        ({"reason_select": "competitor", "explanation_input": GOOD}, "reason", "competitor"),
        ({"reason_select": "timing", "explanation_input": "n/a"}, "explanation", "Add one detail"),
        ({"reason_select": "timing", "explanation_input": "Bad timing / postponed"}, "explanation", "Add one detail"),
        (
            {"reason_select": "timing", "explanation_input": "the price, the price, the price"},
            "explanation",
            "Add one detail",
        ),
        (
            {"reason_select": "timing", "explanation_input": GOOD, "revisit_input": "2020-01-01"},
            "revisit_none",
            "from today on",
        ),
    ],
)
async def test_bad_answers_are_refused_inline_and_nothing_is_stored(
    bot: BotClient, prompted, values: dict, block: str, says: str
) -> None:
    loss_id, where = prompted
    view = await bot.open_modal(user_id=DANA, value=loss_id, message=where)
    before = await bot.snapshot()

    answer = await bot.submit(user_id=DANA, view=view, values=values)

    assert answer.body["response_action"] == "errors"
    assert says in answer.body["errors"][block]
    assert await bot.snapshot() == before


async def test_a_terse_specific_answer_is_stored(bot: BotClient, prompted) -> None:
    loss_id, where = prompted
    view = await bot.open_modal(user_id=DANA, value=loss_id, message=where)

    answer = await submit_timing(bot, view, explanation="Champion left, deal stalled in legal")

    assert answer.body == ""
    (entry,) = await bot.rows(ReasonEntry)
    assert entry.explanation == "Champion left, deal stalled in legal"


async def test_a_missing_competitor_is_flagged_on_its_own_field(bot: BotClient, prompted) -> None:
    loss_id, where = prompted
    view = await bot.open_modal(user_id=DANA, value=loss_id, message=where)
    await bot.pick_reason(user_id=DANA, view=view, code="competitor")
    (updated,) = await bot.slack.wait_for("views.update")

    answer = await bot.submit(
        user_id=DANA, view=updated["view"], values={"reason_select": "competitor", "explanation_input": GOOD}
    )

    assert answer.body == {
        "response_action": "errors",
        "errors": {"competitor": "Name the competitor who won the deal."},
    }
    assert await bot.rows(ReasonEntry) == []


async def test_a_double_click_makes_one_entry(bot: BotClient, prompted) -> None:
    loss_id, where = prompted
    first = await bot.open_modal(user_id=DANA, value=loss_id, message=where)
    second = await bot.open_modal(user_id=DANA, value=loss_id, message=where)

    assert (await submit_timing(bot, first)).body == ""
    refused = await submit_timing(bot, second, explanation=GOOD + " Second window.")

    assert refused.body["response_action"] == "update"
    assert "already saved" in str(refused.body["view"]["blocks"])
    (entry,) = await bot.rows(ReasonEntry)
    assert entry.explanation == GOOD


async def test_the_same_view_submitted_twice_makes_one_entry(bot: BotClient, prompted) -> None:
    loss_id, where = prompted
    view = await bot.open_modal(user_id=DANA, value=loss_id, message=where)

    assert (await submit_timing(bot, view)).body == ""
    assert (await submit_timing(bot, view)).body == ""

    assert len(await bot.rows(ReasonEntry)) == 1


async def test_an_edit_keeps_the_history_and_updates_the_dm(bot: BotClient, prompted) -> None:
    loss_id, where = prompted
    view = await bot.open_modal(user_id=DANA, value=loss_id, message=where)
    await submit_timing(bot, view)
    (logged,) = await bot.slack.wait_for("chat.update")
    assert button(logged, "edit_reason")["value"] == loss_id

    edit = await bot.open_modal(user_id=DANA, value=loss_id, message=where, action_id="edit_reason")
    explanation = next(b for b in edit["blocks"] if b.get("block_id") == "explanation")
    assert explanation["element"]["initial_value"] == GOOD
    reason = next(b for b in edit["blocks"] if b.get("block_id") == "reason")
    assert reason["element"]["initial_option"]["value"] == "timing"

    revisit = date.today() + timedelta(days=30)
    answer = await bot.submit(
        user_id=DANA,
        view=edit,
        values={
            "reason_select": "no_champion",
            "explanation_input": "Our champion left Acme and the new VP never took a meeting.",
            "revisit_input": revisit.isoformat(),
        },
    )

    assert answer.body == ""
    first, second = await bot.rows(ReasonEntry)
    assert (first.revision, first.reason_code) == (1, "timing")
    assert (second.revision, second.reason_code, second.revisit_on) == (2, "no_champion", revisit)
    updates = await bot.slack.wait_for("chat.update", 2)
    assert "No decision-maker buy-in" in str(updates[1]["blocks"])
    assert (updates[1]["channel"], updates[1]["ts"]) == where


async def test_a_modal_submitted_after_the_deal_reopened_stores_nothing(bot: BotClient, prompted) -> None:
    loss_id, where = prompted
    view = await bot.open_modal(user_id=DANA, value=loss_id, message=where)
    await bot.post_deals(deal(stage="negotiation", changed_at="2026-11-21T09:00:00Z"))
    (cancelled,) = await bot.slack.wait_for("chat.update")
    assert "no reason is needed" in str(cancelled["blocks"])

    answer = await submit_timing(bot, view)

    assert answer.body["response_action"] == "update"
    assert "reopened" in str(answer.body["view"]["blocks"])
    assert await bot.rows(ReasonEntry) == []
    (loss,) = await bot.rows(Loss)
    assert loss.state == "cancelled"


async def test_text_reps_typed_is_escaped_when_echoed(bot: BotClient, prompted) -> None:
    loss_id, where = prompted
    view = await bot.open_modal(user_id=DANA, value=loss_id, message=where)
    await bot.pick_reason(user_id=DANA, view=view, code="competitor")
    (updated,) = await bot.slack.wait_for("views.update")
    explanation = "They said <!channel> loved us & then <@U0BOSS01> picked the other vendor 🙃"

    await bot.submit(
        user_id=DANA,
        view=updated["view"],
        values={"reason_select": "competitor", "detail_input": "Ini<tech>", "explanation_input": explanation},
    )

    (entry,) = await bot.rows(ReasonEntry)
    assert entry.explanation == explanation and entry.detail == "Ini<tech>"
    (logged,) = await bot.slack.wait_for("chat.update")
    shown = str(logged["blocks"])
    assert "&lt;!channel&gt;" in shown and "&lt;@U0BOSS01&gt;" in shown and "&amp;" in shown and "🙃" in shown
    assert "Ini&lt;tech&gt;" in shown
    assert "<!channel>" not in shown and "<@U0BOSS01>" not in shown


async def break_the_database(bot: BotClient) -> None:
    """A real failure, not a mock: the loss table disappears from under the bot."""
    async with bot.session_factory() as session, session.begin():
        await session.execute(text("ALTER TABLE loss RENAME TO loss_gone"))


async def test_a_click_that_fails_on_our_side_tells_the_rep(bot: BotClient, prompted) -> None:
    loss_id, where = prompted
    await break_the_database(bot)

    await bot.click(user_id=DANA, action_id="log_reason", value=loss_id, message=where)

    (answer,) = await bot.slack.wait_for("response_url")
    assert answer["response_type"] == "ephemeral" and "Something went wrong on our side" in answer["text"]
    assert bot.slack.calls_to("views.open") == []


async def test_a_submission_that_fails_on_our_side_says_nothing_was_saved(bot: BotClient, prompted) -> None:
    loss_id, where = prompted
    view = await bot.open_modal(user_id=DANA, value=loss_id, message=where)
    await break_the_database(bot)

    answer = await submit_timing(bot, view)

    assert answer.body["response_action"] == "update"
    assert "nothing was changed" in str(answer.body["view"]["blocks"])
    assert await bot.rows(ReasonEntry) == []
