"""Issue 3 end to end over HTTP: every loss gets its reason, and nobody is spammed.

The bot runs with a clock the test moves, and with working time equal to real time
(`WORKING_HOURS=00:00-24:00`, `WORKING_DAYS=mon-sun`), so a whole prompt → reminders → escalation
cycle takes seconds. The scheduler ticks every real second; after moving the clock, a test waits
for what the next tick sends.
"""

import asyncio
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.periods import week_of
from bot.reasons import DEFAULT_REASONS, Catalogue
from bot.services.digest import build_digest
from bot.views.chasing import EscalationNotice
from bot.views.digest import build_digest_message
from storage.models import Loss, LossState, ReasonEntry
from tests.bot_client import BotClient, deal, eventually
from tests.clock import TWO_TICKS, Clock, post
from tests.conftest import make_settings, serve
from tests.fake_slack import Failure, FakeSlack, posted_to

CATALOGUE = Catalogue(DEFAULT_REASONS)
GOOD_EXPLANATION = "Their CFO froze every new tool purchase until the next fiscal year."
CYCLE = {
    "reminder_after": "1h,2h",
    "escalate_after": "3h",
    "working_hours": "00:00-24:00",
    "working_days": "mon-sun",
    "manager_channel": "C0MANAGERS",
}


async def log_reason(bot: BotClient, *, user_id: str, loss_id: int, message: tuple[str, str]) -> None:
    view = await bot.open_modal(user_id=user_id, value=str(loss_id), message=message)
    answer = await bot.submit(
        user_id=user_id, view=view, values={"reason_select": "price", "explanation_input": GOOD_EXPLANATION}
    )
    assert (answer.status, answer.body) == (200, "")


def team_file(tmp_path: Path) -> str:
    path = tmp_path / "team.csv"
    path.write_text("rep_email,manager_email\ndana@example.com,lee@example.com\n")
    return str(path)


