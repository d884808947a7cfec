"""Options requests: the competitor menu of the reason modal, filled as the rep types.

https://docs.slack.dev/reference/block-kit/block-elements/select-menu-element#external_select: Slack
sends what was typed (`value`) and waits for the options in the acknowledgement itself, so the
listener reads before it acks, unlike the others.
"""

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext

from bot.runtime import Runtime
from bot.services.competitors import suggest_competitors
from bot.views import ids
from bot.views.reason_modal import build_competitor_options


def register(app: AsyncApp) -> None:
    app.options({"block_id": ids.COMPETITOR_BLOCK, "action_id": ids.DETAIL_INPUT})(handle_competitor_typed)


async def handle_competitor_typed(ack: AsyncAck, payload: dict[str, Any], context: AsyncBoltContext) -> None:
    """Offers the competitors the team has logged that match what the rep typed, and the text typed
    as a new competitor."""
    runtime: Runtime = context["runtime"]
    suggestions = await suggest_competitors(
        session_factory=runtime.session_factory,
        typed=str(payload.get("value") or ""),
        catalogue=runtime.catalogue,
        competitor_merges=runtime.competitor_merges,
    )
    options = build_competitor_options(known=suggestions.known, typed=suggestions.typed)
    await ack(options=[option.to_dict() for option in options])
