"""Issue 4, debriefs and routing, over HTTP: a logged reason posts a debrief card for a large loss in
MANAGER_CHANNEL (DEBRIEF_MIN_AMOUNT) and a post in each channel REASON_ROUTES names for its code.

Reasons are logged the way a rep logs them (a signed view_submission); what Slack received is read
from the fake Slack. `BotClient.settle_worker` shows that nothing more was posted.
"""

import json
import logging
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.debriefs import Audience
from bot.views.debrief import build_debrief, build_route_post
from bot.views.prompt import SECTION_MAX_LENGTH
from storage.models import Deal, LossState, Message, MessageKind, OutboxMessage, OutboxState, ReasonEntry
from tests.bot_client import BotClient, button, deal, eventually
from tests.conftest import make_settings, serve
from tests.fake_slack import Failure, FakeSlack, posted_to
from tests.test_views import CATALOGUE, MAX_MESSAGE_BLOCKS, check_limits, make_deal, make_entry, make_item, mrkdwn_texts

EXPLANATION = "Initech bundled onboarding for free and undercut us by 30% on seats."
MANAGERS = "C0MANAGERS"
ROUTES = "competitor=C0COMPETE,missing_feature=C0PRODUCT,missing_feature=C0ROADMAP,price=C0PRICING"


def debriefs_on(database_url: str, fake_slack: FakeSlack, **overrides: object) -> Any:
    values: dict[str, object] = {
        "manager_channel": MANAGERS,
        "debrief_min_amount": "40000",
        "reason_routes": ROUTES,
        **overrides,
    }
    return make_settings(database_url, fake_slack.url, **{k: v for k, v in values.items() if v is not None})


async def log_reason(
    bot: BotClient,
    event: dict[str, Any],
    *,
    code: str,
    detail: str | None = None,
    explanation: str = EXPLANATION,
    prompt_number: int = 1,
) -> tuple[str, tuple[str, str]]:
    """Posts the closed-lost deal, waits for its DM and logs `code` from it; returns the loss id and
    the DM's (channel, ts)."""
    assert (await bot.post_deals(event)).status == 202
    prompt, where = await bot.prompt(prompt_number)
    loss_id = button(prompt, "log_reason")["value"]
    await submit(bot, loss_id, where, code=code, detail=detail, explanation=explanation, action_id="log_reason")
    return loss_id, where


async def submit(
    bot: BotClient,
    loss_id: str,
    where: tuple[str, str],
    *,
    code: str,
    detail: str | None,
    explanation: str = EXPLANATION,
    action_id: str,
) -> None:
    view = await bot.open_modal(user_id="U0DANA001", value=loss_id, message=where, action_id=action_id)
    if detail is not None:
        # Picking a reason that needs a competitor or a feature adds its field to the modal.
        before = len(bot.slack.calls_to("views.update"))
        await bot.pick_reason(user_id="U0DANA001", view=view, code=code)
        updated = (await bot.slack.wait_for("views.update", before + 1))[before]
        view = {**updated["view"], "id": view["id"], "hash": "picked"}
    values = {"reason_select": code, "detail_input": detail, "explanation_input": explanation}
    answer = await bot.submit(user_id="U0DANA001", view=view, values=values)
    assert (answer.status, answer.body) == (200, ""), answer


def mrkdwn(message: dict[str, Any]) -> str:
    """Every mrkdwn text of a message, its fallback `text` first, one a line: what Slack would act
    on `<!channel>` in. Plain text (the header) is shown as typed."""
    return "\n".join([message["text"], *mrkdwn_texts(message["blocks"])])


async def the_post_in(slack: FakeSlack, channel: str) -> dict[str, Any]:
    (post,) = await eventually(lambda: posted_to(slack, channel), what=f"the post in {channel}")
    return post


