"""Posts about logged reasons to the channels that act on them: a debrief card in MANAGER_CHANNEL
for a large loss (DEBRIEF_MIN_AMOUNT), and a post in each channel REASON_ROUTES names for the
reason's code.

The posts are written and queued in the transaction that stores the reason, so a reason never goes
unannounced and is never announced twice. They are built when they are sent, from the losses'
current reasons, and `record_reason` queues their updates with the rep's DM: an edited reason
shows on the cards already posted.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import outbox
from bot.settings import Settings
from storage import message_queries
from storage.models import Deal, Loss, MessageKind


@dataclass(frozen=True)
class Audience:
    """Who hears about a logged reason."""

    debrief_channel: str | None = None
    debrief_min_amount: Decimal | None = None
    """Unset: no debriefs. Compared with the deal's amount in its own currency."""
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Reason code → the channels that hear about it (REASON_ROUTES)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> "Audience":
        return cls(
            debrief_channel=settings.manager_channel,
            debrief_min_amount=settings.debrief_min_amount,
            routes=settings.reason_routes,
        )

    def wants_debrief(self, deal: Deal) -> bool:
        if self.debrief_channel is None or self.debrief_min_amount is None or deal.amount is None:
            return False
        return deal.amount >= self.debrief_min_amount


async def queue_reason_posts(
    session: AsyncSession,
    *,
    audience: Audience,
    logged: list[tuple[Loss, Deal]],
    reason_code: str,
    first: bool,
    rep_slack_id: str,
    now: datetime,
) -> None:
    """Queues the posts that one submission of `reason_code` for the `logged` losses calls for.

    On their first reason (`first`), the large ones get one debrief card, whatever their number.
    Each channel the code is routed to gets one post listing the losses it has heard nothing about
    yet: all of them for a first reason; after an edit, only a loss it had no post about (an edit
    to a code routed elsewhere reaches that channel too, while the posts already out are updated).
    """
    if not logged:
        return
    posts: list[tuple[MessageKind, str, list[int]]] = []
    large = [loss.id for loss, deal in logged if audience.wants_debrief(deal)]
    if first and large and audience.debrief_channel is not None:
        posts.append((MessageKind.DEBRIEF, audience.debrief_channel, large))
    channels = audience.routes.get(reason_code, ())
    if channels:
        heard = await message_queries.routed_losses(session, [loss.id for loss, _ in logged])
        for channel in channels:
            unheard = [loss.id for loss, _ in logged if (loss.id, channel) not in heard]
            if unheard:
                posts.append((MessageKind.ROUTE, channel, unheard))
    if not posts:
        return
    message_ids = await message_queries.insert_messages(
        session,
        [
            {
                "kind": kind,
                "rep_key": rep_slack_id,
                "rep_slack_id": rep_slack_id,
                "post_to": channel,
                "created_at": now,
            }
            for kind, channel, _ in posts
        ],
    )
    for message_id, (_, _, loss_ids) in zip(message_ids, posts, strict=True):
        await message_queries.link_losses(session, message_id, loss_ids)
    await outbox.queue_posts(session, message_ids=message_ids, now=now)
