"""Every Slack message the bot owes goes through here: recorded first, sent by `deliver_due_messages`.

A message row is written in the same transaction as the change that calls for it, so a crash never
loses one. Sending claims the row in the database first, so two processes never send it twice.
The content is built at send time from the loss's current state. Rate limits (429 + Retry-After)
and 5xx answers are retried inside the Slack client (see `bot.slack_client`); what still fails is
retried here with backoff, and errors that retrying cannot fix are recorded on the loss.
"""

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncSlackResponse, AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.reasons import Catalogue
from bot.views.prompt import build_prompt_message
from storage import queries
from storage.models import Deal, Loss, LossState, OutboxKind, OutboxMessage, OutboxState, SlackUser

logger = logging.getLogger(__name__)


CLAIM_FOR = timedelta(minutes=10)
# Longer than one message can take, Slack's Retry-After waits included.
CLAIM_MARGIN = timedelta(minutes=5)
MAX_ATTEMPTS = 12
BATCH_SIZE = 50
# Errors about this one message or recipient: sending again cannot succeed.
PERMANENT_ERRORS = frozenset(
    {
        "users_not_found",
        "user_not_found",
        "channel_not_found",
        "account_inactive",
        "user_disabled",
        "not_in_channel",
        "is_archived",
        "cannot_dm_bot",
        "message_not_found",
        "cant_update_message",
        "invalid_blocks",
        "msg_too_long",
    }
)


class PermanentFailure(Exception):
    """Sending cannot succeed; the message says why, for the loss and the log."""


async def queue_messages(session: AsyncSession, *, kind: OutboxKind, loss_ids: list[int], now: datetime) -> None:
    if loss_ids:
        rows = [
            {
                "kind": kind,
                "loss_id": loss_id,
                "state": OutboxState.PENDING,
                "due_at": now,
                "attempts": 0,
                "created_at": now,
            }
            for loss_id in loss_ids
        ]
        await queries.insert_outbox_messages(session, rows)


async def queue_refreshes(session: AsyncSession, *, loss_ids: list[int], now: datetime) -> int:
    """Queues an update of each loss's DM, unless one not yet picked up is already waiting (it will
    read the same state). Returns the number of messages queued."""
    if not loss_ids:
        return 0
    waiting = await queries.bring_forward_waiting_refreshes(session, loss_ids, now)
    needed = [loss_id for loss_id in loss_ids if loss_id not in waiting]
    await queue_messages(session, kind=OutboxKind.REFRESH, loss_ids=needed, now=now)
    return len(needed)


async def deliver_due_messages(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    slack: AsyncWebClient,
    catalogue: Catalogue,
    clock: Callable[[], datetime],
) -> int:
    """Sends every due message that no other process holds. Returns how many were handled.

    Messages are claimed a batch at a time. A batch that is still not sent when its claim nears
    its end (Slack rate-limiting us hard) hands the rest back and returns, rather than let another
    process claim messages this one is about to send; the next round claims them afresh.
    """
    handled = 0
    while True:
        claimed_at = clock()
        until = claimed_at + CLAIM_FOR
        async with session_factory() as session, session.begin():
            claimed = await queries.claim_due_messages(session, now=claimed_at, until=until, limit=BATCH_SIZE)
        if not claimed:
            return handled
        for position, message in enumerate(claimed):
            now = clock()
            if now >= until - CLAIM_MARGIN:
                async with session_factory() as session, session.begin():
                    await queries.release_claims(session, [rest.id for rest in claimed[position:]], until)
                return handled
            await _deliver(message, session_factory=session_factory, slack=slack, catalogue=catalogue, now=now)
            handled += 1


async def next_due_at(session_factory: async_sessionmaker[AsyncSession], now: datetime) -> datetime | None:
    async with session_factory() as session, session.begin():
        return await queries.next_message_due_at(session, now)


async def _deliver(
    message: queries.ClaimedMessage,
    *,
    session_factory: async_sessionmaker[AsyncSession],
    slack: AsyncWebClient,
    catalogue: Catalogue,
    now: datetime,
) -> None:
    try:
        if message.kind == OutboxKind.PROMPT:
            await _send_prompt(message, session_factory=session_factory, slack=slack, catalogue=catalogue, now=now)
        else:
            await _refresh_prompt(message, session_factory=session_factory, slack=slack, catalogue=catalogue, now=now)
    except PermanentFailure as failure:
        await _record_failure(session_factory, message, str(failure), now)
    except (TimeoutError, SlackApiError, aiohttp.ClientError) as error:
        await _retry_later(session_factory, message, _describe(error), now)
    except Exception:
        logger.exception("unexpected error sending %s for loss %s; it will be retried", message.kind, message.loss_id)
        await _retry_later(session_factory, message, "unexpected error (see the log)", now)


