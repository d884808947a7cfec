"""Buttons and menus: Log reason / Edit on the DM, and the reason menu inside the modal."""

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import LossError
from bot.runtime import Runtime
from bot.services.losses import open_loss
from bot.validation import ReasonForm
from bot.views import ids
from bot.views.reason_modal import ModalContext, build_reason_modal


def register(app: AsyncApp) -> None:
    app.action(ids.LOG_REASON)(handle_open_reason)
    app.action(ids.EDIT_REASON)(handle_open_reason)
    app.action(ids.REASON_SELECT)(handle_reason_picked)
    app.action(ids.OPEN_IN_CRM)(handle_link_clicked)


async def handle_open_reason(
    ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
) -> None:
    """Opens the reason modal for the deal's owner, pre-filled with the current reason on Edit, or
    with the reason the CRM already has."""
    await ack()
    runtime: Runtime = context["runtime"]
    user_id = body["user"]["id"]
    try:
        loss = await open_loss(
            session_factory=runtime.session_factory,
            loss_id=int(action["value"]),
            user_id=user_id,
            catalogue=runtime.catalogue,
            reason_aliases=runtime.settings.reason_aliases,
        )
    except LossError as error:
        await client.chat_postEphemeral(channel=body["container"]["channel_id"], user=user_id, text=str(error))
        return
    view = build_reason_modal(
        deal=loss.deal,
        context=ModalContext(loss_id=int(action["value"]), revision=loss.revision),
        catalogue=runtime.catalogue,
        chosen=loss.current,
        today=runtime.today(),
    )
    await client.views_open(trigger_id=body["trigger_id"], view=view)


async def handle_reason_picked(
    ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
) -> None:
    """Rebuilds the open modal for the reason just picked: its extra field and default revisit date.
    What the rep already typed stays (Slack keeps inputs whose block_id is unchanged)."""
    await ack()
    runtime: Runtime = context["runtime"]
    view = body["view"]
    modal = ModalContext.decode(view["private_metadata"])
    try:
        loss = await open_loss(
            session_factory=runtime.session_factory,
            loss_id=modal.loss_id,
            user_id=body["user"]["id"],
            catalogue=runtime.catalogue,
            reason_aliases=runtime.settings.reason_aliases,
        )
    except LossError:
        return  # The submission will say why; a menu change has nowhere to show it.
    chosen = ReasonForm(reason_code=action["selected_option"]["value"], detail=None, explanation="", revisit_on=None)
    updated = build_reason_modal(
        deal=loss.deal, context=modal, catalogue=runtime.catalogue, chosen=chosen, today=runtime.today()
    )
    await client.views_update(view_id=view["id"], hash=view["hash"], view=updated)


async def handle_link_clicked(ack: AsyncAck) -> None:
    """Slack sends an action for link buttons too; it only needs acknowledging."""
    await ack()
