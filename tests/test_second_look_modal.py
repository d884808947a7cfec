"""The second look at a pick, over real HTTP: a submission whose explanation points at another reason
is answered with the same modal asking once ("You wrote that they signed with Hooli: was it *Lost to
a competitor*?"); **Switch to it** redraws it with that reason, **Keep my pick** stores the pick with
the suggestion it was confirmed over (reason_entry.confirmed_over)."""

import json
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.views import View
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import ReasonEntry
from tests.bot_client import Answer, BotClient, button, deal
from tests.conftest import make_settings, serve
from tests.fake_slack import FakeSlack
from tests.seed import DANA, SAM, Seed, utc

SIGNALS = [
    pytest.param(
        "price",
        "They signed with Hooli after a two-month pilot.",
        "You wrote that they signed with Hooli: was it *Lost to a competitor*?",
        "competitor",
        "Hooli",
        id="a-choice-of-a-name",
    ),
    pytest.param(
        "terms",
        "initech inc. bundled onboarding for free.",
        "You named initech inc: was it *Lost to a competitor*?",
        "competitor",
        "Initech",
        id="a-competitor-the-team-logged",
    ),
    pytest.param(
        "timing",
        "The champion went dark after the security review.",
        "You wrote “went dark”: was it *No decision / went dark*?",
        "no_decision",
        None,
        id="went-dark",
    ),
    pytest.param(
        "no_decision",
        "Way too expensive for a team of 12 seats.",
        "You wrote “too expensive”: was it *Price / budget*?",
        "price",
        None,
        id="price-words-over-no-decision",
    ),
]


@pytest.fixture
async def opened(bot: BotClient, session_factory: async_sessionmaker[AsyncSession]) -> tuple[str, dict[str, Any]]:
    """Initech, logged by Sam before; Dana's lost deal and her modal for it: (loss id, view)."""
    seed = Seed()
    logged = seed.loss(owner=SAM, lost_at=utc(2026, 11, 10), amount="1000")
    seed.reason(logged, "competitor", logged_at=utc(2026, 11, 10, 1), detail="Initech")
    await seed.save(session_factory)
    await bot.post_deals(deal())
    message, where = await bot.prompt()
    loss_id = button(message, "log_reason")["value"]
    return loss_id, await bot.open_modal(user_id=DANA, value=loss_id, message=where)


def values(code: str, explanation: str, detail: str | None = None) -> dict[str, Any]:
    return {"reason_select": code, "detail_input": detail, "explanation_input": explanation}


def asked_view(answer: Answer, submitted: dict[str, Any]) -> dict[str, Any]:
    """The view Slack shows after `response_action: update`: the same view id, the new content."""
    assert answer.status == 200 and answer.body["response_action"] == "update", answer
    View(**answer.body["view"]).validate_json()  # Block Kit as slack_sdk's models check it
    return {**answer.body["view"], "id": submitted["id"], "hash": "asked"}


def block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


async def stored(bot: BotClient) -> list[tuple[str, str | None, str | None]]:
    """Dana's answers: (code, detail, confirmed_over)."""
    return [(e.reason_code, e.detail, e.confirmed_over) for e in await bot.rows(ReasonEntry) if e.logged_by == DANA]


@pytest.mark.parametrize(("picked", "explanation", "line", "suggested", "competitor"), SIGNALS)
async def test_each_signal_asks_once_in_place_and_keeping_stores_the_pick_with_the_suggestion(
    bot: BotClient, opened, picked: str, explanation: str, line: str, suggested: str, competitor: str | None
) -> None:
    _, view = opened
    before = await bot.snapshot()

    answer = await bot.submit(user_id=DANA, view=view, values=values(picked, explanation))

    again = asked_view(answer, view)
    question = block(again, "second_look")
    assert question["text"]["text"] == line
    assert (question["accessory"]["text"]["text"], question["accessory"]["value"]) == ("Switch to it", suggested)
    assert again["submit"]["text"] == "Keep my pick"
    # The modal is the one submitted, filled as it was: nothing is lost, nothing is stored yet.
    assert block(again, "reason")["element"]["initial_option"]["value"] == picked
    assert block(again, "explanation")["element"]["initial_value"] == explanation
    assert json.loads(again["private_metadata"])["asked"] == {
        "suggested": suggested,
        "over": picked,
        "competitor": competitor,
    }
    assert await bot.snapshot() == before

    kept = await bot.submit(user_id=DANA, view=again, values=values(picked, explanation))

    assert kept.body == ""
    assert await stored(bot) == [(picked, None, suggested)]


@pytest.mark.parametrize(("picked", "explanation", "line", "suggested", "competitor"), SIGNALS)
async def test_switching_redraws_the_modal_with_the_suggestion_and_stores_it(
    bot: BotClient, opened, picked: str, explanation: str, line: str, suggested: str, competitor: str | None
) -> None:
    _, view = opened
    again = asked_view(await bot.submit(user_id=DANA, view=view, values=values(picked, explanation)), view)

    await bot.click_in_view(
        user_id=DANA, view=again, action_id="switch_reason", value=suggested, values=values(picked, explanation)
    )

    (update,) = await bot.slack.wait_for("views.update")
    assert update["view_id"] == view["id"]
    switched = {**update["view"], "id": view["id"], "hash": "switched"}
    View(**update["view"]).validate_json()
    # The reason menu under a block id of its own, so that Slack shows the suggestion, not the pick.
    assert block(switched, "reason_switched")["element"]["initial_option"]["value"] == suggested
    assert block(switched, "explanation")["element"]["initial_value"] == explanation
    assert "second_look" not in [b.get("block_id") for b in switched["blocks"]]
    assert switched["submit"]["text"] == "Save"
    if competitor is not None:
        assert block(switched, "competitor")["element"]["initial_option"]["value"] == competitor
    assert await stored(bot) == []

    saved = await bot.submit(user_id=DANA, view=switched, values=values(suggested, explanation, competitor))

    assert saved.body == ""
    assert await stored(bot) == [(suggested, competitor, None)]


