"""A bulk closure that takes its time is still one DM: a rep's prompt waits until BULK_WINDOW passes
with no new loss of theirs, and at most BULK_MAX after their first.

The bot runs on a clock the test moves, ticking every real second (see tests/test_discipline.py);
after moving the clock, a test waits two ticks to show what was, or was not, sent.
"""

import asyncio
import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Loss, LossState
from tests.bot_client import deal
from tests.clock import TWO_TICKS, Clock, post
from tests.conftest import make_settings, serve
from tests.fake_slack import FakeSlack, posted_to

DANA_DM, SAM_DM = "D0DANA001", "D0SAM0001"
GOOD_EXPLANATION = "Sales ops closed these stale deals in the end-of-quarter clean-up."


def losses_of_dana(arrival: int, count: int) -> list[dict[str, Any]]:
    return [
        deal(deal_id=f"stale-{arrival}-{n}", name=f"Stale deal {arrival}.{n}", url=None, changed_at=None)
        for n in range(count)
    ]


def button(message: dict[str, Any], action_id: str) -> dict[str, Any]:
    for block in message["blocks"]:
        for element in block.get("elements", []) + [block.get("accessory") or {}]:
            if element.get("action_id") == action_id:
                return dict(element)
    raise AssertionError(f"no {action_id} button")


async def test_a_clean_up_trickling_in_for_ten_minutes_makes_one_dm_listing_every_deal(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """Seven arrivals of seven losses for Dana, 90 s apart (under BULK_WINDOW), through two bot
    processes on one database; one loss for Sam in the middle of it."""
    clock = Clock()
    settings = make_settings(database_url, fake_slack.url, bulk_window="2m")
    async with (
        serve(settings, fake_slack, session_factory, clock=clock) as first,
        serve(settings, fake_slack, session_factory, clock=clock) as second,
    ):
        for arrival in range(7):
            await post((first, second)[arrival % 2], clock, *losses_of_dana(arrival, 7))
            if arrival == 0:
                await post(second, clock, deal(deal_id="sam-1", name="Sam's deal", owner_email="sam@example.com"))
            clock.advance(seconds=90)
            await asyncio.sleep(TWO_TICKS)
            assert posted_to(fake_slack, DANA_DM) == [], f"Dana got a DM {arrival * 90 + 90} s into the clean-up"
            if arrival >= 1:
                # Sam's loss came 180 s ago and no other of his since: his DM is out, on its own.
                [sams] = posted_to(fake_slack, SAM_DM)
                assert "Sam's deal" in sams["text"]

        clock.advance(seconds=30)  # BULK_WINDOW after Dana's last loss
        prompt, where = await first.prompt(2)
        await asyncio.sleep(TWO_TICKS)
        assert posted_to(fake_slack, DANA_DM) == [prompt]
        assert len(fake_slack.calls_to("chat.postMessage")) == 2
        assert prompt["text"] == "49 closed-lost deals need a reason."
        assert "Deals 1–40 of 49 · page 1 of 2" in json.dumps(prompt["blocks"], ensure_ascii=False)

        # The paging and the one reason for several act on that one DM, which holds every deal.
        page_next = button(prompt, "page_next")
        await first.click(user_id="U0DANA001", action_id="page_next", value=page_next["value"], message=where)
        [page_two] = await fake_slack.wait_for("chat.update")
        shown = json.dumps(page_two["blocks"], ensure_ascii=False)
        assert "Deals 41–49 of 49 · page 2 of 2" in shown and "Stale deal 6.6" in shown

        several = button(prompt, "log_several")
        await first.click(user_id="U0DANA001", action_id="log_several", value=several["value"], message=where)
        [opened] = await fake_slack.wait_for("views.open")
        menu = opened["view"]["blocks"][0]["element"]
        picked = menu["options"]
        assert len(picked) == 49
        answer = await first.submit(
            user_id="U0DANA001",
            view={**opened["view"], "id": "V0SEVERAL", "hash": "h"},
            values={"deals_select": picked, "reason_select": "price", "explanation_input": GOOD_EXPLANATION},
        )
        assert (answer.status, answer.body) == (200, "")
        states = [loss.state for loss in await first.rows(Loss)]
        assert states.count(LossState.LOGGED) == 49 and states.count(LossState.AWAITING) == 1  # Sam's


async def test_a_stream_that_never_pauses_gets_its_dm_at_bulk_max_and_goes_on_in_the_next(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    settings = make_settings(database_url, fake_slack.url, bulk_window="2m", bulk_max="6m")
    async with serve(settings, fake_slack, session_factory, clock=clock) as bot:
        for arrival in range(4):
            await post(bot, clock, *losses_of_dana(arrival, 1))
            clock.advance(seconds=90)
            if arrival < 3:
                await asyncio.sleep(TWO_TICKS)
                assert posted_to(fake_slack, DANA_DM) == [], f"Dana got a DM {arrival * 90 + 90} s into the stream"

        # 360 s: BULK_MAX after the first loss, though the last came only 90 s ago.
        prompt, _ = await bot.prompt(1)
        assert prompt["text"] == "4 closed-lost deals need a reason."

        # The stream goes on: what comes after the DM makes the next one.
        await post(bot, clock, *losses_of_dana(4, 1))
        clock.advance(seconds=90)
        await asyncio.sleep(TWO_TICKS)
        assert len(posted_to(fake_slack, DANA_DM)) == 1
        clock.advance(seconds=30)
        later, _ = await bot.prompt(2)
        assert later["channel"] == "U0DANA001" and "Stale deal 4.0" in later["text"]
        await asyncio.sleep(TWO_TICKS)
        assert len(posted_to(fake_slack, DANA_DM)) == 2


async def test_a_loss_that_changes_owner_waits_out_the_new_owners_window(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """Reassigned long after its BULK_MAX, the loss starts over: Sam's DM waits BULK_WINDOW."""
    clock = Clock()
    settings = make_settings(database_url, fake_slack.url, bulk_window="2m", bulk_max="5m")
    async with serve(settings, fake_slack, session_factory, clock=clock) as bot:
        await post(bot, clock, deal(changed_at=None))
        clock.advance(minutes=2)
        await bot.prompt(1)
        clock.advance(minutes=30)
        await post(bot, clock, deal(owner_email="sam@example.com", changed_at=None))
        clock.advance(seconds=90)
        await asyncio.sleep(TWO_TICKS)
        assert posted_to(fake_slack, SAM_DM) == []
        clock.advance(seconds=30)
        sams, (channel, _) = await bot.prompt(2)
        assert channel == SAM_DM and "Acme" in sams["text"]
