"""The admin view over real HTTP: `/closedlost admin` and the bottom of an admin's Home tab list what
Slack refused and the CRM jobs that failed, with a Retry that works once the cause is fixed; anyone
else is refused and changes nothing."""

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from slack_sdk.models.views import View
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.periods import PeriodName, period_named
from bot.reasons import DEFAULT_REASONS, Catalogue
from bot.views.admin import build_admin_reply
from bot.views.data import (
    AdminPanel,
    AwaitingDeal,
    Backlog,
    ClosedStats,
    CrmActivity,
    FailedJob,
    Fix,
    Home,
    RefusedMessage,
    UpcomingRevisit,
)
from bot.views.home import build_home_view
from storage.models import CrmJob, CrmJobState, Deal, Loss, LossState, OutboxMessage, OutboxState
from tests.bot_client import Answer, BotClient, deal, eventually
from tests.conftest import make_settings, serve
from tests.fake_crm import FakeCrm
from tests.fake_slack import FakeSlack
from tests.test_hubspot import PUBLIC_URL, SECRET, sign_hubspot, stage_change

ADMIN = "U0ADMIN01"
DANA = "U0DANA001"
GHOST_EMAIL = "ghost@example.com"
GHOST = "U0GHOST01"
CATALOGUE = Catalogue(DEFAULT_REASONS)


@pytest.fixture
async def bot(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> AsyncIterator[BotClient]:
    """The bot with one admin, and HubSpot connected to the fake CRM."""
    settings = make_settings(
        database_url,
        fake_slack.url,
        admin_users=ADMIN,
        public_url=PUBLIC_URL,
        hubspot_client_secret=SECRET,
        hubspot_token="pat-na1-test-token",
        hubspot_api_url=fake_crm.url,
    )
    async with serve(settings, fake_slack, session_factory) as client:
        yield client


def sections(blocks: list[dict[str, Any]]) -> list[str]:
    return [block["text"]["text"] for block in blocks if block["type"] in ("section", "header")]


def retry_button(blocks: list[dict[str, Any]], action_id: str) -> dict[str, Any]:
    """The first Retry button of that kind: a section's accessory."""
    return next(block["accessory"] for block in blocks if block.get("accessory", {}).get("action_id") == action_id)


async def refused_prompt(bot: BotClient) -> Loss:
    """A deal whose owner's email no Slack user has: its prompt is refused for good."""
    answer = await bot.post_deals(deal(deal_id="GHOST-1", name="Ghost <deal>", owner_email=GHOST_EMAIL))
    assert answer.status == 202

    async def refused() -> Loss | None:
        return next((loss for loss in await bot.rows(Loss) if loss.delivery_error), None)

    return await eventually(refused, what="the ghost deal's prompt to be refused")


async def click_retry(
    bot: BotClient, *, user_id: str, action_id: str, value: str, in_home: bool = False
) -> dict[str, Any] | None:
    """Retry clicked in the `/closedlost admin` reply (an ephemeral message: the answer goes to its
    response_url, returned here) or on the Home tab (no response_url; returns None)."""
    before = len(bot.slack.calls_to("response_url"))
    container: dict[str, Any] = (
        {"type": "view", "view_id": "V0HOME001"}
        if in_home
        else {"type": "message", "message_ts": "1700000000.000300", "channel_id": "C0SALESOPS", "is_ephemeral": True}
    )
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": "someone", "name": "someone", "team_id": "T0001"},
        "api_app_id": "A0001",
        "token": "legacy",
        "container": container,
        "trigger_id": "1234.5678.trigger",
        "team": {"id": "T0001", "domain": "acme"},
        "enterprise": None,
        "is_enterprise_install": False,
        "state": {"values": {}},
        "actions": [{"action_id": action_id, "block_id": "b", "value": value, "type": "button", "action_ts": "1.2"}],
    }
    if in_home:
        payload["view"] = {"id": "V0HOME001", "type": "home", "blocks": [], "private_metadata": "", "hash": "h0"}
    else:
        payload["channel"] = {"id": "C0SALESOPS", "name": "sales-ops"}
        payload["response_url"] = f"{bot.slack.response_url}{before + 1}"
    answer = await bot.post_slack(payload)
    assert answer == Answer(200, ""), answer
    if in_home:
        return None
    return (await bot.slack.wait_for("response_url", before + 1))[before]


async def dm_to(bot: BotClient, user_id: str) -> dict[str, Any]:
    def sent() -> dict[str, Any] | None:
        return next((m for (channel, _), m in bot.slack.messages.items() if channel == "D" + user_id[1:]), None)

    return await eventually(sent, what=f"a DM to {user_id}")