async def _send_prompt(
    message: queries.ClaimedMessage,
    *,
    session_factory: async_sessionmaker[AsyncSession],
    slack: AsyncWebClient,
    catalogue: Catalogue,
    now: datetime,
) -> None:
    async with session_factory() as session, session.begin():
        found = await queries.loss_with_deal(session, message.loss_id)
        if found is None or found[0].state != LossState.AWAITING or found[0].prompt_ts is not None:
            await queries.mark_sent(session, message.id, now)  # nothing is owed any more
            return
        loss, deal = found
        owner = deal.owner_slack_id
        cached = await queries.slack_user_id(session, deal.owner_email) if owner is None and deal.owner_email else None
    if owner is None:
        owner = cached or await _look_up_owner(deal, slack)
        # Stored before the DM goes out: the owner may click its button at once.
        async with session_factory() as session, session.begin():
            if cached is None and deal.owner_email is not None:
                await session.merge(SlackUser(email=deal.owner_email, user_id=owner, looked_up_at=now))
            await queries.set_owner_slack_id(session, deal.id, email=deal.owner_email, user_id=owner)
    content = build_prompt_message(deal=deal, loss=loss, entry=None, catalogue=catalogue)
    response = await _call(slack.chat_postMessage(channel=owner, **content.as_kwargs()))
    async with session_factory() as session, session.begin():
        # Locked so that a cancel or a log racing with this send either sees the prompt or is seen by it.
        sent = await session.get_one(Loss, loss.id, with_for_update=True, populate_existing=True)
        sent.prompt_channel = response["channel"]
        sent.prompt_ts = response["ts"]
        sent.prompted_at = now
        sent.delivery_error = None
        if sent.state != LossState.AWAITING:
            await queue_refreshes(session, loss_ids=[sent.id], now=now)
        await queries.mark_sent(session, message.id, now)


async def _refresh_prompt(
    message: queries.ClaimedMessage,
    *,
    session_factory: async_sessionmaker[AsyncSession],
    slack: AsyncWebClient,
    catalogue: Catalogue,
    now: datetime,
) -> None:
    async with session_factory() as session, session.begin():
        found = await queries.loss_with_deal(session, message.loss_id)
        entry = await queries.latest_entry(session, message.loss_id)
    if found is not None:
        loss, deal = found
        channel, ts = loss.prompt_channel, loss.prompt_ts
        # A prompt not sent yet needs no update: it will show the current state when it goes out.
        if channel is not None and ts is not None:
            content = build_prompt_message(deal=deal, loss=loss, entry=entry, catalogue=catalogue)
            await _call(slack.chat_update(channel=channel, ts=ts, **content.as_kwargs()))
    async with session_factory() as session, session.begin():
        await queries.mark_sent(session, message.id, now)


async def _look_up_owner(deal: Deal, slack: AsyncWebClient) -> str:
    """Finds the deal owner's Slack id by the email the CRM gave (`users.lookupByEmail`)."""
    if deal.owner_email is None:
        raise PermanentFailure("the CRM gave no owner for this deal")
    try:
        response = await _call(slack.users_lookupByEmail(email=deal.owner_email))
    except PermanentFailure:
        raise PermanentFailure(f"no Slack user has the email {deal.owner_email}") from None
    return str(response["user"]["id"])


async def _call(request: Awaitable[AsyncSlackResponse]) -> AsyncSlackResponse:
    """Awaits a Slack Web API call, turning errors that retrying cannot fix into PermanentFailure."""
    try:
        return await request
    except SlackApiError as error:
        code = error.response.get("error")
        if code in PERMANENT_ERRORS:
            raise PermanentFailure(f"Slack answered {code}") from error
        raise


async def _record_failure(
    session_factory: async_sessionmaker[AsyncSession], claimed: queries.ClaimedMessage, reason: str, now: datetime
) -> None:
    loss_id = claimed.loss_id
    async with session_factory() as session, session.begin():
        message = await session.get_one(OutboxMessage, claimed.id)
        message.state = OutboxState.FAILED
        message.attempts += 1
        message.last_error = reason
        found = await queries.loss_with_deal(session, loss_id)
        if found is not None:
            loss, deal = found
            loss.delivery_error = reason
            logger.warning(
                "cannot send the %s for deal %s:%s (%r, owner %s): %s",
                message.kind,
                deal.source,
                deal.external_id,
                deal.name,
                deal.owner_email or deal.owner_slack_id,
                reason,
            )


async def _retry_later(
    session_factory: async_sessionmaker[AsyncSession], claimed: queries.ClaimedMessage, reason: str, now: datetime
) -> None:
    async with session_factory() as session, session.begin():
        message = await session.get_one(OutboxMessage, claimed.id)
        message.attempts += 1
        message.last_error = reason
        message.claimed_until = None
        if message.attempts >= MAX_ATTEMPTS:
            message.state = OutboxState.FAILED
            logger.error(
                "giving up on the %s for loss %s after %d attempts: %s",
                message.kind,
                message.loss_id,
                message.attempts,
                reason,
            )
        else:
            message.due_at = now + backoff(message.attempts)
            logger.warning(
                "the %s for loss %s failed (%s); retrying at %s",
                message.kind,
                message.loss_id,
                reason,
                message.due_at.isoformat(),
            )


def backoff(attempts: int) -> timedelta:
    """10 s, 20 s, 40 s … up to 30 minutes between tries."""
    return min(timedelta(seconds=10 * 2 ** (attempts - 1)), timedelta(minutes=30))


def _describe(error: Exception) -> str:
    if isinstance(error, SlackApiError):
        return f"Slack answered {error.response.status_code}: {error.response.get('error')}"
    return f"{type(error).__name__}: {error}"
