"""Buttons and menus: Log reason / Edit / Log one reason for several / the clean-up answer and the
page buttons on the DM, the reason menu inside the modals, the answers to a revisit nudge, Re-code
on the posts managers read, and the admin view's Retry.

A click that changes nothing (another rep's button, a deal no longer awaiting, a nudge not yours) is
answered through the click's `response_url`, which reaches the person in any conversation:
`chat.postEphemeral` answers `channel_not_found` where the bot is not a member, such as a DM
between two people. https://api.slack.com/interactivity/handling (message responses)
"""

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import LossError, NotAdmin
from bot.runtime import Runtime
from bot.second_look import switch_to
from bot.services.admin import load_admin_panel, retry_failed_crm_job, retry_refused_message
from bot.services.home import load_awaiting
from bot.services.losses import LossForModal, open_loss, record_clean_up, turn_page
from bot.services.recoding import open_for_recode
from bot.services.revisits import answer_nudge
from bot.validation import ReasonForm
from bot.views import ids
from bot.views.admin import build_admin_reply
from bot.views.reason_modal import (
    SEVERAL_MAX_DEALS,
    ModalContext,
    build_notice_modal,
    build_reason_modal,
    build_several_modal,
    parse_reason_submission,
)
from storage.models import RevisitState

REVISIT_ANSWERS = {
    ids.REVISIT_REOPENED: RevisitState.REOPENED,
    ids.REVISIT_SNOOZE: RevisitState.SNOOZED,
    ids.REVISIT_DROP: RevisitState.DROPPED,
}
NOTHING_AWAITING = "Every one of your closed-lost deals has its reason: there is nothing left to log."


def register(app: AsyncApp) -> None:
    app.action(ids.LOG_REASON)(handle_open_reason)
    app.action(ids.EDIT_REASON)(handle_open_reason)
    app.action(ids.LOG_SEVERAL)(handle_open_several)
    app.action(ids.LOG_CLEAN_UP)(handle_clean_up)
    app.action(ids.REASON_SELECT)(handle_reason_picked)
    app.action(ids.SWITCH_REASON)(handle_switch_reason)
    app.action(ids.PAGE_BACK)(handle_page_turned)
    app.action(ids.PAGE_NEXT)(handle_page_turned)
    app.action(ids.OPEN_IN_CRM)(handle_link_clicked)
    for action_id in REVISIT_ANSWERS:
        app.action(action_id)(handle_revisit_answered)
    app.action(ids.RECODE)(handle_open_recode)
    app.action(ids.RECODE_PICK)(handle_open_recode)
    app.action(ids.RETRY_MESSAGE)(handle_retry_message)
    app.action(ids.RETRY_CRM_JOB)(handle_retry_crm_job)


async def handle_open_reason(
    ack: AsyncAck,
    body: dict[str, Any],
    action: dict[str, Any],
    client: AsyncWebClient,
    respond: AsyncRespond,
    context: AsyncBoltContext,
) -> None:
    """Opens the reason modal for the deal's owner, pre-filled with the current reason on Edit, or
    with the reason the CRM already has."""
    await ack()
    runtime: Runtime = context["runtime"]
    user_id = body["user"]["id"]
    try:
        loss = await _loss_for_modal(runtime, int(action["value"]), user_id)
    except LossError as error:
        if body["container"]["type"] == "view":
            # A click on the Home tab: there is no channel to answer in, so the answer is a modal.
            notice = build_notice_modal(title="Nothing to log", text=str(error))
            await client.views_open(trigger_id=body["trigger_id"], view=notice)
        else:
            await refuse(body, respond, client, str(error))
        return
    view = build_reason_modal(
        deal=loss.deal,
        context=ModalContext(loss_id=int(action["value"]), revision=loss.revision),
        catalogue=runtime.catalogue,
        chosen=loss.current,
        today=runtime.today(),
    )
    await client.views_open(trigger_id=body["trigger_id"], view=view)


async def handle_open_recode(
    ack: AsyncAck,
    body: dict[str, Any],
    action: dict[str, Any],
    client: AsyncWebClient,
    respond: AsyncRespond,
    context: AsyncBoltContext,
) -> None:
    """Re-code on a debrief card, a route post or an escalation (a button, or a menu of its deals):
    opens the reason modal on the current reason for the rep's manager or an admin; anyone else is
    told why nothing happened."""
    await ack()
    runtime: Runtime = context["runtime"]
    loss_id = int(action["value"] if action["type"] == "button" else action["selected_option"]["value"])
    try:
        loss = await _loss_for_modal(runtime, loss_id, body["user"]["id"], recode=True)
    except LossError as error:
        await refuse(body, respond, client, str(error))
        return
    view = build_reason_modal(
        deal=loss.deal,
        context=ModalContext(loss_id=loss_id, revision=loss.revision, recode=True),
        catalogue=runtime.catalogue,
        chosen=loss.current,
        today=runtime.today(),
    )
    await client.views_open(trigger_id=body["trigger_id"], view=view)


