"""Revisit nudges end to end over HTTP: a reason logged with a revisit date becomes a revisit, the
rep gets a DM on that date at the start of their working hours in their own time zone (Dana works
in Tokyo here), and each of its three buttons does what it says. A deal the CRM reopens closes its
revisit as a win-back.

The bot runs on a clock the test moves (see `tests.test_discipline`), with the default working
hours (09:00-18:00, Monday to Friday); the scheduler ticks every real second.
"""

import asyncio
import json
import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.revisits import first_moment
from bot.views.text import day as day_text
from storage.migrate import MIGRATIONS, upgrade_to_head
from storage.models import (
    Deal,
    Loss,
    Message,
    MessageKind,
    OutboxKind,
    OutboxMessage,
    Revisit,
    RevisitState,
)
from tests.bot_client import BotClient, button, deal, eventually, rows
from tests.clock import TWO_TICKS, Clock, post
from tests.conftest import make_settings, serve
from tests.fake_slack import Failure, FakeSlack, posted_to

DANA = "U0DANA001"
SAM = "U0SAM0001"
DANAS_DM = "D0DANA001"
TOKYO = ZoneInfo("Asia/Tokyo")
EXPLANATION = "Initech undercut us by 30% <!channel>; revisit when their contract renews."
LOST_AT = datetime(2026, 11, 20, 15, 4, 5, tzinfo=UTC)  # `changed_at` of `tests.bot_client.deal`
WEDNESDAY, SATURDAY = 2, 5


def in_tokyo(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=TOKYO).astimezone(UTC)


def coming(weekday: int, clock: Clock) -> date:
    """The first `weekday` at least three days after today in Tokyo."""
    day = clock.now.astimezone(TOKYO).date() + timedelta(days=3)
    return day + timedelta(days=(weekday - day.weekday()) % 7)


async def log_reason(
    bot: BotClient, *, loss_id: int, where: tuple[str, str], revisit_on: date | None, action_id: str = "log_reason"
) -> None:
    """Logs (or, with `edit_reason`, edits) Dana's reason through the modal."""
    view = await bot.open_modal(user_id=DANA, value=str(loss_id), message=where, action_id=action_id)
    values = {
        "reason_select": "price",
        "explanation_input": EXPLANATION,
        "revisit_input": revisit_on.isoformat() if revisit_on else None,
    }
    answer = await bot.submit(user_id=DANA, view=view, values=values)
    assert (answer.status, answer.body) == (200, ""), answer


async def lost_and_logged(bot: BotClient, clock: Clock, *, revisit_on: date | None) -> tuple[int, tuple[str, str]]:
    """A deal of Dana's lost, prompted and logged with `revisit_on`; returns its loss and prompt."""
    await post(bot, clock, deal())
    _, where = await bot.prompt(1)
    [loss] = await bot.rows(Loss)
    await log_reason(bot, loss_id=loss.id, where=where, revisit_on=revisit_on)
    return loss.id, where


async def nudged(bot: BotClient, clock: Clock, day: date, number: int = 2) -> tuple[dict[str, Any], tuple[str, str]]:
    """Moves the clock just past 09:00 in Tokyo on `day` and returns the `number`th DM, the nudge."""
    clock.now = in_tokyo(day, 9, 0, 30)
    return await bot.prompt(number)


async def the_revisit(bot: BotClient) -> Revisit:
    [revisit] = await bot.rows(Revisit)
    return revisit


def updates_of(fake_slack: FakeSlack, where: tuple[str, str]) -> list[dict[str, Any]]:
    return [call for call in fake_slack.calls_to("chat.update") if (call["channel"], call["ts"]) == where]


async def answered(
    bot: BotClient, *, action_id: str, revisit_id: int, where: tuple[str, str], user_id: str = DANA
) -> dict[str, Any]:
    """Clicks an answer on the nudge; returns the nudge's next `chat.update` and checks that Dana's
    Home tab was published again."""
    updates, publishes = len(updates_of(bot.slack, where)), len(bot.slack.calls_to("views.publish"))
    answer = await bot.click(user_id=user_id, action_id=action_id, value=str(revisit_id), message=where)
    assert answer.status == 200
    updated = await eventually(lambda: updates_of(bot.slack, where)[updates:], what="the nudge updated")
    published = (await bot.slack.wait_for("views.publish", publishes + 1))[publishes]
    assert published["user_id"] == DANA
    return updated[0]


