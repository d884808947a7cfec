"""Issue 14, points 2 and 4, over HTTP: managers re-code a rep's reason from the posts they read (a
debrief card, a route post, an escalation), and the quality figures count picks kept over a
suggestion and reasons re-coded.

Clicks and submissions are signed as Slack signs them; what Slack received is read from the fake
Slack, what was stored from the database.
"""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.periods import week_of
from bot.reasons import DEFAULT_REASONS, Catalogue
from bot.services.digest import build_digest
from bot.views.digest import build_digest_message, render_text
from storage.models import Loss, Message, MessageKind, ReasonEntry
from tests.bot_client import Answer, BotClient, button, deal, eventually
from tests.clock import Clock, post
from tests.conftest import make_settings, serve
from tests.fake_slack import FakeSlack, posted_to
from tests.test_debriefs import EXPLANATION, log_reason, the_post_in
from tests.test_discipline import CYCLE
from tests.test_views import MAX_MESSAGE_BLOCKS, check_limits

CATALOGUE = Catalogue(DEFAULT_REASONS)
DANA = "U0DANA001"
ADMIN = "U0ADMIN01"
LEE = "U0LEE0001"
"""Dana's manager in the team file (lee@example.com), found in Slack by that email."""
STRANGER = "U0STRANGE"
MANAGERS = "C0MANAGERS"
ROUTES = "competitor=C0COMPETE,price=C0PRICING"
LOST_ON = datetime(2026, 11, 20, 15, 4, 5, tzinfo=UTC)
"""When `deal()`'s deals are lost."""
RECODED_EXPLANATION = "Procurement compared list prices only; Initech was never on their shortlist."
REFUSAL = "Only the rep's manager (in the team file) or the bot's admins can re-code a reason. Nothing was changed."


def recode_settings(database_url: str, fake_slack: FakeSlack, tmp_path: Path, **overrides: object) -> Any:
    fake_slack.users_by_email["lee@example.com"] = LEE
    fake_slack.names_by_user[DANA] = ("Dana Scully", "dana")  # the digest names people
    team = tmp_path / "team.csv"
    team.write_text("rep_email,manager_email\ndana@example.com,lee@example.com\nsam@example.com,kim@example.com\n")
    values: dict[str, object] = {
        "manager_channel": MANAGERS,
        "debrief_min_amount": "40000",
        "reason_routes": ROUTES,
        "admin_users": ADMIN,
        "team_file": str(team),
        **overrides,
    }
    return make_settings(database_url, fake_slack.url, **{k: v for k, v in values.items() if v is not None})


def where(slack: FakeSlack, posted: dict[str, Any]) -> tuple[str, str]:
    """The (channel, ts) Slack gave a message it accepted."""
    return next(key for key, message in slack.messages.items() if message is posted)


async def choose_recode(bot: BotClient, *, user_id: str, loss_id: str, message: tuple[str, str]) -> Answer:
    """Picks a deal in the Re-code menu of a post about several deals (a block_actions of a static select)."""
    channel, ts = message
    return await bot.post_slack(
        {
            "type": "block_actions",
            "user": {"id": user_id, "username": "boss", "name": "boss", "team_id": "T0001"},
            "api_app_id": "A0001",
            "token": "legacy",
            "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
            "trigger_id": "1234.5678.trigger",
            "team": {"id": "T0001", "domain": "acme"},
            "channel": {"id": channel, "name": "managers"},
            "message": {"type": "message", "ts": ts, "text": "", "blocks": []},
            "state": {"values": {}},
            "response_url": f"{bot.slack.response_url}pick-{user_id}",
            "actions": [
                {
                    "action_id": "recode_pick",
                    "block_id": "b",
                    "type": "static_select",
                    "selected_option": {"text": {"type": "plain_text", "text": "a deal"}, "value": loss_id},
                    "action_ts": "1.2",
                }
            ],
        }
    )


async def open_recode(bot: BotClient, *, user_id: str, loss_id: str, card: tuple[str, str]) -> dict[str, Any]:
    """Clicks Re-code on the card and returns the modal the bot opened."""
    return await bot.open_modal(user_id=user_id, value=loss_id, message=card, action_id="recode")


