"""One name per competitor, over real HTTP: the reason modal's competitor menu offers the names the
team has logged as the rep types (options requests signed as Slack signs them), the name picked or
typed is stored with its key, and COMPETITORS_FILE merges names the rules cannot."""

from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import LossState, ReasonEntry
from tests.bot_client import BotClient, button, deal
from tests.conftest import make_settings, serve
from tests.fake_slack import FakeSlack
from tests.seed import DANA, SAM, Seed, utc

GOOD = "Initech undercut us by 30% and bundled onboarding for free."


def option(value: str, label: str | None = None) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": label or value, "emoji": True}, "value": value}


async def seed_competitors(session_factory: async_sessionmaker[AsyncSession]) -> None:
    """Initech named three times in three spellings ("Initech" twice), Globex once, a feature that
    matches "init" but is no competitor, an older revision's name, and a cancelled loss's."""
    seed = Seed()
    named = [
        ("competitor", "Initech"),
        ("competitor", "initech inc."),
        ("competitor", "Initech"),
        ("competitor", "INITECH, Inc"),
        ("competitor", "Globex Corp"),
        ("missing_feature", "Initial setup wizard"),
    ]
    for hour, (code, detail) in enumerate(named):
        loss = seed.loss(owner=SAM, lost_at=utc(2026, 11, 10, hour), amount="1000")
        seed.reason(loss, code, logged_at=utc(2026, 11, 10, 20), detail=detail)
    edited = seed.loss(owner=SAM, lost_at=utc(2026, 11, 11), amount="1000")
    seed.reason(edited, "competitor", logged_at=utc(2026, 11, 11, 1), detail="Initrode")
    seed.reason(edited, "price", logged_at=utc(2026, 11, 11, 2), revision=2)
    cancelled = seed.loss(owner=SAM, lost_at=utc(2026, 11, 12), amount="1000", state=LossState.CANCELLED)
    seed.reason(cancelled, "competitor", logged_at=utc(2026, 11, 12, 1), detail="Initrode")
    await seed.save(session_factory)


async def competitor_modal(bot: BotClient) -> dict[str, Any]:
    """Dana's modal for a lost deal, rebuilt with the competitor menu after picking the reason."""
    await bot.post_deals(deal())
    message, where = await bot.prompt()
    view = await bot.open_modal(user_id=DANA, value=button(message, "log_reason")["value"], message=where)
    await bot.pick_reason(user_id=DANA, view=view, code="competitor")
    (updated,) = await bot.slack.wait_for("views.update")
    return {**updated["view"], "id": view["id"]}


async def typed(bot: BotClient, view: dict[str, Any], text: str) -> list[dict[str, Any]]:
    answer = await bot.type_in_menu(
        user_id=DANA, view=view, block_id="competitor", action_id="detail_input", typed=text
    )
    assert answer.status == 200, answer
    return answer.body["options"]