def has_buttons(message: dict[str, Any]) -> bool:
    return any(name in json.dumps(message["blocks"]) for name in ("revisit_reopened", "revisit_snooze", "revisit_drop"))


async def test_a_revisit_date_nudges_the_rep_at_nine_in_their_time_zone_on_that_date(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_slack.tz_by_user[DANA] = "Asia/Tokyo"
    clock = Clock()
    day = coming(WEDNESDAY, clock)
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory, clock=clock) as bot:
        loss_id, _ = await lost_and_logged(bot, clock, revisit_on=day)
        revisit = await the_revisit(bot)
        assert (revisit.loss_id, revisit.due_on, revisit.state) == (loss_id, day, RevisitState.DUE)

        clock.now = in_tokyo(day - timedelta(days=1), 12)
        await asyncio.sleep(TWO_TICKS)
        clock.now = in_tokyo(day, 8, 59)

        async def waits_for_nine() -> bool:
            return (await the_revisit(bot)).nudge_at == in_tokyo(day, 9)

        await eventually(waits_for_nine, what="the nudge moved to 09:00 in Tokyo")
        assert len(fake_slack.calls_to("chat.postMessage")) == 1, "a nudge went out before the rep's working hours"

        nudge, where = await nudged(bot, clock, day)
        assert where[0] == DANAS_DM
        days = (clock.now - LOST_AT).days
        assert nudge["text"] == (
            f"Worth another try with Acme Corp? Acme — 200 seats was lost {days} days ago: Price / budget."
        )
        shown = json.dumps(nudge["blocks"], ensure_ascii=False)
        for part in ("Worth another try with Acme Corp?", "48,000 USD", f"{days} days ago", "Price / budget"):
            assert part in shown
        assert "&lt;!channel&gt;" in shown and "<!channel>" not in shown
        assert button(nudge, "open_in_crm")["url"] == "https://crm.example.com/deals/0061x00000AbCdE"
        revisit = await the_revisit(bot)
        for action_id, label in (
            ("revisit_reopened", "I reopened it"),
            ("revisit_snooze", "Remind me in 30 days"),
            ("revisit_drop", "Drop it"),
        ):
            assert (button(nudge, action_id)["text"]["text"], button(nudge, action_id)["value"]) == (
                label,
                str(revisit.id),
            )
        assert revisit.nudge_at is None and revisit.nudged_at == clock.now and revisit.state == RevisitState.DUE

        await asyncio.sleep(TWO_TICKS)
        assert len(fake_slack.calls_to("chat.postMessage")) == 2, "the nudge went out twice"


async def test_a_revisit_on_a_saturday_is_nudged_on_monday_morning(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_slack.tz_by_user[DANA] = "Asia/Tokyo"
    clock = Clock()
    saturday = coming(SATURDAY, clock)
    monday = saturday + timedelta(days=2)
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory, clock=clock) as bot:
        await lost_and_logged(bot, clock, revisit_on=saturday)
        clock.now = in_tokyo(saturday, 9, 0, 30)

        async def waits_for_monday() -> bool:
            return (await the_revisit(bot)).nudge_at == in_tokyo(monday, 9)

        await eventually(waits_for_monday, what="the nudge moved to Monday 09:00 in Tokyo")
        assert len(fake_slack.calls_to("chat.postMessage")) == 1

        nudge, where = await nudged(bot, clock, monday)
        assert where[0] == DANAS_DM and "Acme — 200 seats was lost" in nudge["text"]


async def test_reopened_it_counts_a_win_back_and_a_second_answer_changes_nothing(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_slack.tz_by_user[DANA] = "Asia/Tokyo"
    clock = Clock()
    day = coming(WEDNESDAY, clock)
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory, clock=clock) as bot:
        await lost_and_logged(bot, clock, revisit_on=day)
        _, where = await nudged(bot, clock, day)
        revisit = await the_revisit(bot)

        updated = await answered(bot, action_id="revisit_reopened", revisit_id=revisit.id, where=where)
        assert updated["text"] == "Acme — 200 seats: :tada: Reopened — counted as a win-back."
        assert not has_buttons(updated)
        revisit = await the_revisit(bot)
        assert (revisit.state, revisit.closed_by, revisit.closed_at) == (RevisitState.REOPENED, DANA, clock.now)

        again = await answered(bot, action_id="revisit_drop", revisit_id=revisit.id, where=where)
        assert again["text"] == updated["text"]
        assert (await the_revisit(bot)).state == RevisitState.REOPENED