async def submit_recode(
    bot: BotClient, view: dict[str, Any], *, user_id: str, code: str, detail: str | None = None
) -> Answer:
    """Picks `code` in the open modal (the bot redraws it for that reason), then saves it."""
    before = len(bot.slack.calls_to("views.update"))
    await bot.pick_reason(user_id=user_id, view=view, code=code)
    updated = (await bot.slack.wait_for("views.update", before + 1))[before]
    view = {**updated["view"], "id": view["id"], "hash": "picked"}
    values = {"reason_select": code, "detail_input": detail, "explanation_input": RECODED_EXPLANATION}
    return await bot.submit(user_id=user_id, view=view, values=values)


async def entries(bot: BotClient) -> list[tuple[int, int, str, str | None, str, bool]]:
    return [
        (entry.loss_id, entry.revision, entry.reason_code, entry.detail, entry.logged_by, entry.recoded)
        for entry in await bot.rows(ReasonEntry)
    ]


async def digest_text(session_factory: async_sessionmaker[AsyncSession]) -> str:
    tz = ZoneInfo("UTC")
    digest = await build_digest(
        session_factory=session_factory,
        catalogue=CATALOGUE,
        week=week_of(LOST_ON.date(), tz=tz, today=datetime.now(UTC).date()),
        now=datetime.now(UTC),
        tz=tz,
        currency="USD",
    )
    message = build_digest_message(digest, CATALOGUE)
    check_limits(message.as_kwargs()["blocks"], MAX_MESSAGE_BLOCKS)
    return render_text(message)