async def test_one_submission_is_never_asked_twice(bot: BotClient, opened) -> None:
    """Asked once, the rep rewrites the explanation with other words that point elsewhere, then picks
    another reason from the menu and back: the answer is stored, without a second question."""
    _, view = opened
    first = "They signed with Hooli after a two-month pilot."
    again = asked_view(await bot.submit(user_id=DANA, view=view, values=values("price", first)), view)

    await bot.pick_reason(user_id=DANA, view=again, code="timing")
    (update,) = await bot.slack.wait_for("views.update")
    redrawn = {**update["view"], "id": view["id"], "hash": "picked"}
    assert json.loads(redrawn["private_metadata"])["asked"]["suggested"] == "competitor"
    answer = await bot.submit(user_id=DANA, view=redrawn, values=values("price", "Ghosted after Hooli's demo."))

    assert answer.body == ""
    assert await stored(bot) == [("price", None, "competitor")]


async def test_a_pick_changed_after_the_question_is_stored_without_the_flag(bot: BotClient, opened) -> None:
    _, view = opened
    first = "The champion went dark after the security review."
    again = asked_view(await bot.submit(user_id=DANA, view=view, values=values("timing", first)), view)

    answer = await bot.submit(user_id=DANA, view=again, values=values("no_champion", first))

    assert answer.body == ""
    assert await stored(bot) == [("no_champion", None, None)]


@pytest.mark.parametrize(
    ("picked", "detail", "explanation"),
    [
        pytest.param("competitor", "Hooli", "They signed with Hooli after a two-month pilot.", id="competitor"),
        pytest.param("competitor", "Initech", "Initech bundled onboarding for free.", id="logged-competitor"),
        pytest.param("no_decision", None, "The champion went dark after the security review.", id="no-decision"),
        pytest.param("stale", None, "Ghosted since the Q2 pipeline review.", id="no-decision-group"),
        pytest.param("price", None, "Way too expensive for a team of 12 seats.", id="price"),
        pytest.param("timing", None, "Budget moved to next fiscal year after the CFO froze spend.", id="timing"),
    ],
)
async def test_no_question_when_the_words_and_the_pick_agree(
    bot: BotClient, opened, picked: str, detail: str | None, explanation: str
) -> None:
    loss_id, view = opened
    if detail is not None:
        await bot.pick_reason(user_id=DANA, view=view, code=picked)
        (update,) = await bot.slack.wait_for("views.update")
        view = {**update["view"], "id": view["id"], "hash": "picked"}

    answer = await bot.submit(user_id=DANA, view=view, values=values(picked, explanation, detail))

    assert answer.body == ""
    assert await stored(bot) == [(picked, detail, None)]


async def test_someone_elses_submission_is_refused_before_any_question(bot: BotClient, opened) -> None:
    _, view = opened
    before = await bot.snapshot()

    answer = await bot.submit(user_id=SAM, view=view, values=values("price", "They signed with Hooli in May."))

    assert answer.body["response_action"] == "update"
    assert "second_look" not in json.dumps(answer.body["view"])
    assert f"belongs to <@{DANA}>" in json.dumps(answer.body["view"]["blocks"])
    assert await bot.snapshot() == before


async def test_a_second_window_is_told_the_reason_is_saved_rather_than_asked(bot: BotClient, opened) -> None:
    loss_id, first = opened
    _, where = await bot.prompt()
    second = await bot.open_modal(user_id=DANA, value=loss_id, message=where)
    assert (await bot.submit(user_id=DANA, view=first, values=values("timing", "Rollout moved to Q3."))).body == ""

    answer = await bot.submit(user_id=DANA, view=second, values=values("timing", "The champion went dark in May."))

    assert answer.body["response_action"] == "update"
    assert "already saved" in json.dumps(answer.body["view"]["blocks"])
    assert "second_look" not in json.dumps(answer.body["view"])
    assert await stored(bot) == [("timing", None, None)]


REASONS_FILE = """\
[[reason]]
code = "price"
label = "Price / budget"

[[reason]]
code = "timing"
label = "Bad timing / postponed"

[[reason]]
code = "freeze"
label = "Spending freeze"
cues = ["procurement freeze", "hiring freeze"]
"""


async def test_a_team_cue_from_the_reasons_file_asks_for_its_reason(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    reasons = tmp_path / "reasons.toml"
    reasons.write_text(REASONS_FILE, encoding="utf-8")
    explanation = "A Procurement Freeze hit every team for Q1."

    async with serve(
        make_settings(database_url, fake_slack.url, reasons_file=reasons), fake_slack, session_factory
    ) as bot:
        await bot.post_deals(deal())
        message, where = await bot.prompt()
        view = await bot.open_modal(user_id=DANA, value=button(message, "log_reason")["value"], message=where)

        answer = await bot.submit(user_id=DANA, view=view, values=values("timing", explanation))

        again = asked_view(answer, view)
        assert block(again, "second_look")["text"]["text"] == (
            "You wrote “Procurement Freeze”: was it *Spending freeze*?"
        )
        await bot.click_in_view(
            user_id=DANA, view=again, action_id="switch_reason", value="freeze", values=values("timing", explanation)
        )
        (update,) = await bot.slack.wait_for("views.update")
        switched = {**update["view"], "id": view["id"], "hash": "switched"}
        assert (await bot.submit(user_id=DANA, view=switched, values=values("freeze", explanation))).body == ""
        assert await stored(bot) == [("freeze", None, None)]