async def test_not_worth_it_drops_the_revisit(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_slack.tz_by_user[DANA] = "Asia/Tokyo"
    clock = Clock()
    day = coming(WEDNESDAY, clock)
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory, clock=clock) as bot:
        await lost_and_logged(bot, clock, revisit_on=day)
        _, where = await nudged(bot, clock, day)
        revisit = await the_revisit(bot)

        updated = await answered(bot, action_id="revisit_drop", revisit_id=revisit.id, where=where)
        assert updated["text"] == "Acme — 200 seats: Dropped: not worth another try."
        assert not has_buttons(updated)
        revisit = await the_revisit(bot)
        assert (revisit.state, revisit.closed_by, revisit.closed_at) == (RevisitState.DROPPED, DANA, clock.now)

        clock.now += timedelta(days=60)
        await asyncio.sleep(TWO_TICKS)
        assert len(fake_slack.calls_to("chat.postMessage")) == 2


async def test_snooze_nudges_again_30_days_later(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_slack.tz_by_user[DANA] = "Asia/Tokyo"
    clock = Clock()
    day = coming(WEDNESDAY, clock)
    later = day + timedelta(days=30)
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory, clock=clock) as bot:
        await lost_and_logged(bot, clock, revisit_on=day)
        _, where = await nudged(bot, clock, day)
        revisit = await the_revisit(bot)

        updated = await answered(bot, action_id="revisit_snooze", revisit_id=revisit.id, where=where)
        assert updated["text"] == f"Acme — 200 seats: :zzz: Snoozed until {day_text(later)}."
        assert not has_buttons(updated)
        revisit = await the_revisit(bot)
        assert (revisit.state, revisit.due_on, revisit.snoozes) == (RevisitState.SNOOZED, later, 1)
        listed = await bot.command("revisit", user_id=DANA)
        assert f"• {day_text(later)} — *Acme — 200 seats*" in json.dumps(listed.body, ensure_ascii=False)

        clock.now = in_tokyo(later - timedelta(days=1), 12)
        await asyncio.sleep(TWO_TICKS)
        assert len(fake_slack.calls_to("chat.postMessage")) == 2

        again, second = await nudged(bot, clock, later, number=3)
        assert second != where and has_buttons(again)
        revisit = await the_revisit(bot)
        assert (revisit.state, revisit.nudged_at, revisit.snoozes) == (RevisitState.DUE, clock.now, 1)


async def test_only_the_deals_owner_can_answer_and_an_unknown_revisit_says_so(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_slack.tz_by_user[DANA] = "Asia/Tokyo"
    clock = Clock()
    day = coming(WEDNESDAY, clock)
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory, clock=clock) as bot:
        await lost_and_logged(bot, clock, revisit_on=day)
        _, where = await nudged(bot, clock, day)
        before = await the_revisit(bot)

        await bot.click(user_id=SAM, action_id="revisit_drop", value=str(before.id), message=where)
        [refused] = await fake_slack.wait_for("response_url")
        assert (refused["response_type"], refused["replace_original"]) == ("ephemeral", False)
        assert (
            refused["text"] == f"This deal belongs to <@{DANA}>: only they can answer its revisit. Nothing was changed."
        )

        await bot.click(user_id=DANA, action_id="revisit_drop", value="999999", message=where)
        unknown = (await fake_slack.wait_for("response_url", 2))[1]
        assert unknown["text"] == "This revisit is no longer tracked by closedlost."
        assert fake_slack.calls_to("chat.postEphemeral") == []

        after = await the_revisit(bot)
        assert (after.state, after.closed_at, after.closed_by) == (RevisitState.DUE, None, None)
        async with session_factory() as session:
            updates = await session.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.message_id == after.message_id, OutboxMessage.kind == OutboxKind.UPDATE
                )
            )
            assert list(updates) == []