async def test_an_admin_re_codes_from_the_debrief_card_and_every_place_the_reason_shows_follows(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    async with serve(recode_settings(database_url, fake_slack, tmp_path), fake_slack, session_factory) as bot:
        loss_id, dm = await log_reason(bot, deal(), code="competitor", detail="Initech")
        card_post = await the_post_in(fake_slack, MANAGERS)
        card = where(fake_slack, card_post)
        assert button(card_post, "recode") == {
            "type": "button",
            "text": {"type": "plain_text", "text": "Re-code", "emoji": True},
            "action_id": "recode",
            "value": loss_id,
        }
        await the_post_in(fake_slack, "C0COMPETE")

        view = await open_recode(bot, user_id=ADMIN, loss_id=loss_id, card=card)
        assert view["title"]["text"] == "Re-code the reason"
        reason = next(block for block in view["blocks"] if block.get("block_id") == "reason")
        assert reason["element"]["initial_option"]["value"] == "competitor"
        competitor = next(block for block in view["blocks"] if block.get("block_id") == "competitor")
        assert competitor["element"]["initial_option"]["value"] == "Initech"
        explanation = next(block for block in view["blocks"] if block.get("block_id") == "explanation")
        assert explanation["element"]["initial_value"] == EXPLANATION
        answer = await submit_recode(bot, view, user_id=ADMIN, code="price")
        assert (answer.status, answer.body) == (200, ""), answer

        # History kept: the rep's answer stays as revision 1, the admin's is revision 2.
        assert await entries(bot) == [
            (int(loss_id), 1, "competitor", "Initech", DANA, False),
            (int(loss_id), 2, "price", None, ADMIN, True),
        ]

        # The rep's DM thread: who changed it, from what to what, in labels.
        def thread_reply() -> dict[str, Any] | None:
            return next((c for c in fake_slack.calls_to("chat.postMessage") if c.get("thread_ts") == dm[1]), None)

        reply = await eventually(thread_reply, what="the re-code notice in the prompt's thread")
        assert reply["channel"] == dm[0]
        assert reply["text"] == (
            f":pencil2: <@{ADMIN}> re-coded the reason of *Acme — 200 seats* from *Lost to a competitor* (Initech)"
            " to *Price / budget*."
        )
        assert "competitor" not in reply["text"].replace("Lost to a competitor", "")
        check_limits(reply["blocks"], MAX_MESSAGE_BLOCKS)

        # The debrief card, the rep's DM and the competitor channel's post are updated in place.
        def updated(channel: str, ts: str | None = None) -> Any:
            def found() -> dict[str, Any] | None:
                calls = [
                    c
                    for c in fake_slack.calls_to("chat.update")
                    if c["channel"] == channel and (ts is None or c["ts"] == ts) and "Price / budget" in json.dumps(c)
                ]
                return calls[-1] if calls else None

            return eventually(found, what=f"an update in {channel} showing the new reason")

        card_now = json.dumps((await updated(*card))["blocks"], ensure_ascii=False)
        assert "*Reason:* Price / budget" in card_now and "*Competitor:*" not in card_now
        assert f"Logged by <@{DANA}> · re-coded by <@{ADMIN}>" in card_now
        assert RECODED_EXPLANATION in card_now and '"action_id": "recode"' in card_now
        dm_now = json.dumps((await updated(*dm))["blocks"], ensure_ascii=False)
        assert "*Price / budget*" in dm_now and f"Re-coded by <@{ADMIN}>" in dm_now
        compete_now = json.dumps((await updated("C0COMPETE"))["blocks"], ensure_ascii=False)
        assert "*Reason:* Price / budget" in compete_now
        # The channel the new reason is routed to hears about the deal.
        pricing = await the_post_in(fake_slack, "C0PRICING")
        assert "*Reason:* Price / budget" in json.dumps(pricing["blocks"], ensure_ascii=False)

        # Stats and the digest count the loss under its new reason, and count the re-code.
        stats = (await bot.command("stats all", user_id=DANA)).body
        shown = json.dumps(stats["blocks"], ensure_ascii=False)
        assert "• Price / budget — *1* (100%)" in shown and "Lost to a competitor" not in shown
        assert "*Reason quality* 0 picks kept over a suggestion (0% of logged losses)" in shown
        assert "1 reason re-coded by a manager" in shown
        digest = await digest_text(session_factory)
        assert "Price / budget" in digest and "Lost to a competitor" not in digest
        assert "*Competitors*" not in digest, "the re-coded deal still counts its competitor"
        assert "— dana, *Acme — 200 seats* (48,000 USD), Price / budget, re-coded by a manager" in digest
        assert "dana — 1 lost · 100% logged · top: Price / budget · 0 kept over a suggestion, 1 re-coded" in digest
        assert "Reason quality: 0 picks kept over a suggestion (0% of logged losses) · 1 reason re-coded" in digest

        # Dana's Home tab is drawn again: its figures count the new reason.
        homes = [c for c in fake_slack.calls_to("views.publish") if c["user_id"] == DANA]
        assert homes and "Price / budget" in json.dumps(homes[-1]["view"], ensure_ascii=False)

        [notice] = [m for m in await bot.rows(Message) if m.kind == MessageKind.RECODE]
        assert (notice.rep_slack_id, notice.post_to, notice.thread_ts) == (DANA, dm[0], dm[1])


async def test_the_reps_manager_re_codes_from_the_escalation(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    clock = Clock()
    settings = recode_settings(database_url, fake_slack, tmp_path, debrief_min_amount=None, reason_routes=None, **CYCLE)
    async with serve(settings, fake_slack, session_factory, clock=clock) as bot:
        await post(bot, clock, deal(), deal(deal_id="0062", name="Globex renewal", amount=9000))
        _, dm = await bot.prompt(1)
        # Two reminders, an hour apart, then the escalation (CYCLE).
        for posted in (2, 3, 4):
            clock.advance(hours=1)
            await fake_slack.wait_for("chat.postMessage", posted)
        [escalation] = posted_to(fake_slack, MANAGERS)
        escalation_at = where(fake_slack, escalation)  # before updates replace what the fake Slack holds
        assert "recode" not in json.dumps(escalation["blocks"]), "Re-code offered before any reason was logged"
        [acme, globex] = sorted(await bot.rows(Loss), key=lambda loss: loss.id)
        await log_reason_for(bot, loss_id=str(acme.id), dm=dm, code="competitor", detail="Initech")
        await log_reason_for(bot, loss_id=str(globex.id), dm=dm, code="timing")

        def escalation_with_menu() -> dict[str, Any] | None:
            calls = [c for c in fake_slack.calls_to("chat.update") if c["channel"] == MANAGERS]
            return calls[-1] if calls and "Globex renewal" in json.dumps(calls[-1]["blocks"][-1]) else None

        updated = await eventually(escalation_with_menu, what="the escalation offering to re-code both deals")
        check_limits(updated["blocks"], MAX_MESSAGE_BLOCKS)
        menu = updated["blocks"][-1]["elements"][0]
        assert (menu["type"], menu["action_id"], menu["placeholder"]["text"]) == (
            "static_select",
            "recode_pick",
            "Re-code a reason",
        )
        assert [(o["text"]["text"], o["value"]) for o in menu["options"]] == [
            ("Acme — 200 seats", str(acme.id)),
            ("Globex renewal", str(globex.id)),
        ]

        opened = len(fake_slack.calls_to("views.open"))
        await choose_recode(bot, user_id=LEE, loss_id=str(acme.id), message=escalation_at)
        view = (await fake_slack.wait_for("views.open", opened + 1))[opened]["view"]
        view = {**view, "id": "V0RECODE", "hash": "h"}
        answer = await submit_recode(bot, view, user_id=LEE, code="competitor", detail="Hooli")
        assert (answer.status, answer.body) == (200, ""), answer

        assert await entries(bot) == [
            (acme.id, 1, "competitor", "Initech", DANA, False),
            (globex.id, 1, "timing", None, DANA, False),
            (acme.id, 2, "competitor", "Hooli", LEE, True),
        ]
        assert "lee@example.com" in [c["email"] for c in fake_slack.calls_to("users.lookupByEmail")]

        def notice() -> dict[str, Any] | None:
            return next((c for c in fake_slack.calls_to("chat.postMessage") if "re-coded" in c["text"]), None)

        told = await eventually(notice, what="the re-code notice")
        assert told["thread_ts"] == dm[1]
        assert told["text"] == (
            f":pencil2: <@{LEE}> re-coded the reason of *Acme — 200 seats* from *Lost to a competitor* (Initech)"
            " to *Lost to a competitor* (Hooli)."
        )

        def escalation_recoded() -> dict[str, Any] | None:
            calls = [c for c in fake_slack.calls_to("chat.update") if c["channel"] == MANAGERS]
            return calls[-1] if calls and "(re-coded)" in json.dumps(calls[-1]["blocks"]) else None

        recoded = json.dumps((await eventually(escalation_recoded, what="the escalation showing it"))["blocks"])
        assert "logged late: Lost to a competitor (re-coded)" in recoded


async def log_reason_for(
    bot: BotClient,
    *,
    loss_id: str,
    dm: tuple[str, str],
    code: str,
    detail: str | None = None,
    explanation: str | None = None,
) -> None:
    """Dana logs a reason for one deal of her bulk DM (the Log button of that deal). Her explanation
    names Initech for a competitor, and names no one for another reason, unless one is given; when
    it draws the modal's second look, she keeps her pick."""
    view = await bot.open_modal(user_id=DANA, value=loss_id, message=dm)
    if detail is not None:
        before = len(bot.slack.calls_to("views.update"))
        await bot.pick_reason(user_id=DANA, view=view, code=code)
        view = {**(await bot.slack.wait_for("views.update", before + 1))[before]["view"], "id": view["id"]}
    if explanation is None:
        explanation = (
            EXPLANATION if code == "competitor" else "Their rollout is frozen until the merger closes in March."
        )
    values = {"reason_select": code, "detail_input": detail, "explanation_input": explanation}
    answer = await bot.submit(user_id=DANA, view=view, values=values)
    if answer.status == 200 and answer.body:
        asked = answer.body
        assert isinstance(asked, dict) and asked["response_action"] == "update", answer
        answer = await bot.submit(user_id=DANA, view={**asked["view"], "id": view["id"]}, values=values)
    assert (answer.status, answer.body) == (200, ""), answer


async def test_the_rep_and_anyone_else_are_refused_and_nothing_changes(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    async with serve(recode_settings(database_url, fake_slack, tmp_path), fake_slack, session_factory) as bot:
        loss_id, _ = await log_reason(bot, deal(), code="competitor", detail="Initech")
        card = where(fake_slack, await the_post_in(fake_slack, MANAGERS))
        # An admin's modal, to show that a submission is checked too, not only the click.
        view = await open_recode(bot, user_id=ADMIN, loss_id=loss_id, card=card)
        before = await entries(bot)
        opened = len(fake_slack.calls_to("views.open"))

        for user_id in (DANA, STRANGER):
            answered = len(fake_slack.calls_to("response_url"))
            await bot.click(user_id=user_id, action_id="recode", value=loss_id, message=card)
            refusal = (await fake_slack.wait_for("response_url", answered + 1))[answered]
            assert (refusal["text"], refusal["response_type"], refusal["replace_original"]) == (
                REFUSAL,
                "ephemeral",
                False,
            )
        answered = len(fake_slack.calls_to("response_url"))
        await choose_recode(bot, user_id=STRANGER, loss_id=loss_id, message=card)
        refusal = (await fake_slack.wait_for("response_url", answered + 1))[answered]
        assert refusal["text"] == REFUSAL
        assert len(fake_slack.calls_to("views.open")) == opened, "a modal opened for someone who may not re-code"

        values = {"reason_select": "price", "explanation_input": RECODED_EXPLANATION}
        answer = await bot.submit(user_id=STRANGER, view=view, values=values)
        assert answer.status == 200 and answer.body["response_action"] == "update", answer
        assert REFUSAL in json.dumps(answer.body["view"])

        assert await entries(bot) == before
        assert not [m for m in await bot.rows(Message) if m.kind == MessageKind.RECODE]
        assert not [c for c in fake_slack.calls_to("chat.postMessage") if "re-coded" in c["text"]]


async def test_the_quality_figures_count_picks_kept_over_a_suggestion_and_re_codes_per_rep(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    settings = recode_settings(database_url, fake_slack, tmp_path, debrief_min_amount="1")
    async with serve(settings, fake_slack, session_factory) as bot:
        events = [deal(), deal(deal_id="0062", name="Globex renewal"), deal(deal_id="0063", name="Initech pilot")]
        assert (await bot.post_deals(events)).status == 202
        _, dm = await bot.prompt(1)
        kept, recoded, other = (str(loss.id) for loss in sorted(await bot.rows(Loss), key=lambda loss: loss.id))
        # The modal's second look asks about the first (its words say the buyer went dark), and Dana keeps price.
        went_dark = "The buyer went dark after our 20% price increase in May."
        await log_reason_for(bot, loss_id=kept, dm=dm, code="price", explanation=went_dark)
        await log_reason_for(bot, loss_id=recoded, dm=dm, code="timing")
        await log_reason_for(bot, loss_id=other, dm=dm, code="price", explanation="Budget cut to 20k in the Q3 freeze.")

        def three_cards() -> list[dict[str, Any]] | None:
            found = posted_to(fake_slack, MANAGERS)
            return found if len(found) == 3 else None

        cards = {
            card["blocks"][0]["text"]["text"]: where(fake_slack, card)
            for card in await eventually(three_cards, what="three cards")
        }
        view = await open_recode(bot, user_id=LEE, loss_id=recoded, card=cards["Debrief: Globex renewal"])
        answer = await submit_recode(bot, view, user_id=LEE, code="price")
        assert (answer.status, answer.body) == (200, ""), answer

        stats = json.dumps((await bot.command("stats all", user_id=DANA)).body["blocks"], ensure_ascii=False)
        assert "*Reason quality* 1 pick kept over a suggestion (33% of logged losses)" in stats
        assert "1 reason re-coded by a manager" in stats
        assert "• Price / budget — *3* (100%)" in stats and "Bad timing" not in stats
        digest = await digest_text(session_factory)
        assert (
            "Reason quality: 1 pick kept over a suggestion (33% of logged losses) · 1 reason re-coded by a manager."
            in digest
        )
        assert "dana — 3 lost · 100% logged · top: Price / budget · 1 kept over a suggestion, 1 re-coded" in digest


async def test_a_loss_logged_before_its_prompt_went_out_gets_the_notice_as_a_dm_of_its_own(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    # The prompt waits for BULK_WINDOW; Dana (named by the CRM) logs the reason from her Home tab meanwhile.
    settings = recode_settings(database_url, fake_slack, tmp_path, bulk_window="1h", bulk_max="2h")
    async with serve(settings, fake_slack, session_factory) as bot:
        assert (await bot.post_deals(deal(owner_slack_id=DANA))).status == 202
        [loss] = await eventually(lambda: bot.rows(Loss), what="the loss")
        await log_reason_for(bot, loss_id=str(loss.id), dm=("D0HOME001", "1.1"), code="timing")
        card = where(fake_slack, await the_post_in(fake_slack, MANAGERS))

        view = await open_recode(bot, user_id=ADMIN, loss_id=str(loss.id), card=card)
        answer = await submit_recode(bot, view, user_id=ADMIN, code="price")
        assert (answer.status, answer.body) == (200, ""), answer

        def notice() -> dict[str, Any] | None:
            return next((c for c in fake_slack.calls_to("chat.postMessage") if "re-coded" in c["text"]), None)

        told = await eventually(notice, what="the re-code notice")
        assert told["channel"] == DANA and told.get("thread_ts") is None
        assert told["text"] == (
            f":pencil2: <@{ADMIN}> re-coded the reason of *Acme — 200 seats* from *Bad timing / postponed* to"
            " *Price / budget*."
        )
        # No prompt went out (the loss no longer awaits a reason): the notice is Dana's only DM.
        assert [c for c in fake_slack.calls_to("chat.postMessage") if c["channel"] == DANA] == [told]