async def test_an_unanswered_loss_is_reminded_twice_then_escalated_and_the_post_shows_the_late_log(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    fake_slack.users_by_email["lee@example.com"] = "U0LEE0001"
    fake_slack.names_by_user["U0DANA001"] = ("Dana Scully", "dana")
    clock = Clock()
    settings = make_settings(database_url, fake_slack.url, team_file=team_file(tmp_path), **CYCLE)
    async with serve(settings, fake_slack, session_factory, clock=clock) as bot:
        await post(bot, clock, deal())
        prompt, (dm, prompt_ts) = await bot.prompt(1)
        assert prompt["channel"] == "U0DANA001"

        clock.advance(minutes=59)
        await asyncio.sleep(TWO_TICKS)
        assert len(fake_slack.calls_to("chat.postMessage")) == 1, "a reminder went out before REMINDER_AFTER"

        clock.advance(minutes=1)
        first = (await fake_slack.wait_for("chat.postMessage", 2))[1]
        assert (first["channel"], first["thread_ts"]) == (dm, prompt_ts)
        assert "Reminder: 1 closed-lost deal still needs a reason" in first["text"]
        assert "log_reason" in json.dumps(first["blocks"])
        assert "open list" not in json.dumps(first["blocks"]), "a reminder before the last spoke of the escalation"

        clock.advance(hours=1)
        second = (await fake_slack.wait_for("chat.postMessage", 3))[2]
        assert (second["channel"], second["thread_ts"]) == (dm, prompt_ts)
        # The last reminder before the escalation says what happens next (today or tomorrow in the
        # rep's zone, depending on the hour the test runs).
        assert re.search(r"(Later today|Tomorrow) this goes on the team's open list", json.dumps(second["blocks"]))

        clock.advance(hours=1)
        escalation = (await fake_slack.wait_for("chat.postMessage", 4))[3]
        assert escalation["channel"] == "C0MANAGERS"
        headline = escalation["blocks"][0]["text"]["text"]
        assert headline.startswith(":wave: <@U0LEE0001>: dana has 1 closed-lost deal still open"), headline
        assert "48,000 USD" in headline and "waiting since <!date^" in headline
        everything = json.dumps([escalation["text"], escalation["blocks"]], ensure_ascii=False)
        assert "<@U0DANA001>" not in everything, "the escalation pinged the rep"
        assert set(re.findall(r"<@(\w+)>", everything)) == {"U0LEE0001"}, "it mentions someone besides the manager"
        assert "Acme — 200 seats" in everything
        assert len(posted_to(fake_slack, dm)) == 3, "the rep got an extra DM when escalated"

        [loss] = await bot.rows(Loss)
        assert loss.prompted_at is not None and loss.reminders_sent == 2 and loss.escalated_at is not None
        assert loss.last_reminded_at is not None and loss.last_reminded_at < loss.escalated_at

        await log_reason(bot, user_id="U0DANA001", loss_id=loss.id, message=(dm, prompt_ts))

        def escalation_updated() -> dict[str, Any] | None:
            return next((call for call in fake_slack.calls_to("chat.update") if call["channel"] == "C0MANAGERS"), None)

        updated = await eventually(escalation_updated, what="the escalation post updated")
        assert "logged late: Price" in json.dumps(updated["blocks"])
        assert updated["blocks"][0]["text"]["text"] == ":white_check_mark: dana has logged every reason below."

        reminder_ts = {ts for channel, ts in fake_slack.messages if channel == dm and ts != prompt_ts}
        assert len(reminder_ts) == 2

        def reminders_updated() -> list[dict[str, Any]] | None:
            calls = [call for call in fake_slack.calls_to("chat.update") if call["ts"] in reminder_ts]
            return calls if len(calls) == 2 else None

        for call in await eventually(reminders_updated, what="both reminders updated"):
            assert call["text"] == ":white_check_mark: Done: the deal in this reminder has its reason."
            assert "Needs a reason" not in json.dumps(call["blocks"]) and "log_reason" not in json.dumps(call["blocks"])
        [loss] = await bot.rows(Loss)
        assert loss.state == LossState.LOGGED and loss.logged_at is not None

        clock.advance(hours=10)
        await asyncio.sleep(TWO_TICKS)
        assert len(fake_slack.calls_to("chat.postMessage")) == 4, "something was sent after the reason was logged"


async def test_a_reopen_cuts_the_cycle_short(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    settings = make_settings(database_url, fake_slack.url, **CYCLE)
    async with serve(settings, fake_slack, session_factory, clock=clock) as bot:
        await post(bot, clock, deal())
        await bot.prompt(1)
        clock.advance(minutes=30)
        await post(bot, clock, deal(stage="negotiation", changed_at="2026-11-20T16:00:00Z"))
        updated = (await fake_slack.wait_for("chat.update"))[0]
        assert "no reason is needed" in updated["text"]

        clock.advance(hours=5)
        await asyncio.sleep(TWO_TICKS)
        assert len(fake_slack.calls_to("chat.postMessage")) == 1, "a reopened deal was reminded or escalated"
        [loss] = await bot.rows(Loss)
        assert loss.state == LossState.CANCELLED and loss.reminders_sent == 0 and loss.escalated_at is None


async def test_a_reminder_survives_a_500_and_a_429_and_goes_out_once(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    settings = make_settings(database_url, fake_slack.url, **CYCLE)
    async with serve(settings, fake_slack, session_factory, clock=clock) as bot:
        await post(bot, clock, deal())
        _, (dm, _) = await bot.prompt(1)
        fake_slack.fail("chat.postMessage", Failure(500), Failure(429, retry_after=1))
        clock.advance(hours=1)

        def reminders() -> list[dict[str, Any]]:
            return [message for message in posted_to(fake_slack, dm) if "Reminder" in message["text"]]

        await eventually(reminders, what="the reminder")
        await asyncio.sleep(TWO_TICKS)
        assert len(reminders()) == 1
        assert len(fake_slack.calls_to("chat.postMessage")) == 4  # the prompt, the 500, the 429, the reminder


async def test_a_burst_of_300_losses_makes_one_paginated_dm_and_the_several_modal_logs_them(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    settings = make_settings(database_url, fake_slack.url, bulk_window="2s")
    async with serve(settings, fake_slack, session_factory) as bot:
        for batch in range(3):
            events = [
                deal(deal_id=f"bulk-{n}", name=f"Stale deal {n}", amount=1000 + n)
                for n in range(batch * 100, (batch + 1) * 100)
            ]
            answer = await bot.post_deals(events)
            assert answer.status == 202, answer
        prompt, where = await bot.prompt(1)
        await asyncio.sleep(TWO_TICKS)
        assert len(fake_slack.calls_to("chat.postMessage")) == 1
        assert len(fake_slack.calls) == 2, fake_slack.calls  # users.lookupByEmail and chat.postMessage
        assert prompt["text"] == "300 closed-lost deals need a reason."
        assert len(prompt["blocks"]) <= 50
        assert json.dumps(prompt["blocks"]).count('"log_reason"') == 40
        assert "Deals 1–40 of 300 · page 1 of 8" in json.dumps(prompt["blocks"], ensure_ascii=False)

        next_page = _button(prompt, "page_next")
        await bot.click(user_id="U0DANA001", action_id="page_next", value=next_page["value"], message=where)
        page_two = (await fake_slack.wait_for("chat.update"))[0]
        assert "Deals 41–80 of 300 · page 2 of 8" in json.dumps(page_two["blocks"], ensure_ascii=False)
        assert "Stale deal 40" in json.dumps(page_two["blocks"]) and "Stale deal 39*" not in json.dumps(
            page_two["blocks"]
        )

        several = _button(prompt, "log_several")
        await bot.click(user_id="U0DANA001", action_id="log_several", value=several["value"], message=where)
        view = (await fake_slack.wait_for("views.open"))[0]["view"]
        menu = view["blocks"][0]["element"]
        assert menu["type"] == "multi_static_select" and len(menu["option_groups"]) == 3
        picked = [option for group in menu["option_groups"] for option in group["options"]]
        assert len(picked) == 300

        answer = await bot.submit(
            user_id="U0DANA001",
            view={**view, "id": "V0SEVERAL", "hash": "h"},
            values={"deals_select": picked, "reason_select": "price", "explanation_input": GOOD_EXPLANATION},
        )
        assert answer.status == 200 and answer.body == "", answer
        entries = await bot.rows(ReasonEntry)
        assert len(entries) == 300 and {entry.reason_code for entry in entries} == {"price"}
        assert {loss.state for loss in await bot.rows(Loss)} == {LossState.LOGGED}

        def all_logged() -> dict[str, Any] | None:
            return next(
                (
                    call
                    for call in fake_slack.calls_to("chat.update")
                    if "Every deal here has its reason" in call["text"]
                ),
                None,
            )

        await eventually(all_logged, what="the DM updated to show every reason logged")


async def test_two_schedulers_on_one_database_send_each_message_once(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    settings = make_settings(database_url, fake_slack.url, **{**CYCLE, "bulk_window": "2m"})
    async with (
        serve(settings, fake_slack, session_factory, clock=clock) as first,
        serve(settings, fake_slack, session_factory, clock=clock),
    ):
        reps = {"dana@example.com": "D0DANA001", "sam@example.com": "D0SAM0001"}
        for n in range(20):
            await post(first, clock, deal(deal_id=f"two-{n}", owner_email=list(reps)[n % 2]))
        clock.advance(minutes=2)
        await eventually(lambda: all(posted_to(fake_slack, dm) for dm in reps.values()), what="a DM for each rep")
        for hours, expected in ((1, 2), (1, 3), (1, 3)):
            clock.advance(hours=hours)
            await asyncio.sleep(TWO_TICKS)
            for dm in reps.values():
                assert len(posted_to(fake_slack, dm)) == expected, [
                    (m["text"], m.get("thread_ts")) for m in posted_to(fake_slack, dm)
                ]
        escalations = posted_to(fake_slack, "C0MANAGERS")
        assert len(escalations) == 2, [m["text"] for m in escalations]
        prompts = [m for dm in reps.values() for m in posted_to(fake_slack, dm) if "thread_ts" not in m]
        assert [m["text"] for m in prompts] == ["10 closed-lost deals need a reason."] * 2


async def test_small_deals_and_prompt_false_are_recorded_but_not_prompted(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    settings = make_settings(database_url, fake_slack.url, prompt_min_amount="1000")
    async with serve(settings, fake_slack, session_factory) as bot:
        await bot.post_deals(
            [deal(deal_id="small", name="Small deal", amount=999), deal(deal_id="quiet", prompt=False)]
        )
        await bot.post_deals(deal(deal_id="big", name="Big deal", amount=1000))
        prompt, _ = await bot.prompt(1)
        assert "Big deal" in prompt["text"]
        await asyncio.sleep(TWO_TICKS)
        assert len(fake_slack.calls_to("chat.postMessage")) == 1
        losses = {loss.deal_id: loss for loss in await bot.rows(Loss)}
        states = sorted((loss.state, loss.excluded_because or "") for loss in losses.values())
        assert states == [
            (LossState.AWAITING, ""),
            (LossState.EXCLUDED, "the CRM sent prompt: false"),
            (LossState.EXCLUDED, "the amount is below PROMPT_MIN_AMOUNT (1000)"),
        ]


async def test_a_bad_prompt_flag_is_refused_and_nothing_is_stored(bot: BotClient) -> None:
    before = await bot.snapshot()
    answer = await bot.post_deals(deal(prompt="no"))
    assert answer.status == 400
    assert answer.body == {"errors": [{"index": 0, "field": "prompt", "message": "must be true or false: 'no'"}]}
    assert await bot.snapshot() == before


async def test_a_reassigned_deal_follows_the_new_owner_and_the_old_dm_says_so(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    settings = make_settings(database_url, fake_slack.url, **CYCLE)
    async with serve(settings, fake_slack, session_factory, clock=clock) as bot:
        await post(bot, clock, deal())
        _, (dana_dm, _) = await bot.prompt(1)
        clock.advance(minutes=30)
        await post(bot, clock, deal(owner_email="sam@example.com", changed_at="2026-11-20T15:30:00Z"))
        new_prompt, (sam_dm, _) = await bot.prompt(2)
        assert sam_dm == "D0SAM0001" and "Acme — 200 seats" in new_prompt["text"]

        def old_dm_names_sam() -> dict[str, Any] | None:
            updates = fake_slack.calls_to("chat.update")
            return next((call for call in updates if "now belongs to <@U0SAM0001>" in call["text"]), None)

        old = await eventually(old_dm_names_sam, what="the old owner's DM updated to name the new owner")
        assert old["channel"] == dana_dm

        clock.advance(minutes=45)
        await asyncio.sleep(TWO_TICKS)
        assert len(posted_to(fake_slack, dana_dm)) == 1, "the old owner was reminded"
        assert posted_to(fake_slack, sam_dm) == [new_prompt], "the new owner's first reminder came too early"
        clock.advance(minutes=15)
        reminder = (await fake_slack.wait_for("chat.postMessage", 3))[2]
        assert reminder["channel"] == sam_dm and "Reminder" in reminder["text"]


def _button(message: dict[str, Any], action_id: str) -> dict[str, Any]:
    for block in message["blocks"]:
        for element in block.get("elements", []) + [block.get("accessory") or {}]:
            if element.get("action_id") == action_id:
                return dict(element)
    raise AssertionError(f"no {action_id} button")


async def test_a_reminder_due_outside_the_reps_working_hours_waits_for_their_next_morning(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_slack.tz_by_user["U0DANA001"] = "Asia/Tokyo"
    clock = Clock()
    settings = make_settings(database_url, fake_slack.url, reminder_after="8h", escalate_after="100h")
    async with serve(settings, fake_slack, session_factory, clock=clock) as bot:
        await post(bot, clock, deal())
        _, (dm, _) = await bot.prompt(1)
        # A Saturday noon in Tokyo, weeks after the prompt: the reminder is overdue, but not now.
        tokyo = ZoneInfo("Asia/Tokyo")
        local = (clock.now.astimezone(tokyo) + timedelta(days=14)).replace(hour=12, minute=0, second=0, microsecond=0)
        saturday = local + timedelta(days=(5 - local.weekday()) % 7)
        clock.now = saturday.astimezone(UTC)

        monday_nine = (saturday + timedelta(days=2)).replace(hour=9).astimezone(UTC)

        async def deferred() -> bool:
            [loss] = await bot.rows(Loss)
            return loss.reminder_due_at == monday_nine

        await eventually(deferred, what="the reminder moved to Monday 09:00 in Tokyo")
        assert len(posted_to(fake_slack, dm)) == 1

        clock.now = monday_nine + timedelta(seconds=30)
        reminder = (await fake_slack.wait_for("chat.postMessage", 2))[1]
        assert reminder["channel"] == dm and "Reminder" in reminder["text"]


async def test_a_loss_that_comes_in_at_night_is_prompted_at_the_start_of_the_next_working_hours(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    # The rep has never been looked up, so their zone is TIMEZONE's.
    paris = ZoneInfo("Europe/Paris")
    clock = Clock()
    local = clock.now.astimezone(paris) + timedelta(days=1)
    tuesday_night = (local + timedelta(days=(1 - local.weekday()) % 7)).replace(
        hour=23, minute=0, second=0, microsecond=0
    )
    wednesday_nine = (tuesday_night + timedelta(days=1)).replace(hour=9).astimezone(UTC)
    clock.now = tuesday_night.astimezone(UTC)
    settings = make_settings(database_url, fake_slack.url, prompt_anytime=False, timezone="Europe/Paris")
    async with serve(settings, fake_slack, session_factory, clock=clock) as bot:
        await post(bot, clock, deal())
        await asyncio.sleep(TWO_TICKS)
        assert fake_slack.calls_to("chat.postMessage") == [], "a loss at 23:00 buzzed the rep at once"

        clock.now = wednesday_nine - timedelta(minutes=1)
        await asyncio.sleep(TWO_TICKS)
        assert fake_slack.calls_to("chat.postMessage") == [], "the prompt went out before working hours"

        clock.now = wednesday_nine
        prompt = (await fake_slack.wait_for("chat.postMessage"))[0]
        assert prompt["channel"] == "U0DANA001"
        [loss] = await bot.rows(Loss)
        assert loss.prompted_at == wednesday_nine


async def test_a_clean_up_of_25_deals_is_answered_in_one_click_and_the_digest_counts_it_apart(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    settings = make_settings(database_url, fake_slack.url, bulk_window="2s")
    async with serve(settings, fake_slack, session_factory) as bot:
        events = [deal(deal_id=f"stale-{n}", name=f"Stale deal {n}", amount=1000 + n) for n in range(25)]
        assert (await bot.post_deals(events)).status == 202
        prompt, where = await bot.prompt(1)
        blocks = json.dumps(prompt["blocks"], ensure_ascii=False)
        assert prompt["blocks"][1]["text"]["text"] == "25 deals closed together — a pipeline clean-up?"
        assert "I'll log reasons" in blocks and "Log one reason for several" not in blocks
        clean_up = _button(prompt, "log_clean_up")
        assert clean_up["style"] == "primary" and _button(prompt, "log_several")["value"] == clean_up["value"]

        # Another rep's click on it logs nothing.
        await bot.click(user_id="U0SAM0001", action_id="log_clean_up", value=clean_up["value"], message=where)
        await fake_slack.wait_for("response_url")
        assert await bot.rows(ReasonEntry) == []

        await bot.click(user_id="U0DANA001", action_id="log_clean_up", value=clean_up["value"], message=where)

        async def all_logged() -> bool:
            return {loss.state for loss in await bot.rows(Loss)} == {LossState.LOGGED}

        await eventually(all_logged, what="every loss of the DM logged")
        entries = await bot.rows(ReasonEntry)
        assert len(entries) == 25
        assert {(entry.reason_code, entry.explanation, entry.bulk) for entry in entries} == {("stale", "", True)}

        def dm_updated() -> dict[str, Any] | None:
            updates = fake_slack.calls_to("chat.update")
            return next((call for call in updates if "Every deal here has its reason" in call["text"]), None)

        done = await eventually(dm_updated, what="the DM updated to show every reason logged")
        assert "log_clean_up" not in json.dumps(done["blocks"])

        now = datetime.now(UTC)
        week = week_of(date(2026, 11, 20), tz=UTC, today=now.date())  # the week the deals were lost
        digest = await build_digest(
            session_factory=session_factory, catalogue=CATALOGUE, week=week, now=now, tz=UTC, currency="USD"
        )
        assert digest.bulk_answers == 25
        text = json.dumps(build_digest_message(digest, CATALOGUE).as_kwargs(), ensure_ascii=False)
        assert "Bulk clean-ups: 25 deals were logged in one click as a pipeline clean-up." in text


def test_the_last_reminder_names_the_day_of_the_escalation_in_the_reps_zone() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    # Tuesday 2026-12-01 22:00 in Tokyo.
    now = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)

    def sentence(**later: float) -> str:
        return EscalationNotice(at=now + timedelta(**later), now=now, tz=tokyo).sentence()

    assert sentence(hours=1) == "Later today this goes on the team's open list, unless a reason is logged first."
    # 11 hours later is Wednesday 09:00 in Tokyo, though still Tuesday in UTC.
    assert sentence(hours=11).startswith("Tomorrow this goes on the team's open list")
    assert sentence(days=3).startswith("On Friday this goes")
    assert sentence(days=10).startswith("On Dec 11 this goes")
