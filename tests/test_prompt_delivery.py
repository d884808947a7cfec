"""The DM a lost deal's owner gets, over real HTTP against the fake Slack: finding the owner, Slack
failing, the deal reopening, and text from the CRM escaped for mrkdwn (README.md, "Text people typed is escaped")."""

import logging
from typing import Any

import pytest
from sqlalchemy import select

from storage.models import (
    Deal,
    Loss,
    LossState,
    Message,
    MessageLoss,
    OutboxKind,
    OutboxMessage,
    OutboxState,
    Rep,
    SlackUser,
)
from tests.bot_client import BotClient, deal, eventually
from tests.fake_slack import Failure


async def prompt_of(bot: BotClient, loss: Loss) -> Message | None:
    """The prompt message the loss points at, if any."""
    return next((message for message in await bot.rows(Message) if message.id == loss.prompt_message_id), None)


async def sent_loss(bot: BotClient, deal_id: str = "0061x00000AbCdE") -> Loss | None:
    """The deal's loss once its DM is recorded as sent (its prompt message posted, the loss
    prompted), else None."""
    for loss in await bot.rows(Loss):
        stored = next(row for row in await bot.rows(Deal) if row.id == loss.deal_id)
        message = await prompt_of(bot, loss)
        if stored.external_id == deal_id and loss.prompted_at and message is not None and message.ts is not None:
            return loss
    return None


async def sent_prompt(bot: BotClient, deal_id: str = "0061x00000AbCdE") -> tuple[Loss, Message]:
    """The deal's loss and its prompt message, once the DM is recorded as sent."""
    loss = await eventually(lambda: sent_loss(bot, deal_id), what=f"the DM about {deal_id} to be recorded")
    message = await prompt_of(bot, loss)
    assert message is not None
    return loss, message


def mrkdwn_texts(message: dict[str, Any]) -> list[str]:
    """Every text of a message that Slack renders as mrkdwn: the `text` fallback (mrkdwn by default),
    mrkdwn text objects in sections, fields and context blocks."""
    texts = [message["text"]]

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                texts.append(node["text"])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(message["blocks"])
    return texts