# --- a refused prompt, listed and retried --------------------------------------------------------


async def test_a_refused_prompt_is_listed_and_retry_delivers_it_once_slack_knows_the_rep(bot: BotClient) -> None:
    await refused_prompt(bot)

    answer = await bot.command("admin", user_id=ADMIN)

    reply = answer.body
    assert reply["response_type"] == "ephemeral"
    assert reply["text"] == "closedlost admin: 1 to fix"
    shown = sections(reply["blocks"])
    assert shown[:3] == [
        "closedlost admin",
        "*Messages Slack refused: 1*",
        f"*Prompt* to {GHOST_EMAIL}\n"
        "*Ghost &lt;deal&gt;*\n"
        f"Slack's answer: `no Slack user has the email {GHOST_EMAIL}`\n"
        f"To fix: no Slack user has the owner's email {GHOST_EMAIL}. Correct the email in the CRM (the deal is "
        "then prompted to the right rep by itself), or add it to the rep's Slack profile and *Retry*.",
    ]
    assert shown[3:5] == ["*CRM jobs that failed: 0*", "No CRM job failed. :white_check_mark:"]
    crms = shown[5].splitlines()
    assert crms[0] == "*CRMs*"
    assert crms[1].startswith("• Deal webhook: last event <!date^") and crms[1].endswith(" · no sweep")
    assert crms[2:] == [
        "• HubSpot: no event yet · no sweep",
        "• Salesforce: no event yet · no sweep",
        "• Pipedrive: no event yet · no sweep",
    ]
    assert shown[6] == "*Backlog*\nOutbox: nothing waiting to go to Slack\nCRM jobs: 0 pending, 0 failed"
    retry = retry_button(reply["blocks"], "retry_message")
    (failed,) = [row for row in await bot.rows(OutboxMessage) if row.state == OutboxState.FAILED]
    assert (retry["text"]["text"], retry["value"]) == ("Retry", str(failed.id))

    # The admin added the email to the rep's Slack profile.
    bot.slack.users_by_email[GHOST_EMAIL] = GHOST
    redrawn = await click_retry(bot, user_id=ADMIN, action_id="retry_message", value=retry["value"])

    assert redrawn is not None and redrawn["replace_original"] is True
    assert redrawn["blocks"][1]["elements"][0]["text"].startswith(":arrows_counterclockwise: Queued again")
    assert sections(redrawn["blocks"])[1:3] == [
        "*Messages Slack refused: 0*",
        "Slack took every message. :white_check_mark:",
    ]
    dm = await dm_to(bot, GHOST)
    assert dm["blocks"][0]["text"]["text"].startswith("*Ghost &lt;deal&gt;* · ")
    assert '"log_reason"' in json.dumps(dm["blocks"])

    async def prompted() -> Loss | None:
        (loss,) = await bot.rows(Loss)
        return loss if loss.prompted_at is not None else None

    loss = await eventually(prompted, what="the loss to be prompted")
    assert loss.delivery_error is None and loss.state == LossState.AWAITING
    (call,) = await bot.rows(OutboxMessage)
    assert (call.id, call.state) == (failed.id, OutboxState.SENT)  # the same call, sent once


async def test_a_second_retry_of_the_same_item_changes_nothing_and_says_so(bot: BotClient) -> None:
    await refused_prompt(bot)
    bot.slack.users_by_email[GHOST_EMAIL] = GHOST
    (failed,) = await bot.rows(OutboxMessage)
    await click_retry(bot, user_id=ADMIN, action_id="retry_message", value=str(failed.id))
    await dm_to(bot, GHOST)

    async def all_prompted() -> bool:
        return all(loss.prompted_at is not None for loss in await bot.rows(Loss))

    await eventually(all_prompted, what="the prompt's losses to be recorded as prompted")
    before = await bot.snapshot()

    again = await click_retry(bot, user_id=ADMIN, action_id="retry_message", value=str(failed.id))

    assert again is not None
    assert again["blocks"][1]["elements"][0]["text"].startswith("That one was no longer waiting for a retry")
    assert await bot.snapshot() == before
    assert len([m for (channel, _), m in bot.slack.messages.items() if channel == "D0GHOST01"]) == 1


# --- anyone else ---------------------------------------------------------------------------------

REFUSAL = (
    "Only the bot's admins can use this: ask one of them, or whoever runs closedlost to add you to "
    "ADMIN_USERS. Nothing was changed."
)