async def handle_open_several(
    ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond, context: AsyncBoltContext
) -> None:
    """Opens the modal that logs one reason for several of the rep's awaiting deals."""
    await ack()
    runtime: Runtime = context["runtime"]
    user_id = body["user"]["id"]
    deals, _ = await load_awaiting(session_factory=runtime.session_factory, user_id=user_id, limit=SEVERAL_MAX_DEALS)
    if not deals:
        await refuse(body, respond, client, NOTHING_AWAITING)
        return
    view = build_several_modal(deals=deals, catalogue=runtime.catalogue, chosen=None, today=runtime.today())
    await client.views_open(trigger_id=body["trigger_id"], view=view)


async def handle_clean_up(
    ack: AsyncAck,
    body: dict[str, Any],
    action: dict[str, Any],
    client: AsyncWebClient,
    respond: AsyncRespond,
    context: AsyncBoltContext,
) -> None:
    """Logs every deal of a bulk prompt still awaiting a reason as a pipeline clean-up, in one click."""
    await ack()
    runtime: Runtime = context["runtime"]
    user_id = body["user"]["id"]
    result = await record_clean_up(
        session_factory=runtime.session_factory,
        message_id=int(action["value"]),
        catalogue=runtime.catalogue,
        user_id=user_id,
        now=runtime.clock(),
        write_back_to=runtime.write_back_sources,
        audience=runtime.audience,
    )
    if not result.logged:
        await refuse(body, respond, client, NOTHING_AWAITING)
        return
    runtime.metrics.reasons_logged.inc(result.logged)
    runtime.worker.kick()
    runtime.crm_jobs.kick()
    await runtime.home.publish(user_id)


async def handle_page_turned(
    ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
) -> None:
    await ack()
    runtime: Runtime = context["runtime"]
    message_id, page = (int(part) for part in action["value"].split(":"))
    await turn_page(
        session_factory=runtime.session_factory,
        message_id=message_id,
        page=page,
        user_id=body["user"]["id"],
        now=runtime.clock(),
    )
    runtime.worker.kick()


async def handle_reason_picked(
    ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
) -> None:
    """Rebuilds the open modal for the reason just picked: its extra field and default revisit date.
    What the rep already typed stays (Slack keeps inputs whose block_id is unchanged)."""
    await ack()
    runtime: Runtime = context["runtime"]
    view = body["view"]
    chosen = ReasonForm(reason_code=action["selected_option"]["value"], detail=None, explanation="", revisit_on=None)
    if view["callback_id"] == ids.SEVERAL_MODAL:
        deals, _ = await load_awaiting(
            session_factory=runtime.session_factory, user_id=body["user"]["id"], limit=SEVERAL_MAX_DEALS
        )
        several = build_several_modal(deals=deals, catalogue=runtime.catalogue, chosen=chosen, today=runtime.today())
        await client.views_update(view_id=view["id"], hash=view["hash"], view=several)
        return
    modal = ModalContext.decode(view["private_metadata"])
    try:
        loss = await _loss_for_modal(runtime, modal.loss_id, body["user"]["id"], recode=modal.recode)
    except LossError:
        return  # The submission will say why; a menu change has nowhere to show it.
    updated = build_reason_modal(
        deal=loss.deal, context=modal, catalogue=runtime.catalogue, chosen=chosen, today=runtime.today()
    )
    await client.views_update(view_id=view["id"], hash=view["hash"], view=updated)


async def handle_switch_reason(
    ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
) -> None:
    """Switch to it, on the modal's second look: the modal redrawn with the suggested reason, what
    the rep typed kept and the competitor the explanation named filled in, ready to save."""
    await ack()
    runtime: Runtime = context["runtime"]
    view = body["view"]
    modal = ModalContext.decode(view["private_metadata"])
    if modal.asked is None:
        return  # Only a modal that asked has the button.
    try:
        loss = await _loss_for_modal(runtime, modal.loss_id, body["user"]["id"])
    except LossError:
        return  # The submission will say why; a button in a modal has nowhere to show it.
    typed = parse_reason_submission(view["state"]["values"]).form
    chosen = switch_to(typed, modal.asked.suggested, modal.asked.competitor, runtime.catalogue)
    switched = build_reason_modal(
        deal=loss.deal,
        context=modal,
        catalogue=runtime.catalogue,
        chosen=chosen,
        today=runtime.today(),
        replace_pick=True,
    )
    await client.views_update(view_id=view["id"], hash=view["hash"], view=switched)