async def test_the_menu_offers_known_competitors_in_their_most_used_spelling_and_the_text_typed(
    bot: BotClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed_competitors(session_factory)
    view = await competitor_modal(bot)
    menu = next(block["element"] for block in view["blocks"] if block.get("block_id") == "competitor")
    assert (menu["type"], menu["action_id"], menu["min_query_length"]) == ("external_select", "detail_input", 1)

    assert await typed(bot, view, "init") == [option("Initech"), option("init", "Use “init”")]
    assert await typed(bot, view, " INITECH, Inc ") == [option("Initech")]
    assert await typed(bot, view, "corp") == [option("Globex Corp"), option("corp", "Use “corp”")]
    assert await typed(bot, view, "Hooli") == [option("Hooli", "Use “Hooli”")]
    assert await typed(bot, view, "e") == [option("Initech"), option("Globex Corp"), option("e", "Use “e”")]
    assert await typed(bot, view, "?") == []


async def test_the_name_picked_in_the_menu_is_stored_with_its_key(bot: BotClient) -> None:
    view = await competitor_modal(bot)

    answer = await bot.submit(
        user_id=DANA,
        view=view,
        values={"reason_select": "competitor", "detail_input": "Initech, Inc.", "explanation_input": GOOD},
    )

    assert answer.body == ""
    (entry,) = await bot.rows(ReasonEntry)
    assert (entry.detail, entry.detail_key) == ("Initech, Inc.", "initech")
    # Once stored, the next rep is offered it.
    assert await typed(bot, view, "initech") == [option("Initech, Inc.")]


async def test_a_competitor_too_long_for_a_name_is_refused_and_nothing_is_stored(bot: BotClient) -> None:
    view = await competitor_modal(bot)
    before = await bot.snapshot()

    answer = await bot.submit(
        user_id=DANA,
        view=view,
        values={"reason_select": "competitor", "detail_input": "I" * 151, "explanation_input": GOOD},
    )

    assert answer.body["response_action"] == "errors"
    assert list(answer.body["errors"]) == ["competitor"] and "150" in answer.body["errors"]["competitor"]
    assert await bot.snapshot() == before
    # Nor is such a name offered as an option, whose value Slack caps at 150 characters.
    assert await typed(bot, view, "I" * 151) == []


async def test_the_competitors_file_merges_names_in_the_menu_and_in_what_is_stored(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    competitors = tmp_path / "competitors.toml"
    competitors.write_text('"Initech" = ["Initrode", "Big Blue"]\n', encoding="utf-8")
    seed = Seed()
    for hour, detail in enumerate(["Initech", "Initrode", "Initrode"]):
        loss = seed.loss(owner=SAM, lost_at=utc(2026, 11, 10, hour), amount="1000")
        seed.reason(loss, "competitor", logged_at=utc(2026, 11, 10, 20), detail=detail)
    await seed.save(session_factory)
    settings = make_settings(database_url, fake_slack.url, competitors_file=competitors)

    async with serve(settings, fake_slack, session_factory) as bot:
        view = await competitor_modal(bot)
        # Initrode, stored before the file merged it (under its own key), counts with Initech, and
        # is the spelling shown: it is the one used most.
        assert await typed(bot, view, "init") == [option("Initrode"), option("init", "Use “init”")]
        assert await typed(bot, view, "big blue") == [option("Initrode")]

        answer = await bot.submit(
            user_id=DANA,
            view=view,
            values={"reason_select": "competitor", "detail_input": "Big Blue", "explanation_input": GOOD},
        )

        assert answer.body == ""
        stored = await bot.rows(ReasonEntry)
        assert (stored[-1].detail, stored[-1].detail_key) == ("Big Blue", "initech")


async def test_one_competitor_for_several_deals_is_stored_with_its_key_on_each(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    settings = make_settings(database_url, fake_slack.url, bulk_window="2s")
    async with serve(settings, fake_slack, session_factory) as bot:
        assert (
            await bot.post_deals([deal(deal_id="a", name="Deal A"), deal(deal_id="b", name="Deal B")])
        ).status == 202
        prompt, where = await bot.prompt()
        await bot.click(
            user_id=DANA, action_id="log_several", value=button(prompt, "log_several")["value"], message=where
        )
        opened = {**(await fake_slack.wait_for("views.open"))[0]["view"], "id": "V0SEVERAL", "hash": "h"}
        await bot.pick_reason(user_id=DANA, view=opened, code="competitor")
        view = {**(await fake_slack.wait_for("views.update"))[0]["view"], "id": "V0SEVERAL"}
        picked = view["blocks"][0]["element"]["options"]

        answer = await bot.submit(
            user_id=DANA,
            view=view,
            values={
                "deals_select": picked,
                "reason_select": "competitor",
                "detail_input": "initech inc.",
                "explanation_input": GOOD,
            },
        )

        assert (answer.status, answer.body) == (200, "")
        stored = await bot.rows(ReasonEntry)
        assert [(entry.detail, entry.detail_key) for entry in stored] == [("initech inc.", "initech")] * 2