async def test_a_large_loss_gets_a_debrief_card_with_the_whole_story(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    async with serve(debriefs_on(database_url, fake_slack), fake_slack, session_factory) as bot:
        await log_reason(bot, deal(), code="competitor", detail="Initech")

        card = await the_post_in(fake_slack, MANAGERS)
        assert card["blocks"][0]["type"] == "header"
        assert card["blocks"][0]["text"]["text"] == "Debrief: Acme — 200 seats"
        shown = mrkdwn(card)
        for expected in (
            "Acme — 200 seats",
            "Acme Corp",
            "48,000 USD",
            "*Reason:* Lost to a competitor",
            "*Competitor:* Initech",
            f">{EXPLANATION}",
            "Logged by <@U0DANA001>",
            "Discuss in this thread",
        ):
            assert expected in shown, (expected, shown)
        assert button(card, "open_in_crm")["url"] == "https://crm.example.com/deals/0061x00000AbCdE"

        (message,) = [m for m in await bot.rows(Message) if m.kind == MessageKind.DEBRIEF]
        assert (message.post_to, message.rep_key, message.rep_slack_id) == (MANAGERS, "U0DANA001", "U0DANA001")
        assert (message.channel, message.ts) != (None, None)  # recorded, to update it later


@pytest.mark.parametrize(
    ("amount", "currency", "overrides", "expected"),
    [
        pytest.param(40000, "USD", {}, 1, id="at-the-threshold"),
        pytest.param(39999.99, "USD", {}, 0, id="below"),
        # Amounts are compared in the deal's own currency, never converted.
        pytest.param(5_000_000, "JPY", {}, 1, id="yen-as-its-own-amount"),
        pytest.param(39_000, "GBP", {}, 0, id="pounds-as-their-own-amount"),
        pytest.param(None, None, {}, 0, id="no-amount"),
        pytest.param(48000, "USD", {"debrief_min_amount": None}, 0, id="threshold-unset"),
    ],
)
async def test_the_threshold_compares_the_deals_own_amount(
    database_url: str,
    fake_slack: FakeSlack,
    session_factory: async_sessionmaker[AsyncSession],
    amount: float | None,
    currency: str | None,
    overrides: dict[str, object],
    expected: int,
) -> None:
    settings = debriefs_on(database_url, fake_slack, **overrides)
    async with serve(settings, fake_slack, session_factory) as bot:
        await log_reason(bot, deal(amount=amount, currency=currency), code="timing")
        await bot.settle_worker()

        assert len(posted_to(fake_slack, MANAGERS)) == expected
        assert len(await bot.rows(ReasonEntry)) == 1


async def test_no_manager_channel_means_no_debriefs_and_start_up_says_so(
    database_url: str,
    fake_slack: FakeSlack,
    session_factory: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(database_url, fake_slack.url, debrief_min_amount="1000")
    with caplog.at_level(logging.WARNING, logger="bot.app"):
        async with serve(settings, fake_slack, session_factory) as bot:
            await log_reason(bot, deal(), code="timing")
            await bot.settle_worker()

    said = [record.getMessage() for record in caplog.records if "DEBRIEF_MIN_AMOUNT" in record.getMessage()]
    assert said == ["DEBRIEF_MIN_AMOUNT needs MANAGER_CHANNEL: no debrief cards will be posted"]
    assert [m.kind for m in await bot.rows(Message)] == [MessageKind.PROMPT, MessageKind.PROMPT]  # and the settle DM
    assert len(fake_slack.calls_to("chat.postMessage")) == 2


async def test_a_routed_reason_is_posted_in_each_of_its_channels(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    settings = debriefs_on(database_url, fake_slack, debrief_min_amount=None)
    async with serve(settings, fake_slack, session_factory) as bot:
        await log_reason(bot, deal(), code="missing_feature", detail="SAML single sign-on")

        for channel in ("C0PRODUCT", "C0ROADMAP"):
            post = await the_post_in(fake_slack, channel)
            shown = mrkdwn(post)
            for expected in (
                "Acme — 200 seats",
                "48,000 USD",
                "*Reason:* Missing feature",
                "*Missing feature:* SAML single sign-on",
                f">{EXPLANATION}",
                "<@U0DANA001>",
            ):
                assert expected in shown, (channel, expected, shown)
        await bot.settle_worker()
        assert posted_to(fake_slack, "C0PRICING") == [] and posted_to(fake_slack, "C0COMPETE") == []
        assert len(fake_slack.calls_to("chat.postMessage")) == 4  # the prompt, two routes, the settle DM


async def test_an_unrouted_reason_is_posted_nowhere(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    settings = debriefs_on(database_url, fake_slack, debrief_min_amount=None)
    async with serve(settings, fake_slack, session_factory) as bot:
        await log_reason(bot, deal(), code="timing")
        await bot.settle_worker()

        assert len(fake_slack.calls_to("chat.postMessage")) == 2  # the prompt and the settle DM
        assert [m.kind for m in await bot.rows(Message)] == [MessageKind.PROMPT, MessageKind.PROMPT]


async def test_an_edit_updates_the_posts_and_reaches_a_newly_routed_channel_only(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    async with serve(debriefs_on(database_url, fake_slack), fake_slack, session_factory) as bot:
        loss_id, where = await log_reason(bot, deal(), code="competitor", detail="Initech")
        card = await the_post_in(fake_slack, MANAGERS)
        route = await the_post_in(fake_slack, "C0COMPETE")
        card_at = next(key for key, message in fake_slack.messages.items() if message is card)
        route_at = next(key for key, message in fake_slack.messages.items() if message is route)

        await submit(
            bot,
            loss_id,
            where,
            code="missing_feature",
            detail="SAML single sign-on",
            explanation="Their security review needs SAML single sign-on, which we lack.",
            action_id="edit_reason",
        )

        def updated(at: tuple[str, str]) -> bool:
            return "SAML single sign-on" in mrkdwn(fake_slack.messages[at])

        await eventually(lambda: updated(card_at) and updated(route_at), what="the card and the route post updated")
        assert "*Reason:* Missing feature" in mrkdwn(fake_slack.messages[card_at])
        for channel in ("C0PRODUCT", "C0ROADMAP"):
            assert "SAML single sign-on" in mrkdwn(await the_post_in(fake_slack, channel))

        # Back to a competitor: every channel has heard of this loss, so nothing new is posted.
        await submit(bot, loss_id, where, code="competitor", detail="Globex", action_id="edit_reason")
        await eventually(lambda: "Globex" in mrkdwn(fake_slack.messages[card_at]), what="the card updated again")
        await bot.settle_worker()
        assert len(posted_to(fake_slack, MANAGERS)) == 1 and len(posted_to(fake_slack, "C0COMPETE")) == 1
        assert len(fake_slack.calls_to("chat.postMessage")) == 6  # prompt, card, 3 routes, settle DM
        assert [entry.reason_code for entry in await bot.rows(ReasonEntry)] == [
            "competitor",
            "missing_feature",
            "competitor",
        ]


async def test_one_reason_for_300_deals_makes_one_post_per_channel_within_block_kit_limits(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    settings = debriefs_on(
        database_url,
        fake_slack,
        bulk_window="2s",
        debrief_min_amount="1250",
        reason_routes="price=C0PRICING,price=C0FINANCE",
    )
    async with serve(settings, fake_slack, session_factory) as bot:
        for batch in range(3):
            events = [
                deal(deal_id=f"bulk-{n}", name=f"Stale deal {n}", amount=1000 + n)
                for n in range(batch * 100, (batch + 1) * 100)
            ]
            assert (await bot.post_deals(events)).status == 202
        prompt, where = await bot.prompt(1)
        several = button(prompt, "log_several")
        await bot.click(user_id="U0DANA001", action_id="log_several", value=several["value"], message=where)
        view = (await fake_slack.wait_for("views.open"))[0]["view"]
        picked = [option for group in view["blocks"][0]["element"]["option_groups"] for option in group["options"]]
        answer = await bot.submit(
            user_id="U0DANA001",
            view={**view, "id": "V0SEVERAL", "hash": "h"},
            values={"deals_select": picked, "reason_select": "price", "explanation_input": EXPLANATION},
        )
        assert (answer.status, answer.body) == (200, "")

        for channel, deals in (("C0PRICING", 300), ("C0FINANCE", 300), (MANAGERS, 50)):
            post = await the_post_in(fake_slack, channel)
            assert len(post["blocks"]) <= 50
            sections = [block["text"]["text"] for block in post["blocks"] if block["type"] == "section"]
            assert all(len(text) <= SECTION_MAX_LENGTH for text in sections)
            listed = json.dumps(post["blocks"], ensure_ascii=False)
            assert f"*{deals} deals*" in listed
            # The deals the sections list (the Re-code menu offers them all, up to its 100 options).
            shown = "\n".join(sections).count("Stale deal ")
            assert f"and {deals - shown} more" in listed, (channel, shown)
            assert "*Reason:* Price / budget" in listed and "Logged by <@U0DANA001>" in listed
        assert "Debrief: 50 large losses" in posted_to(fake_slack, MANAGERS)[0]["text"]
        assert "Stale deal 249*" not in json.dumps(posted_to(fake_slack, MANAGERS)[0]["blocks"])

        await bot.settle_worker()
        assert len(fake_slack.calls_to("chat.postMessage")) == 5  # the prompt, 3 posts, the settle DM


async def test_text_people_wrote_is_escaped(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    settings = debriefs_on(database_url, fake_slack, reason_routes="competitor=C0COMPETE")
    async with serve(settings, fake_slack, session_factory) as bot:
        await log_reason(
            bot,
            deal(name="<!channel> Acme & Sons", account="<@U0BOSS001> Corp"),
            code="competitor",
            detail="<!here> Initech",
            explanation="They said <!channel> would hear about it; <@U0BOSS001> agreed & signed.",
        )

        for channel in (MANAGERS, "C0COMPETE"):
            shown = mrkdwn(await the_post_in(fake_slack, channel))
            assert "<!channel>" not in shown and "<!here>" not in shown and "<@U0BOSS001>" not in shown, shown
            for escaped in ("&lt;!channel&gt; Acme &amp; Sons", "&lt;@U0BOSS001&gt; Corp", "&lt;!here&gt; Initech"):
                assert escaped in shown, (channel, escaped)
            assert "&lt;@U0BOSS001&gt; agreed &amp; signed." in shown


async def test_a_channel_slack_does_not_know_is_recorded_not_retried_and_the_reason_stays(
    database_url: str,
    fake_slack: FakeSlack,
    session_factory: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = debriefs_on(database_url, fake_slack, reason_routes="competitor=C0GONE")
    async with serve(settings, fake_slack, session_factory) as bot:
        assert (await bot.post_deals(deal())).status == 202
        prompt, where = await bot.prompt()
        fake_slack.fail("chat.postMessage", Failure(200, error="channel_not_found"))  # the next post: the card
        with caplog.at_level(logging.WARNING, logger="bot.services.delivery"):
            loss_id = button(prompt, "log_reason")["value"]
            await submit(bot, loss_id, where, code="competitor", detail="Initech", action_id="log_reason")
            route = await the_post_in(fake_slack, "C0GONE")
            await bot.settle_worker()

        assert "Initech" in mrkdwn(route)
        assert [call["channel"] for call in fake_slack.calls_to("chat.postMessage")] == [
            "U0DANA001",
            MANAGERS,
            "C0GONE",
            "U0SETTLE1",
        ]
        messages = {m.id: m for m in await bot.rows(Message)}
        (failed,) = [row for row in await bot.rows(OutboxMessage) if row.state == OutboxState.FAILED]
        assert messages[failed.message_id].kind == MessageKind.DEBRIEF
        assert "channel_not_found" in (failed.last_error or "") and failed.attempts == 1
        assert any("channel_not_found" in r.getMessage() and MANAGERS in r.getMessage() for r in caplog.records)
        (entry,) = await bot.rows(ReasonEntry)
        assert (entry.reason_code, entry.detail) == ("competitor", "Initech")
        (stored,) = [d for d in await bot.rows(Deal) if d.external_id == "0061x00000AbCdE"]
        assert stored.amount == Decimal(48000)
        # The rep's DM still shows the reason.
        assert any("Initech" in str(call["blocks"]) for call in fake_slack.calls_to("chat.update"))


def test_the_audience_wants_a_debrief_from_the_threshold_up_with_a_channel_only() -> None:
    big = Deal(amount=Decimal("40000"), currency="EUR")
    assert Audience(debrief_channel=MANAGERS, debrief_min_amount=Decimal("40000")).wants_debrief(big)
    assert not Audience(debrief_channel=MANAGERS, debrief_min_amount=Decimal("40000.01")).wants_debrief(big)
    assert not Audience(debrief_channel=None, debrief_min_amount=Decimal(0)).wants_debrief(big)
    assert not Audience(debrief_channel=MANAGERS).wants_debrief(big)


def test_a_post_for_deals_whose_reasons_were_edited_apart_stays_within_block_kit_limits() -> None:
    items = [
        make_item(
            make_deal(name=f"Deal {n}"),
            LossState.LOGGED,
            make_entry(explanation=f"Edited on its own, explanation number {n}, long enough."),
        )
        for n in range(40)
    ]
    for build in (build_route_post, build_debrief):
        rendered = build(items, catalogue=CATALOGUE).as_kwargs()

        check_limits(rendered["blocks"], MAX_MESSAGE_BLOCKS)
        assert "…and 25 more deals with other reasons." in str(rendered["blocks"])


def test_the_longest_text_people_can_write_stays_within_block_kit_limits() -> None:
    item = make_item(
        make_deal(name="<" * 500, account="&" * 500),
        LossState.LOGGED,
        make_entry(detail=">" * 150, explanation="<" * 2000),
    )
    for build in (build_route_post, build_debrief):
        rendered = build([item], catalogue=CATALOGUE).as_kwargs()

        check_limits(rendered["blocks"], MAX_MESSAGE_BLOCKS)
        assert "<<" not in "".join(mrkdwn_texts(rendered["blocks"]))