async def _loss_for_modal(runtime: Runtime, loss_id: int, user_id: str, *, recode: bool = False) -> LossForModal:
    """What the reason modal shows, for the deal's owner; with `recode`, for a manager who may
    re-code its reason. LossError says why not."""
    if recode:
        return await open_for_recode(
            session_factory=runtime.session_factory,
            slack=runtime.slack,
            managers=runtime.managers,
            loss_id=loss_id,
            user_id=user_id,
            catalogue=runtime.catalogue,
            now=runtime.clock(),
        )
    return await open_loss(
        session_factory=runtime.session_factory,
        loss_id=loss_id,
        user_id=user_id,
        catalogue=runtime.catalogue,
        reason_aliases=runtime.settings.reason_aliases,
        competitor_merges=runtime.competitor_merges,
    )


async def handle_link_clicked(ack: AsyncAck) -> None:
    """Slack sends an action for link buttons too; it only needs acknowledging."""
    await ack()


async def handle_revisit_answered(
    ack: AsyncAck,
    body: dict[str, Any],
    action: dict[str, Any],
    client: AsyncWebClient,
    respond: AsyncRespond,
    context: AsyncBoltContext,
) -> None:
    """Reopened it / Snooze 30 days / Not worth it on a nudge: stored, the DM updated, the Home tab
    drawn again. Anyone but the deal's owner is told why nothing changed."""
    await ack()
    runtime: Runtime = context["runtime"]
    user_id = body["user"]["id"]
    try:
        await answer_nudge(
            session_factory=runtime.session_factory,
            revisit_id=int(action["value"]),
            answer=REVISIT_ANSWERS[action["action_id"]],
            user_id=user_id,
            team_tz=runtime.settings.tz,
            now=runtime.clock(),
        )
    except LossError as error:
        await refuse(body, respond, client, str(error))
        return
    runtime.worker.kick()
    await runtime.home.publish(user_id)


async def handle_retry_message(
    ack: AsyncAck,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: AsyncRespond,
    client: AsyncWebClient,
    context: AsyncBoltContext,
) -> None:
    """Retry on a message Slack refused, in the admin view: back in the outbox, and the view drawn again."""
    await ack()
    runtime: Runtime = context["runtime"]
    try:
        retried = await retry_refused_message(
            session_factory=runtime.session_factory,
            outbox_id=int(action["value"]),
            user_id=body["user"]["id"],
            admins=runtime.settings.admin_users,
            now=runtime.clock(),
        )
    except NotAdmin as refusal:
        await _refuse(body, respond, client, refusal)
        return
    runtime.worker.kick()
    await _draw_admin_view_again(body, respond, runtime, retried=retried)


async def handle_retry_crm_job(
    ack: AsyncAck,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: AsyncRespond,
    client: AsyncWebClient,
    context: AsyncBoltContext,
) -> None:
    """Retry on a failed CRM job, in the admin view: back in the queue, and the view drawn again."""
    await ack()
    runtime: Runtime = context["runtime"]
    try:
        retried = await retry_failed_crm_job(
            session_factory=runtime.session_factory,
            job_id=int(action["value"]),
            user_id=body["user"]["id"],
            admins=runtime.settings.admin_users,
            now=runtime.clock(),
        )
    except NotAdmin as refusal:
        await _refuse(body, respond, client, refusal)
        return
    runtime.crm_jobs.kick()
    await _draw_admin_view_again(body, respond, runtime, retried=retried)


async def _refuse(body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient, refusal: NotAdmin) -> None:
    """Tells someone not an admin why nothing changed: a click on the Home tab has no response_url."""
    if body["container"]["type"] == "view":
        notice = build_notice_modal(title="Admins only", text=str(refusal))
        await client.views_open(trigger_id=body["trigger_id"], view=notice)
    else:
        await refuse(body, respond, client, str(refusal))


async def _draw_admin_view_again(
    body: dict[str, Any], respond: AsyncRespond, runtime: Runtime, *, retried: bool
) -> None:
    """Where the Retry was clicked: the Home tab, or the `/closedlost admin` reply (replaced in place)."""
    user_id = body["user"]["id"]
    if body["container"]["type"] == "view":
        await runtime.home.publish(user_id)
        return
    panel = await load_admin_panel(
        session_factory=runtime.session_factory,
        user_id=user_id,
        admins=runtime.settings.admin_users,
        now=runtime.clock(),
    )
    reply = build_admin_reply(panel, retried=retried)
    await respond(text=reply.text, blocks=reply.blocks, replace_original=True)


async def refuse(body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient, text: str) -> None:
    """Tells the person who clicked a message's button why nothing happened, visible to them only,
    without touching the message: through the click's `response_url`, or with `chat.postEphemeral`
    in the click's channel for a click that came without one."""
    if body.get("response_url"):
        await respond(text=text, response_type="ephemeral", replace_original=False)
    else:
        await client.chat_postEphemeral(channel=body["container"]["channel_id"], user=body["user"]["id"], text=text)