async def test_someone_not_an_admin_is_refused_the_view(bot: BotClient) -> None:
    await refused_prompt(bot)
    before = await bot.snapshot()

    answer = await bot.command("admin", user_id=DANA)

    assert answer.body["response_type"] == "ephemeral"
    assert answer.body["text"] == REFUSAL
    assert sections(answer.body["blocks"]) == [f":no_entry: {REFUSAL}"]
    assert await bot.snapshot() == before


async def test_an_admin_sees_each_reasons_code_after_its_label_and_a_rep_does_not(bot: BotClient) -> None:
    for_admin = sections((await bot.command("reasons", user_id=ADMIN)).body["blocks"])[1].splitlines()
    for_rep = sections((await bot.command("reasons", user_id=DANA)).body["blocks"])[1].splitlines()

    assert for_admin[0] == "• *Price / budget* (revisit after 180 days) · `price`"
    assert for_admin[5] == "• *No need / not a fit* · `no_need`"
    assert for_rep[0] == "• *Price / budget* (revisit after 180 days)"


async def test_a_retry_clicked_by_someone_not_an_admin_is_refused_and_changes_nothing(bot: BotClient) -> None:
    await refused_prompt(bot)
    bot.slack.users_by_email[GHOST_EMAIL] = GHOST
    (failed,) = await bot.rows(OutboxMessage)
    before = await bot.snapshot()

    answer = await click_retry(bot, user_id=DANA, action_id="retry_message", value=str(failed.id))

    assert answer is not None
    assert (answer["text"], answer["response_type"], answer["replace_original"]) == (REFUSAL, "ephemeral", False)
    await click_retry(bot, user_id=DANA, action_id="retry_message", value=str(failed.id), in_home=True)
    (notice,) = await bot.slack.wait_for("views.open")
    assert notice["view"]["title"]["text"] == "Admins only"
    assert notice["view"]["blocks"][0]["text"]["text"] == REFUSAL
    assert await bot.snapshot() == before
    await bot.settle_worker()  # a call put back in the outbox would have gone out by now
    assert [m for (channel, _), m in bot.slack.messages.items() if channel == "D0GHOST01"] == []


# --- the Home tab --------------------------------------------------------------------------------


async def test_an_admins_home_tab_ends_with_the_admin_view_and_retries_from_there(bot: BotClient) -> None:
    await refused_prompt(bot)

    await bot.open_home(user_id=ADMIN)

    (published,) = await bot.slack.wait_for("views.publish")
    shown = sections(published["view"]["blocks"])
    start = shown.index("closedlost admin")
    assert shown[0] == "Your closed-lost deals" and start > 0
    assert shown[start + 1] == "*Messages Slack refused: 1*"
    assert shown[start + 2].startswith(f"*Prompt* to {GHOST_EMAIL}\n*Ghost &lt;deal&gt;*")
    retry = retry_button(published["view"]["blocks"], "retry_message")

    bot.slack.users_by_email[GHOST_EMAIL] = GHOST
    await click_retry(bot, user_id=ADMIN, action_id="retry_message", value=retry["value"], in_home=True)

    _, again = await bot.slack.wait_for("views.publish", 2)
    assert again["user_id"] == ADMIN
    assert "*Messages Slack refused: 0*" in sections(again["view"]["blocks"])
    await dm_to(bot, GHOST)


async def test_nobody_elses_home_tab_shows_the_admin_view(bot: BotClient) -> None:
    await refused_prompt(bot)

    await bot.open_home(user_id=DANA)

    (published,) = await bot.slack.wait_for("views.publish")
    shown = sections(published["view"]["blocks"])
    assert shown[0] == "Your closed-lost deals"
    assert "closedlost admin" not in shown
    assert not any("refused" in text for text in shown)
    assert "retry_message" not in json.dumps(published["view"])


# --- a failed CRM job ----------------------------------------------------------------------------