async def test_a_deal_reopened_in_the_crm_closes_its_revisit_and_is_never_nudged(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_slack.tz_by_user[DANA] = "Asia/Tokyo"
    clock = Clock()
    day = coming(WEDNESDAY, clock)
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory, clock=clock) as bot:
        await lost_and_logged(bot, clock, revisit_on=day)
        await post(bot, clock, deal(stage="negotiation", changed_at="2026-11-21T10:00:00Z"))
        revisit = await the_revisit(bot)
        assert (revisit.state, revisit.closed_by, revisit.closed_at) == (RevisitState.REOPENED, "generic", clock.now)

        clock.now = in_tokyo(day, 9, 0, 30)
        await asyncio.sleep(TWO_TICKS)
        assert len(fake_slack.calls_to("chat.postMessage")) == 1
        assert [message.kind for message in await bot.rows(Message)] == [MessageKind.PROMPT]


async def test_a_deal_won_back_after_its_nudge_updates_the_nudge(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_slack.tz_by_user[DANA] = "Asia/Tokyo"
    clock = Clock()
    day = coming(WEDNESDAY, clock)
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory, clock=clock) as bot:
        await lost_and_logged(bot, clock, revisit_on=day)
        _, where = await nudged(bot, clock, day)
        await post(bot, clock, deal(stage="closed_won", changed_at=clock.now.isoformat()))

        updated = await eventually(lambda: updates_of(fake_slack, where), what="the nudge updated")
        assert updated[0]["text"] == "Acme — 200 seats: :tada: Reopened in the CRM — counted as a win-back."
        assert not has_buttons(updated[0])
        assert (await the_revisit(bot)).state == RevisitState.REOPENED


async def test_an_edit_moves_the_revisit_date_and_one_that_clears_it_closes_the_revisit(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_slack.tz_by_user[DANA] = "Asia/Tokyo"
    clock = Clock()
    day = coming(WEDNESDAY, clock)
    moved = day + timedelta(days=7)
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory, clock=clock) as bot:
        loss_id, where = await lost_and_logged(bot, clock, revisit_on=day)
        await log_reason(bot, loss_id=loss_id, where=where, revisit_on=moved, action_id="edit_reason")
        revisit = await the_revisit(bot)
        assert (revisit.due_on, revisit.state, revisit.nudge_at) == (moved, RevisitState.DUE, first_moment(moved))

        clock.now = in_tokyo(day, 9, 0, 30)
        await asyncio.sleep(TWO_TICKS)
        assert len(fake_slack.calls_to("chat.postMessage")) == 1, "nudged on the date the edit moved away from"

        await log_reason(bot, loss_id=loss_id, where=where, revisit_on=None, action_id="edit_reason")
        revisit = await the_revisit(bot)
        assert (revisit.state, revisit.closed_by, revisit.nudge_at) == (RevisitState.DONE, DANA, None)
        listed = await bot.command("revisit", user_id=DANA)
        assert listed.body["text"] == "You have no revisits planned."

        clock.now = in_tokyo(moved, 9, 0, 30)
        await asyncio.sleep(TWO_TICKS)
        assert len(fake_slack.calls_to("chat.postMessage")) == 1, "nudged after the date was cleared"