def action_ids(message: dict[str, Any]) -> list[str]:
    return [
        element.get("action_id")
        for block in message["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def log_reason_values(message: dict[str, Any]) -> list[str]:
    """The loss ids on the message's Log reason buttons (in actions blocks or as section accessories)."""
    values = []
    for block in message["blocks"]:
        for element in [*block.get("elements", []), block.get("accessory") or {}]:
            if element.get("action_id") == "log_reason":
                values.append(element["value"])
    return values


def where(bot: BotClient, message: dict[str, Any]) -> tuple[str, str]:
    """The (channel, ts) the fake Slack gave a posted message."""
    return next(key for key, stored in bot.slack.messages.items() if stored is message)


# --- finding the owner ---------------------------------------------------------------------------------


async def test_the_owner_is_looked_up_once_and_cached(bot: BotClient) -> None:
    assert (await bot.post_deals(deal(deal_id="D-1", name="First deal"))).status == 202
    await bot.slack.wait_for("chat.postMessage", 1)

    # The same owner, on another deal, written with other capitals by the CRM.
    assert (await bot.post_deals(deal(deal_id="D-2", name="Second deal", owner_email="Dana@Example.COM"))).status == 202
    first, second = await bot.slack.wait_for("chat.postMessage", 2)

    assert bot.slack.calls_to("users.lookupByEmail") == [{"email": "dana@example.com"}]
    assert (first["channel"], second["channel"]) == ("U0DANA001", "U0DANA001")
    assert "First deal" in first["text"] and "Second deal" in second["text"]
    async with bot.session_factory() as session:
        (cached,) = await session.scalars(select(SlackUser))
    assert (cached.email, cached.user_id) == ("dana@example.com", "U0DANA001")
    deals = await eventually(lambda: _all_deals_with_slack_ids(bot), what="both deals to record their owner's Slack id")
    assert {row.owner_slack_id for row in deals} == {"U0DANA001"}
    # The lookup also gave the rep's time zone, kept for their reminders: no users.info needed.
    assert [(rep.slack_id, rep.tz) for rep in await bot.rows(Rep)] == [("U0DANA001", "America/New_York")]
    assert bot.slack.calls_to("users.info") == []


async def _all_deals_with_slack_ids(bot: BotClient) -> list[Deal] | None:
    deals = await bot.rows(Deal)
    return deals if deals and all(row.owner_slack_id for row in deals) else None


async def test_two_deals_of_one_owner_in_one_batch_need_one_lookup_and_one_dm(bot: BotClient) -> None:
    batch = [deal(deal_id="D-1", name="First deal"), deal(deal_id="D-2", name="Second deal")]

    assert (await bot.post_deals(batch)).body == {"accepted": 2, "duplicates": 0}

    (dm,) = await bot.slack.wait_for("chat.postMessage")
    assert dm["channel"] == "U0DANA001"
    assert "First deal" in str(dm["blocks"]) and "Second deal" in str(dm["blocks"])
    first, second = await eventually(lambda: _sent_losses(bot), what="both losses to be recorded as prompted")
    assert first.prompt_message_id == second.prompt_message_id
    assert sorted(log_reason_values(dm)) == sorted([str(first.id), str(second.id)])
    await bot.settle_worker()
    assert bot.slack.calls_to("users.lookupByEmail") == [{"email": "dana@example.com"}]
    assert [call["channel"] for call in bot.slack.calls_to("chat.postMessage")].count("U0DANA001") == 1


@pytest.mark.parametrize("with_email", [False, True], ids=["slack id only", "slack id and email"])
async def test_an_owner_slack_id_needs_no_email_lookup_and_one_users_info(bot: BotClient, with_email: bool) -> None:
    bot.slack.tz_by_user["U0SAM0001"] = "Europe/Paris"
    event = deal(owner_slack_id="U0SAM0001", owner_email="sam@example.com")
    if not with_email:
        del event["owner_email"]

    assert (await bot.post_deals(event)).status == 202

    (dm,) = await bot.slack.wait_for("chat.postMessage")
    assert dm["channel"] == "U0SAM0001"
    assert bot.slack.calls_to("users.lookupByEmail") == []
    _, message = await sent_prompt(bot)
    assert (message.channel, message.rep_slack_id) == ("D0SAM0001", "U0SAM0001")
    # users.info gives the rep's time zone; it is asked once per rep, then kept.
    assert [(rep.slack_id, rep.tz) for rep in await bot.rows(Rep)] == [("U0SAM0001", "Europe/Paris")]
    second = {**event, "deal_id": "D-2", "name": "Second deal", "url": None}
    assert (await bot.post_deals(second)).status == 202
    await sent_prompt(bot, "D-2")
    assert bot.slack.calls_to("users.info") == [{"user": "U0SAM0001"}]
    assert bot.slack.calls_to("users.lookupByEmail") == []


async def test_an_email_slack_does_not_know_is_recorded_and_logged_and_others_go_out(
    bot: BotClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    batch = [
        deal(deal_id="GHOST-1", name="Ghost deal", owner_email="ghost@example.com"),
        deal(deal_id="D-2", name="Dana's deal"),
    ]

    assert (await bot.post_deals(batch)).body == {"accepted": 2, "duplicates": 0}

    (dm,) = await bot.slack.wait_for("chat.postMessage")
    assert dm["channel"] == "U0DANA001" and "Dana's deal" in dm["text"]
    ghost = await eventually(lambda: _loss_with_delivery_error(bot), what="the ghost deal's delivery error")
    assert "ghost@example.com" in ghost.delivery_error
    assert ghost.state == LossState.AWAITING and ghost.prompted_at is None
    ghost_prompt = await prompt_of(bot, ghost)
    assert ghost_prompt is not None and (ghost_prompt.rep_email, ghost_prompt.ts) == ("ghost@example.com", None)
    (failed,) = [row for row in await bot.rows(OutboxMessage) if row.state == OutboxState.FAILED]
    assert failed.message_id == ghost_prompt.id and "ghost@example.com" in failed.last_error
    assert {"email": "ghost@example.com"} in bot.slack.calls_to("users.lookupByEmail")
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert any("GHOST-1" in record.getMessage() for record in warnings), [r.getMessage() for r in warnings]
    await bot.settle_worker()
    assert [message for message in bot.slack.messages.values() if "Ghost deal" in str(message)] == []
    assert len(bot.slack.calls_to("chat.postMessage")) == 2  # Dana's deal and the settle deal


async def test_a_corrected_owner_email_gets_the_prompt_to_the_right_rep(bot: BotClient) -> None:
    await bot.post_deals(deal(name="Ghost deal", owner_email="ghost@example.com"))
    ghost = await eventually(lambda: _loss_with_delivery_error(bot), what="the unknown email to be recorded")
    ghost_prompt_id = ghost.prompt_message_id

    corrected = deal(name="Ghost deal", owner_email="dana@example.com", changed_at="2026-11-20T16:00:00Z")
    assert (await bot.post_deals(corrected)).body == {"accepted": 1, "duplicates": 0}

    (dm,) = await bot.slack.wait_for("chat.postMessage")
    assert dm["channel"] == "U0DANA001" and "Ghost deal" in dm["text"]
    (loss,) = await eventually(lambda: _sent_losses(bot), what="the prompt to be recorded as sent")
    assert loss.delivery_error is None and loss.state == LossState.AWAITING
    assert loss.prompt_message_id != ghost_prompt_id
    message = await prompt_of(bot, loss)
    assert message is not None and (message.rep_slack_id, message.channel) == ("U0DANA001", "D0DANA001")
    await bot.settle_worker()
    assert bot.slack.calls_to("chat.update") == []  # the ghost's prompt was never posted: nothing to update
    assert len(bot.slack.calls_to("chat.postMessage")) == 2  # Dana's prompt and the settle deal


async def test_an_owner_change_after_the_prompt_went_out_prompts_the_new_owner(bot: BotClient) -> None:
    assert (await bot.post_deals(deal(name="Moved deal"))).status == 202
    (first,) = await bot.slack.wait_for("chat.postMessage")
    first_at = where(bot, first)
    loss, first_prompt = await sent_prompt(bot)
    assert first["channel"] == "U0DANA001" and "log_reason" in action_ids(first)

    moved = deal(name="Moved deal", owner_email="sam@example.com", changed_at="2026-11-20T16:00:00Z")
    assert (await bot.post_deals(moved)).body == {"accepted": 1, "duplicates": 0}

    _, second = await bot.slack.wait_for("chat.postMessage", 2)
    assert second["channel"] == "U0SAM0001" and "Moved deal" in second["text"]
    assert log_reason_values(second) == [str(loss.id)]
    (update, *_) = await bot.slack.wait_for("chat.update")
    assert (update["channel"], update["ts"]) == first_at
    assert "now belongs to" in update["text"] and "log_reason" not in action_ids(update)

    async def restarted() -> Loss | None:
        (row,) = await bot.rows(Loss)
        message = await prompt_of(bot, row)
        return row if message is not None and message.ts and message.rep_slack_id == "U0SAM0001" else None

    restarted_loss = await eventually(restarted, what="the loss to be prompted to its new owner")
    assert restarted_loss.state == LossState.AWAITING and restarted_loss.prompt_message_id != first_prompt.id
    assert restarted_loss.reminders_sent == 0 and restarted_loss.escalated_at is None
    (stored,) = await bot.rows(Deal)
    assert (stored.owner_email, stored.owner_slack_id) == ("sam@example.com", "U0SAM0001")


async def _sent_losses(bot: BotClient) -> list[Loss]:
    return [loss for loss in await bot.rows(Loss) if loss.prompted_at and await sent_loss_message(bot, loss)]


async def sent_loss_message(bot: BotClient, loss: Loss) -> bool:
    message = await prompt_of(bot, loss)
    return message is not None and message.ts is not None


async def _loss_with_delivery_error(bot: BotClient) -> Loss | None:
    return next((loss for loss in await bot.rows(Loss) if loss.delivery_error), None)


# --- Slack failing -------------------------------------------------------------------------------------


async def test_a_500_then_a_429_then_ok_delivers_the_dm_exactly_once(bot: BotClient) -> None:
    bot.slack.fail("chat.postMessage", Failure(status=500), Failure(status=429, retry_after=1))

    assert (await bot.post_deals(deal())).status == 202

    loss, message = await sent_prompt(bot)
    assert len(bot.slack.calls_to("chat.postMessage")) == 3  # the 500, the 429, the one that worked
    ((channel, ts),) = bot.slack.messages.keys()
    assert (message.channel, message.ts) == (channel, ts)
    assert loss.delivery_error is None
    (dm,) = bot.slack.messages.values()
    assert "Acme — 200 seats" in dm["text"]
    await bot.settle_worker()
    assert len([message for message in bot.slack.messages.values() if "Acme" in message["text"]]) == 1
    (prompt,) = [row for row in await bot.rows(OutboxMessage) if row.message_id == message.id]
    assert (prompt.kind, prompt.state, prompt.attempts) == (OutboxKind.POST, OutboxState.SENT, 1)


# --- the deal reopens ----------------------------------------------------------------------------------


async def test_a_reopened_deal_cancels_its_loss_and_the_dm_says_no_reason_is_needed(bot: BotClient) -> None:
    assert (await bot.post_deals(deal())).status == 202
    (prompt,) = await bot.slack.wait_for("chat.postMessage")
    posted_at = where(bot, prompt)
    assert "log_reason" in action_ids(prompt)
    await eventually(lambda: sent_loss(bot), what="the DM to be recorded")

    reopened = await bot.post_deals(deal(stage="negotiation", changed_at="2026-11-21T09:00:00Z"))

    assert (reopened.status, reopened.body) == (202, {"accepted": 1, "duplicates": 0})
    (update,) = await bot.slack.wait_for("chat.update")
    assert (update["channel"], update["ts"]) == posted_at
    assert "no reason is needed" in update["text"]
    assert any("no reason is needed" in text for text in mrkdwn_texts(update) if text != update["text"])
    assert "log_reason" not in action_ids(update)
    assert "log_reason" not in str(update["blocks"])
    (loss,) = await bot.rows(Loss)
    assert loss.state == LossState.CANCELLED and loss.cancelled_at is not None
    (stored,) = await bot.rows(Deal)
    assert stored.stage == "negotiation"
    assert bot.slack.messages[posted_at] is update


async def test_a_deal_reopened_before_its_prompt_went_out_gets_no_dm(bot: BotClient) -> None:
    batch = [deal(), deal(stage="negotiation", changed_at="2026-11-21T09:00:00Z")]

    assert (await bot.post_deals(batch)).body == {"accepted": 2, "duplicates": 0}

    (loss,) = await bot.rows(Loss)
    assert loss.state == LossState.CANCELLED
    await bot.settle_worker()
    assert [message for message in bot.slack.messages.values() if "Acme" in message["text"]] == []
    assert bot.slack.calls_to("chat.update") == []
    (loss,) = [row for row in await bot.rows(Loss) if row.id == loss.id]
    assert (loss.state, loss.prompt_message_id, loss.prompted_at) == (LossState.CANCELLED, None, None)
    assert loss.id not in [link.loss_id for link in await bot.rows(MessageLoss)]  # no message lists it


async def test_a_second_loss_after_a_reopen_gets_its_own_dm(bot: BotClient) -> None:
    assert (await bot.post_deals(deal())).status == 202
    (first,) = await bot.slack.wait_for("chat.postMessage")
    first_at = where(bot, first)
    await eventually(lambda: sent_loss(bot), what="the first DM to be recorded")
    assert (await bot.post_deals(deal(stage="negotiation", changed_at="2026-11-21T09:00:00Z"))).status == 202
    (update,) = await bot.slack.wait_for("chat.update")
    assert (update["channel"], update["ts"]) == first_at

    assert (await bot.post_deals(deal(changed_at="2026-11-21T10:00:00Z"))).status == 202

    _, second = await bot.slack.wait_for("chat.postMessage", 2)
    assert where(bot, second) != first_at
    assert "log_reason" in action_ids(second)
    cancelled, awaiting = await bot.rows(Loss)
    assert (cancelled.state, awaiting.state) == (LossState.CANCELLED, LossState.AWAITING)


# --- text from the CRM is escaped ------------------------------------------------------------------------

RISKY_NAME = "Big <!channel> deal & co"
RISKY_ACCOUNT = "<@U999>"


def assert_escaped(message: dict[str, Any]) -> None:
    texts = mrkdwn_texts(message)
    joined = "\n".join(texts)
    assert "&lt;!channel&gt;" in joined and "&amp; co" in joined
    for raw in ("<!channel>", "<@U999>", "& co"):
        assert not any(raw in text for text in texts), (raw, texts)


async def test_deal_name_and_account_are_escaped_in_the_dm(bot: BotClient) -> None:
    assert (await bot.post_deals(deal(name=RISKY_NAME, account=RISKY_ACCOUNT))).status == 202

    (dm,) = await bot.slack.wait_for("chat.postMessage")

    assert_escaped(dm)
    assert "&lt;@U999&gt;" in "\n".join(mrkdwn_texts(dm))
    assert RISKY_NAME not in "\n".join(mrkdwn_texts(dm))
    (stored,) = await bot.rows(Deal)
    assert (stored.name, stored.account) == (RISKY_NAME, RISKY_ACCOUNT)


async def test_deal_name_and_account_are_escaped_in_the_cancelled_dm(bot: BotClient) -> None:
    risky = {"name": RISKY_NAME, "account": RISKY_ACCOUNT}
    assert (await bot.post_deals(deal(**risky))).status == 202
    await bot.slack.wait_for("chat.postMessage")
    await eventually(lambda: sent_loss(bot), what="the DM to be recorded")

    assert (await bot.post_deals(deal(**risky, stage="negotiation", changed_at="2026-11-21T09:00:00Z"))).status == 202

    (update,) = await bot.slack.wait_for("chat.update")
    assert_escaped(update)
    assert "&lt;@U999&gt;" in "\n".join(mrkdwn_texts(update))