async def test_a_failed_crm_fetch_is_listed_and_retry_records_the_deal_once_the_crm_has_it(
    bot: BotClient, fake_crm: FakeCrm
) -> None:
    now_ms = int(time.time() * 1000)
    body = json.dumps([stage_change(deal_id=404, stage="closedlost", occurred_at_ms=now_ms)]).encode()
    headers = sign_hubspot(method="POST", uri=f"{PUBLIC_URL}/webhooks/hubspot", body=body, timestamp_ms=now_ms)
    async with bot.http.post("/webhooks/hubspot", data=body, headers=headers) as response:
        assert response.status == 200

    async def failed() -> CrmJob | None:
        return next((job for job in await bot.rows(CrmJob) if job.state == CrmJobState.FAILED), None)

    job = await eventually(failed, what="the fetch of a deal HubSpot does not have to fail")
    reply = (await bot.command("admin", user_id=ADMIN)).body
    shown = sections(reply["blocks"])
    start = shown.index("*CRM jobs that failed: 1*")
    assert shown[start + 1] == (
        f"*HubSpot fetch* of the deal an event named (`{job.event_key}`)\n"
        f"The CRM's answer: `{job.last_error}`\n"
        "To fix: correct what the answer names (the field, the token, the deal), then *Retry*."
    )
    assert "404" in (job.last_error or "")
    assert shown[-1].endswith("CRM jobs: 0 pending, 1 failed")
    retry = retry_button(reply["blocks"], "retry_crm_job")
    assert retry["value"] == str(job.id)

    fake_crm.hubspot_deals["404"] = {"dealname": "Found again", "hubspot_owner_id": "7", "pipeline": "default"}
    fake_crm.hubspot_owners["7"] = "dana@example.com"
    redrawn = await click_retry(bot, user_id=ADMIN, action_id="retry_crm_job", value=retry["value"])

    assert redrawn is not None and "*CRM jobs that failed: 0*" in sections(redrawn["blocks"])

    async def done() -> list[CrmJob]:
        return [row for row in await bot.rows(CrmJob) if row.state == CrmJobState.DONE]

    (finished,) = await eventually(done, what="the fetch to be run again and done")
    assert finished.id == job.id and len(await bot.rows(CrmJob)) == 1
    (stored,) = await bot.rows(Deal)
    assert (stored.name, stored.source, stored.external_id, stored.stage) == (
        "Found again",
        "hubspot",
        "404",
        "closed_lost",
    )
    crms = sections((await bot.command("admin", user_id=ADMIN)).body["blocks"])[-2]
    assert "• HubSpot: last event <!date^" in crms


# --- the view's limits ---------------------------------------------------------------------------


def full_panel() -> AdminPanel:
    """As much as the view ever shows, every text at its longest."""
    long_name = "<Deal> & " * 60
    refused = [
        RefusedMessage(
            outbox_id=n,
            kind="escalation",
            update=False,
            channel="C0MANAGERS",
            rep_slack_id=None,
            rep_email="a" * 300 + "@example.com",
            deals=[long_name] * 40,
            error="Slack answered not_in_channel " + "x" * 2000,
            fix=Fix.INVITE_BOT,
        )
        for n in range(10)
    ]
    jobs = [
        FailedJob(
            job_id=n, write_back=True, source="salesforce", deal_name=long_name, event_key=None, error="<e>" * 1000
        )
        for n in range(10)
    ]
    long_ago = datetime(2026, 1, 1, tzinfo=UTC)
    return AdminPanel(
        refused=refused,
        refused_total=500,
        failed_jobs=jobs,
        failed_jobs_total=500,
        crms=[CrmActivity(source=s, last_event_at=long_ago, last_sweep_at=None) for s in ("generic", "hubspot")],
        backlog=Backlog(
            outbox_pending=10**6, oldest_pending_age=timedelta(days=40), crm_jobs_pending=10**6, crm_jobs_failed=500
        ),
    )


def test_the_fullest_reply_fits_in_a_message() -> None:
    reply = build_admin_reply(full_panel(), retried=True)

    blocks = reply.as_kwargs()["blocks"]  # to_dict() checks every Block Kit limit
    assert len(blocks) <= 50
    assert all(len(block.get("text", {}).get("text", "")) <= 3000 for block in blocks)
    assert sections(blocks)[-1] == (
        "*Backlog*\nOutbox: 1,000,000 waiting to go to Slack, the oldest for 40 days\n"
        "CRM jobs: 1,000,000 pending, 500 failed"
    )
    assert blocks[13]["elements"][0]["text"] == "and 490 more, older."
    assert blocks[26]["elements"][0]["text"] == "and 490 more, older."


def test_the_fullest_home_tab_with_the_admin_view_fits_in_100_blocks() -> None:
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    awaiting = [
        AwaitingDeal(loss_id=n, deal_name="D", account=None, amount=Decimal(1), currency="USD", lost_at=now)
        for n in range(20)
    ]
    revisits = [
        UpcomingRevisit(
            loss_id=n,
            revisit_on=now.date(),
            deal_name="D",
            amount=None,
            currency=None,
            owner_slack_id=None,
            reason_code="price",
        )
        for n in range(25)
    ]
    home = Home(
        awaiting=awaiting,
        awaiting_total=100,
        revisits=revisits,
        revisits_total=100,
        period=period_named(PeriodName.DAYS_90, now=now, tz=UTC),
        stats=ClosedStats(lost=1),
        admin=full_panel(),
    )

    view: View = build_home_view(home, CATALOGUE)

    assert len(view.to_dict()["blocks"]) <= 100
