"""The whole rep loop over real HTTP: webhook → DM → click → modal → vague answer refused →
answer stored → DM updated."""

from datetime import date, timedelta

from storage.models import Deal, DealEventRecord, Loss, Message, MessageKind, MessageLoss, ReasonEntry, Rep
from tests.bot_client import BotClient, button, deal

GOOD_EXPLANATION = "Initech undercut us by 30% and bundled onboarding for free."


async def test_a_closed_lost_deal_becomes_a_logged_reason(bot: BotClient) -> None:
    answer = await bot.post_deals(deal())
    assert (answer.status, answer.body) == (202, {"accepted": 1, "duplicates": 0})

    prompt, where = await bot.prompt()
    assert bot.slack.calls_to("users.lookupByEmail") == [{"email": "dana@example.com"}]
    assert bot.slack.calls_to("users.info") == []  # the lookup gave the rep's time zone too
    assert prompt["channel"] == "U0DANA001"
    text = str(prompt["blocks"])
    assert "Acme — 200 seats" in text and "Acme Corp" in text and "48,000 USD" in text
    assert button(prompt, "open_in_crm")["url"] == "https://crm.example.com/deals/0061x00000AbCdE"
    loss_id = button(prompt, "log_reason")["value"]

    clicked = await bot.click(user_id="U0DANA001", action_id="log_reason", value=loss_id, message=where)
    assert clicked.status == 200
    (opened,) = await bot.slack.wait_for("views.open")
    assert opened["trigger_id"] == "1234.5678.trigger"
    view = {**opened["view"], "id": "V0MODAL01", "hash": "h1"}

    await bot.pick_reason(user_id="U0DANA001", view=view, code="competitor")
    (updated,) = await bot.slack.wait_for("views.update")
    assert updated["view_id"] == "V0MODAL01" and updated["hash"] == "h1"
    view = {**updated["view"], "id": "V0MODAL01", "hash": "h2"}
    inputs = [block["block_id"] for block in view["blocks"] if block["type"] == "input"]
    assert inputs == ["reason", "competitor", "explanation", "revisit_competitor"]
    default_revisit = next(b for b in view["blocks"] if b.get("block_id") == "revisit_competitor")["element"]
    assert default_revisit["initial_date"] > date.today().isoformat()

    vague = await bot.submit(
        user_id="U0DANA001",
        view=view,
        values={"reason_select": "competitor", "detail_input": "Initech", "explanation_input": "Lost on price."},
    )
    assert vague.status == 200
    assert vague.body["response_action"] == "errors"
    assert set(vague.body["errors"]) == {"explanation"}
    assert await bot.rows(ReasonEntry) == []

    revisit_on = date.today() + timedelta(days=200)
    accepted = await bot.submit(
        user_id="U0DANA001",
        view=view,
        values={
            "reason_select": "competitor",
            "detail_input": "Initech",
            "explanation_input": GOOD_EXPLANATION,
            "revisit_input": revisit_on.isoformat(),
        },
    )
    assert (accepted.status, accepted.body) == (200, "")

    (entry,) = await bot.rows(ReasonEntry)
    assert (entry.reason_code, entry.detail, entry.explanation) == ("competitor", "Initech", GOOD_EXPLANATION)
    assert (entry.revisit_on, entry.logged_by, entry.revision) == (revisit_on, "U0DANA001", 1)
    (loss,) = await bot.rows(Loss)
    assert loss.state == "logged" and loss.logged_at is not None
    assert loss.prompted_at is not None and loss.delivery_error is None
    # The loss points at its prompt: the one message, the DM Slack posted, listing this loss only.
    (message,) = await bot.rows(Message)
    assert loss.prompt_message_id == message.id
    assert (message.kind, message.rep_slack_id, message.rep_email) == (
        MessageKind.PROMPT,
        "U0DANA001",
        "dana@example.com",
    )
    assert (message.channel, message.ts) == where
    assert [(link.message_id, link.loss_id) for link in await bot.rows(MessageLoss)] == [(message.id, loss.id)]
    (rep,) = await bot.rows(Rep)
    assert (rep.slack_id, rep.tz) == ("U0DANA001", "America/New_York")
    (stored_deal,) = await bot.rows(Deal)
    assert stored_deal.owner_slack_id == "U0DANA001"
    assert len(await bot.rows(DealEventRecord)) == 1

    (update,) = await bot.slack.wait_for("chat.update")
    assert (update["channel"], update["ts"]) == where
    shown = str(update["blocks"])
    assert "Lost to a competitor" in shown and "Initech" in shown and GOOD_EXPLANATION in shown
    assert button(update, "edit_reason")["value"] == loss_id