async def test_two_servers_on_one_database_send_one_nudge(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_slack.tz_by_user[DANA] = "Asia/Tokyo"
    clock = Clock()
    day = coming(WEDNESDAY, clock)
    settings = make_settings(database_url, fake_slack.url)
    async with (
        serve(settings, fake_slack, session_factory, clock=clock) as first,
        serve(settings, fake_slack, session_factory, clock=clock),
    ):
        await lost_and_logged(first, clock, revisit_on=day)
        await nudged(first, clock, day)
        await asyncio.sleep(TWO_TICKS)
        assert len(posted_to(fake_slack, DANAS_DM)) == 2  # the prompt and one nudge
        assert [m.kind for m in await first.rows(Message)] == [MessageKind.PROMPT, MessageKind.REVISIT]


def downgrade_to(database_url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url)
    command.downgrade(config, revision)


async def test_a_revisit_date_logged_before_revisits_existed_is_carried_over_and_nudged(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    day = coming(WEDNESDAY, clock)
    await asyncio.to_thread(downgrade_to, database_url, "0004")
    async with session_factory() as session, session.begin():
        lost = Deal(
            source="generic",
            external_id="old-1",
            name="Old deal",
            account="Old Corp",
            amount=None,
            currency=None,
            owner_email="dana@example.com",
            owner_slack_id=DANA,
            stage="closed_lost",
            stage_changed_at=LOST_AT,
            url=None,
            created_at=LOST_AT,
            updated_at=LOST_AT,
        )
        session.add(lost)
        await session.flush()
        # Plain SQL with that schema's columns: the models' own defaults (loss.imported,
        # reason_entry.bulk, rep.name) name columns added since.
        loss_id = await session.scalar(
            text(
                "INSERT INTO loss (deal_id, lost_at, state, reminders_sent, created_at)"
                " VALUES (:deal_id, :at, 'logged', 0, :at) RETURNING id"
            ),
            {"deal_id": lost.id, "at": LOST_AT},
        )
        for revision, revisit_on in ((1, day - timedelta(days=7)), (2, day)):
            await session.execute(
                text(
                    "INSERT INTO reason_entry (loss_id, revision, reason_code, explanation, revisit_on, logged_by,"
                    " logged_at) VALUES (:loss_id, :revision, 'timing', :explanation, :revisit_on, :by, :at)"
                ),
                {
                    "loss_id": loss_id,
                    "revision": revision,
                    "explanation": EXPLANATION,
                    "revisit_on": revisit_on,
                    "by": DANA,
                    "at": LOST_AT,
                },
            )
        await session.execute(
            text("INSERT INTO rep (slack_id, tz, looked_up_at) VALUES (:id, 'Asia/Tokyo', :at)"),
            {"id": DANA, "at": LOST_AT},
        )
    await asyncio.to_thread(upgrade_to_head, database_url)

    revisit = (await rows(session_factory, Revisit))[0]
    assert (revisit.loss_id, revisit.due_on, revisit.state) == (loss_id, day, RevisitState.DUE)
    assert revisit.nudge_at == first_moment(day)
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory, clock=clock) as bot:
        nudge, where = await nudged(bot, clock, day, number=1)
        assert where[0] == DANAS_DM and "Old deal was lost" in nudge["text"]
        assert "Bad timing / postponed" in nudge["text"]


async def test_one_reason_for_several_deals_makes_a_revisit_for_each(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    day = coming(WEDNESDAY, clock)
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory, clock=clock) as bot:
        await post(bot, clock, deal(deal_id="one", name="One"), deal(deal_id="two", name="Two"))
        prompt, where = await bot.prompt(1)
        several = button(prompt, "log_several")
        await bot.click(user_id=DANA, action_id="log_several", value=several["value"], message=where)
        view = (await fake_slack.wait_for("views.open"))[0]["view"]
        answer = await bot.submit(
            user_id=DANA,
            view={**view, "id": "V0SEVERAL", "hash": "h"},
            values={
                "deals_select": view["blocks"][0]["element"]["options"],
                "reason_select": "price",
                "explanation_input": EXPLANATION,
                "revisit_input": day.isoformat(),
            },
        )
        assert (answer.status, answer.body) == (200, "")

        revisits = await bot.rows(Revisit)
        losses = await bot.rows(Loss)
        assert sorted((r.loss_id, r.due_on, r.state) for r in revisits) == [
            (loss.id, day, RevisitState.DUE) for loss in losses
        ]


async def test_a_nudge_slack_refuses_is_logged_naming_the_deal_and_the_revisit_stays_open(
    database_url: str,
    fake_slack: FakeSlack,
    session_factory: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_slack.tz_by_user[DANA] = "Asia/Tokyo"
    clock = Clock()
    day = coming(WEDNESDAY, clock)
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory, clock=clock) as bot:
        await lost_and_logged(bot, clock, revisit_on=day)
        fake_slack.fail("chat.postMessage", Failure(200, error="account_inactive"))
        with caplog.at_level(logging.WARNING, logger="bot.services.delivery"):
            clock.now = in_tokyo(day, 9, 0, 30)
            await eventually(
                lambda: [record for record in caplog.records if "revisit nudge" in record.getMessage()],
                what="the refused nudge logged",
            )

        [logged] = [record.getMessage() for record in caplog.records if "revisit nudge" in record.getMessage()]
        assert "Acme" in logged and "account_inactive" in logged
        revisit = await the_revisit(bot)
        assert (revisit.state, revisit.due_on) == (RevisitState.DUE, day)
        [loss] = await bot.rows(Loss)
        assert loss.delivery_error is None  # the reason was logged: nothing about it failed
