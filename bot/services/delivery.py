"""Making the Slack calls the outbox holds: posting and updating prompts, reminders, escalations,
revisit nudges, debriefs and route posts, and posting the weekly digest (then sharing its chart).

A message's content is built from its losses as they are when the call is made. A prompt finds its
rep on the way out (`users.lookupByEmail`, which also gives their time zone, cached) and, once
posted, starts the clock on the losses' reminders and escalation.

A message is posted once, though Slack's API has no idempotency key: every post carries metadata
naming its message and outbox row (POST_EVENT_TYPE), and the time a try began is stored before the
call. A try whose outcome is not known (the answer timed out or the connection dropped, the process
died, or recording the answer failed) leaves that mark, and the next try first looks for the post in
the conversation's recent history: if Slack has it, its `ts` is recorded instead of posting again.
A try Slack answered with a failure clears the mark, and the next one posts without looking.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.logs import log_ids
from bot.metrics import Metrics
from bot.periods import Week, week_of
from bot.reasons import Catalogue
from bot.services import outbox
from bot.services.chasing import ChasePolicy, chase_schedule, rep_zone
from bot.services.digest import build_digest
from bot.services.digest_chart import share_digest_chart
from bot.services.managers import slack_id_by_email
from bot.services.presenting import deal_facts, logged_reason
from bot.slack_client import PermanentFailure, call
from bot.views.chasing import EscalationNotice, build_escalation, build_reminder
from bot.views.data import DealLoss, MessageContent, NudgeStanding, NudgeState, RecodeNotice
from bot.views.debrief import build_debrief, build_route_post
from bot.views.digest import UNNAMED, build_digest_message
from bot.views.prompt import build_prompt_message
from bot.views.recode import build_recode_notice
from bot.views.revisit import build_revisit_nudge
from storage import deal_queries, digest_queries, loss_queries, message_queries, rep_queries, revisit_queries
from storage.models import (
    Deal,
    Loss,
    LossState,
    Message,
    MessageKind,
    OutboxKind,
    Rep,
    Revisit,
    RevisitState,
    SlackUser,
)

logger = logging.getLogger(__name__)

ANNOUNCEMENTS = frozenset({MessageKind.DEBRIEF, MessageKind.ROUTE})
"""Posts about logged reasons (`bot.services.debriefs`): to a channel, about losses no longer awaiting."""


# Why a rep could not be found, as the loss and the admin view (`bot.services.admin`) tell it.
NO_SLACK_USER = "no Slack user has the email"
NO_OWNER = "the CRM gave no owner for this deal"

NUDGE_STANDINGS = {
    RevisitState.DUE: NudgeStanding.WAITING,
    RevisitState.SNOOZED: NudgeStanding.SNOOZED,
    RevisitState.DROPPED: NudgeStanding.DROPPED,
    RevisitState.REOPENED: NudgeStanding.REOPENED,
    RevisitState.DONE: NudgeStanding.REMOVED,
}


POST_EVENT_TYPE = "closedlost_outbox"
"""The `metadata.event_type` of every post; its `event_payload` names the message and outbox row."""
LOOKUP_MARGIN = timedelta(minutes=10)
"""How far before a try's start the history is read: room for Slack's clock to differ from ours."""
LOOKUP_PAGE = 50
LOOKUP_PAGES = 10
"""At most this many pages of history are read: a post not among the last 500 messages is taken as
not made."""


class NotPostedYet(Exception):
    """An update found its message still waiting to be posted; it is retried after a backoff."""


@dataclass(frozen=True)
class Listed:
    """A loss a message lists: its rows, and the loss as the message shows it."""

    loss: Loss
    deal: Deal
    shown: DealLoss

    @property
    def awaiting(self) -> bool:
        return self.shown.awaiting


@dataclass(frozen=True)
class SlackDelivery:
    session_factory: async_sessionmaker[AsyncSession]
    slack: AsyncWebClient
    catalogue: Catalogue
    chase: ChasePolicy
    """Starts the reminders and escalation of a prompt once it is posted."""
    team_tz: ZoneInfo
    """TIMEZONE: the weeks of digests."""
    team_currency: str
    """CURRENCY: the digest ranks its largest losses in it."""
    team: dict[str, str]
    """Rep email to manager email (TEAM_FILE)."""
    clock: Callable[[], datetime]
    metrics: Metrics
    """Counts the messages posted, by kind."""

    async def send(self, claimed: message_queries.ClaimedMessage, now: datetime) -> None:
        if claimed.kind == OutboxKind.POST:
            await self._post(claimed, now)
        else:
            await self._update(claimed, now)

    async def record_failure(self, claimed: message_queries.ClaimedMessage, reason: str, now: datetime) -> None:
        """Records a call that cannot succeed on the losses it was about, and tells the admin."""
        async with self.session_factory() as session, session.begin():
            message = await session.get_one(Message, claimed.message_id)
            if message.kind in ANNOUNCEMENTS:
                # The reason is stored; only its announcement is lost, and the channel needs fixing.
                logger.warning(
                    "cannot %s the %s about a logged reason in %s: %s (is the bot invited to it?)",
                    claimed.kind,
                    message.kind,
                    message.post_to,
                    reason,
                )
                return
            if message.kind == MessageKind.DIGEST:
                logger.error("cannot post the weekly digest to %s: %s", message.post_to, reason)
                return
            if message.kind == MessageKind.RECODE:
                # The re-code is stored; the rep still sees the new reason on their DM.
                logger.warning("cannot %s the re-code notice to %s: %s", claimed.kind, message.rep_slack_id, reason)
                return
            items = _shown(message, await message_queries.message_items(session, message.id, for_update=True))
            if message.kind == MessageKind.REVISIT:
                # The revisit stays open: /closedlost revisit and the Home tab still list it.
                logger.warning(
                    "cannot %s the revisit nudge for %s (rep %s): %s",
                    claimed.kind,
                    ", ".join(f"{item.deal.source}:{item.deal.external_id} ({item.deal.name!r})" for item in items),
                    message.rep_slack_id or message.rep_email,
                    reason,
                    extra=_about(items, message),
                )
                return
            failed = [item for item in items if item.awaiting]
            for item in failed:
                item.loss.delivery_error = f"{message.kind} not delivered: {reason}"
            deals = ", ".join(f"{item.deal.source}:{item.deal.external_id} ({item.deal.name!r})" for item in failed)
            logger.warning(
                "cannot %s the %s for %s (rep %s): %s",
                claimed.kind,
                message.kind,
                deals or "deals no longer awaiting a reason",
                message.rep_slack_id or message.rep_email,
                reason,
                extra=_about(failed, message),
            )

    async def _post(self, claimed: message_queries.ClaimedMessage, now: datetime) -> None:
        async with self.session_factory() as session, session.begin():
            message = await session.get_one(Message, claimed.message_id)
            items = _shown(message, await message_queries.message_items(session, message.id))
            if message.ts is not None or not await _still_owed(session, message, items):
                await message_queries.mark_sent(session, claimed, now)  # nothing is owed any more
                return
        if message.kind not in ANNOUNCEMENTS and message.kind not in (MessageKind.DIGEST, MessageKind.RECODE):
            # An announcement names the rep who logged, and a re-code notice goes to them: a known
            # Slack user; a digest is about no rep.
            await self._find_rep(message, items, now)
        # A digest's chart covers the weeks up to the digest's; known before the post, so that sharing
        # the chart after it reads nothing that could fail.
        digest_week = await self._digest_week(message) if message.kind == MessageKind.DIGEST else None
        # A try whose outcome is not known may have posted it: then only its ts is left to record.
        found = await self._look_for_earlier_post(message) if message.post_started_at is not None else None
        channel, ts = found or await self._post_marked(claimed, message, await self._content(message, items), now)
        self.metrics.messages_posted.labels(message.kind).inc()
        async with self.session_factory() as session, session.begin():
            # First, so that a process whose claim was taken over meanwhile records nothing.
            await message_queries.mark_sent(session, claimed, now)
            posted = await session.get_one(Message, message.id)
            posted.channel = channel
            posted.ts = ts
            posted.posted_at = now
            if message.kind == MessageKind.PROMPT:
                await self._start_chasing(session, posted, now)
        if digest_week is not None:
            # After the post is recorded: a retried post has not shared a picture yet, and the
            # picture, shared once, is never shared again.
            await share_digest_chart(
                session_factory=self.session_factory,
                slack=self.slack,
                catalogue=self.catalogue,
                week=digest_week,
                tz=self.team_tz,
                channel=channel,
            )

    async def _post_marked(
        self, claimed: message_queries.ClaimedMessage, message: Message, content: MessageContent, now: datetime
    ) -> tuple[str, str]:
        """Posts the message, marked as a try under way (`post_started_at`, committed first) until
        Slack answers; returns its channel and ts."""
        async with self.session_factory() as session, session.begin():
            trying = await session.get_one(Message, message.id)
            if trying.post_started_at is None:
                trying.post_started_at = now
        try:
            response = await call(
                self.slack.chat_postMessage(
                    channel=message.post_to or message.rep_slack_id or "",
                    thread_ts=message.thread_ts,
                    metadata={
                        "event_type": POST_EVENT_TYPE,
                        "event_payload": {"message_id": message.id, "outbox_id": claimed.id},
                    },
                    **content.as_kwargs(),
                )
            )
        except (SlackApiError, PermanentFailure):
            # Slack answered: nothing was posted, so the next try need not look for it.
            async with self.session_factory() as session, session.begin():
                (await session.get_one(Message, message.id)).post_started_at = None
            raise
        return str(response["channel"]), str(response["ts"])

    async def _look_for_earlier_post(self, message: Message) -> tuple[str, str] | None:
        """`_earlier_post`, or None when the app may not read the conversation's history: it was
        installed before it asked for the history scopes, and posts at least once, as it used to."""
        try:
            return await self._earlier_post(message)
        except SlackApiError as error:
            if error.response.get("error") != "missing_scope":
                raise
            logger.warning(
                "cannot look for an earlier post of message %s (Slack answered missing_scope: reinstall the app"
                " to grant it the history scopes manifest.yml asks for); posting it, though an earlier try may have",
                message.id,
            )
            return None

    async def _earlier_post(self, message: Message) -> tuple[str, str] | None:
        """The channel and ts of this message as an earlier try whose outcome is not known posted it,
        found by its metadata in the conversation's history since that try began (in the thread's
        replies, for a post in a thread); None when Slack has no such post."""
        assert message.post_started_at is not None
        if message.post_to is not None:
            channel = message.post_to
        else:
            # The DM's history is read by the IM channel's id; a post is addressed by the user's.
            opened = await call(self.slack.conversations_open(users=message.rep_slack_id or ""))
            channel = str(opened["channel"]["id"])
        oldest = f"{(message.post_started_at - LOOKUP_MARGIN).timestamp():.6f}"
        cursor = None
        for _ in range(LOOKUP_PAGES):
            if message.thread_ts is not None:
                page = await call(
                    self.slack.conversations_replies(
                        channel=channel,
                        ts=message.thread_ts,
                        oldest=oldest,
                        limit=LOOKUP_PAGE,
                        cursor=cursor,
                        include_all_metadata=True,
                    )
                )
            else:
                page = await call(
                    self.slack.conversations_history(
                        channel=channel, oldest=oldest, limit=LOOKUP_PAGE, cursor=cursor, include_all_metadata=True
                    )
                )
            for found in page.get("messages") or []:
                if _posts_message(found, message.id):
                    logger.info(
                        "message %s was posted by an earlier try whose answer was lost (ts %s): recorded, not"
                        " posted again",
                        message.id,
                        found["ts"],
                    )
                    return channel, str(found["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        logger.warning(
            "message %s is not in the last %d messages of %s: posting it, though an earlier try may have",
            message.id,
            LOOKUP_PAGE * LOOKUP_PAGES,
            channel,
        )
        return None

    async def _update(self, claimed: message_queries.ClaimedMessage, now: datetime) -> None:
        async with self.session_factory() as session, session.begin():
            message = await session.get_one(Message, claimed.message_id)
            if message.ts is None:
                if await message_queries.post_pending(session, message.id):
                    raise NotPostedYet(f"message {message.id} is not posted yet")
                await message_queries.mark_sent(session, claimed, now)  # never posted: nothing to update
                return
            items = _shown(message, await message_queries.message_items(session, message.id))
        content = await self._content(message, items)
        assert message.channel is not None
        await call(self.slack.chat_update(channel=message.channel, ts=message.ts, **content.as_kwargs()))
        async with self.session_factory() as session, session.begin():
            await message_queries.mark_sent(session, claimed, now)

    async def _find_rep(self, message: Message, items: list[Listed], now: datetime) -> None:
        """Makes sure the rep's Slack id and time zone are known before the message goes out (the rep
        may click its button at once): from the CRM's Slack id or the email cache, else from Slack
        (`users.lookupByEmail` gives both; `users.info` the time zone of a known id), once per rep."""
        user_id = message.rep_slack_id
        async with self.session_factory() as session, session.begin():
            if user_id is None and message.rep_email is not None:
                user_id = await rep_queries.slack_user_id(session, message.rep_email)
            rep_known = user_id is not None and await rep_queries.has_rep(session, user_id)
        if rep_known and user_id == message.rep_slack_id:
            return
        looked_up_by_email = False
        tz = name = None
        if not rep_known:
            if user_id is not None:
                response = await call(self.slack.users_info(user=user_id))
            elif message.rep_email is not None:
                try:
                    response = await call(self.slack.users_lookupByEmail(email=message.rep_email))
                except PermanentFailure:
                    raise PermanentFailure(f"{NO_SLACK_USER} {message.rep_email}") from None
                looked_up_by_email = True
            else:
                raise PermanentFailure(NO_OWNER)
            user_id, tz = str(response["user"]["id"]), response["user"].get("tz")
            name = display_name(response["user"])
        assert user_id is not None
        async with self.session_factory() as session, session.begin():
            if looked_up_by_email:
                await session.merge(SlackUser(email=message.rep_email, user_id=user_id, looked_up_at=now))
            if not rep_known:
                await session.merge(Rep(slack_id=user_id, tz=tz, name=name, looked_up_at=now))
            stored = await session.get_one(Message, message.id)
            stored.rep_slack_id = user_id
            if message.rep_slack_id is None and message.rep_email is not None:
                deal_ids = [item.deal.id for item in items]
                await deal_queries.set_owner_slack_id(session, deal_ids, email=message.rep_email, user_id=user_id)
            # Earlier messages about these deals (a previous owner's prompt) can now name the rep.
            others = await message_queries.message_ids_about(session, [item.loss.id for item in items])
            await outbox.queue_updates(session, message_ids=[other for other in others if other != message.id], now=now)
        message.rep_slack_id = user_id

    async def _content(self, message: Message, listed: list[Listed]) -> MessageContent:
        if message.kind == MessageKind.DIGEST:
            return await self._digest(message)
        if message.kind == MessageKind.RECODE:
            return await self._recode_notice(message)
        items = [item.shown for item in listed]
        if message.kind == MessageKind.PROMPT:
            return build_prompt_message(items=items, catalogue=self.catalogue, message_id=message.id, page=message.page)
        if message.kind == MessageKind.REMINDER:
            return build_reminder(
                items,
                catalogue=self.catalogue,
                message_id=message.id,
                escalation=await self._escalation_notice(message, listed),
            )
        if message.kind == MessageKind.REVISIT:
            [item] = items
            async with self.session_factory() as session, session.begin():
                revisit = await revisit_queries.revisit_of_loss(session, item.loss_id)
            assert revisit is not None
            nudge = _nudge_state(revisit, deal_source=listed[0].deal.source)
            return build_revisit_nudge(item, nudge=nudge, catalogue=self.catalogue, now=self.clock())
        if message.kind == MessageKind.DEBRIEF:
            return build_debrief(items, catalogue=self.catalogue)
        if message.kind == MessageKind.ROUTE:
            return build_route_post(items, catalogue=self.catalogue)
        assert message.rep_slack_id is not None
        return build_escalation(
            items,
            rep_name=await self._rep_name(message.rep_slack_id, fallback=message.rep_email or "A rep"),
            manager=await self._manager(message),
            catalogue=self.catalogue,
        )

    async def _escalation_notice(self, message: Message, listed: list[Listed]) -> EscalationNotice | None:
        """When the reminder's waiting losses go to the manager channel, if that comes before any
        other reminder: so the reminder can say it. None when nothing is escalated."""
        if self.chase.manager_channel is None:
            return None
        due = [
            item.loss.escalation_due_at
            for item in listed
            if item.awaiting
            and item.loss.escalation_due_at is not None
            and item.loss.escalated_at is None
            and (item.loss.reminder_due_at is None or item.loss.escalation_due_at <= item.loss.reminder_due_at)
        ]
        if not due:
            return None
        rep = message.rep_slack_id
        async with self.session_factory() as session, session.begin():
            tz = rep_zone(await rep_queries.rep_tz(session, rep) if rep else None, self.chase.team_tz)
        return EscalationNotice(at=min(due), now=self.clock(), tz=tz)

    async def _rep_name(self, slack_id: str, *, fallback: str) -> str:
        """The rep's display name, cached on their Rep row; looked up with `users.info` once when the
        row has none (a rep found before names were kept). `fallback` (never a mention) when Slack
        has no name for them."""
        async with self.session_factory() as session, session.begin():
            rep = await session.get(Rep, slack_id)
            if rep is not None and rep.name:
                return rep.name
        try:
            response = await call(self.slack.users_info(user=slack_id))
        except PermanentFailure:
            return fallback
        name = display_name(response["user"])
        if name is None:
            return fallback
        async with self.session_factory() as session, session.begin():
            rep = await session.get(Rep, slack_id)
            if rep is None:
                session.add(Rep(slack_id=slack_id, tz=response["user"].get("tz"), name=name, looked_up_at=self.clock()))
            else:
                rep.name = name
        return name

    async def _digest(self, message: Message) -> MessageContent:
        """The digest of its run's week, from the data as it is now."""
        digest = await build_digest(
            session_factory=self.session_factory,
            catalogue=self.catalogue,
            week=await self._digest_week(message),
            now=self.clock(),
            tz=self.team_tz,
            currency=self.team_currency,
        )
        # Reps found before names were kept have none cached: Slack is asked once for each.
        names = dict(digest.names)
        for user_id in sorted(digest.people() - names.keys()):
            names[user_id] = await self._rep_name(user_id, fallback=UNNAMED)
        return build_digest_message(replace(digest, names=names), self.catalogue)

    async def _recode_notice(self, message: Message) -> MessageContent:
        assert message.reason_entry_id is not None
        async with self.session_factory() as session, session.begin():
            recode = await loss_queries.recode_of(session, message.reason_entry_id)
        notice = RecodeNotice(
            deal_name=recode.deal.name,
            manager=recode.entry.logged_by,
            before=logged_reason(recode.before),
            after=logged_reason(recode.entry),
        )
        return build_recode_notice(notice, catalogue=self.catalogue)

    async def _digest_week(self, message: Message) -> Week:
        async with self.session_factory() as session, session.begin():
            week_start = await digest_queries.digest_week_start(session, message.id)
        return week_of(week_start, tz=self.team_tz, today=self.clock().astimezone(self.team_tz).date())

    async def _manager(self, message: Message) -> str | None:
        """The rep's manager as TEAM_FILE names them: their Slack id, or their email when Slack has
        no such user (the post still goes out)."""
        email = self.team.get((message.rep_email or "").lower())
        if email is None:
            return None
        found = await slack_id_by_email(
            session_factory=self.session_factory, slack=self.slack, email=email, now=self.clock()
        )
        return found or email

    async def _start_chasing(self, session: AsyncSession, message: Message, now: datetime) -> None:
        """The prompt is out: its losses are prompted now, and due their reminders and escalation. A
        loss that changed while the prompt was on its way gets the message updated."""
        assert message.rep_slack_id is not None
        tz = rep_zone(await rep_queries.rep_tz(session, message.rep_slack_id), self.chase.team_tz)
        schedule = chase_schedule(now, self.chase, tz=tz)
        items = _shown(message, await message_queries.message_items(session, message.id, for_update=True))
        await loss_queries.update_losses(
            session,
            [{"id": item.loss.id, "prompted_at": now, **schedule} for item in items if item.awaiting],
        )
        if not all(item.awaiting for item in items):
            await outbox.queue_updates(session, message_ids=[message.id], now=now)


def display_name(user: dict[str, object]) -> str | None:
    """What Slack shows as a user's name: their display name when they set one, else their full
    name (`users.info`, `users.lookupByEmail`)."""
    profile = user.get("profile")
    profile = profile if isinstance(profile, dict) else {}
    for name in (profile.get("display_name"), user.get("real_name"), profile.get("real_name")):
        if isinstance(name, str) and name.strip():
            return name.strip()
    return None


def _posts_message(found: dict[str, Any], message_id: int) -> bool:
    """Whether a message from the history is a post of our message `message_id` (by its metadata)."""
    metadata = found.get("metadata") or {}
    payload = metadata.get("event_payload") or {}
    return metadata.get("event_type") == POST_EVENT_TYPE and payload.get("message_id") == message_id


async def _still_owed(session: AsyncSession, message: Message, items: list[Listed]) -> bool:
    """Whether the message is still worth posting: a nudge while its revisit waits for this nudge's
    answer (not answered, closed or moved to another date meanwhile); a message asking for reasons while one
    of its losses awaits a reason; an announcement of a logged reason until posted (the reason stays
    stored whatever the deal does next); a digest and a re-code notice until posted."""
    if message.kind in ANNOUNCEMENTS or message.kind in (MessageKind.DIGEST, MessageKind.RECODE):
        return True
    if message.kind == MessageKind.REVISIT:
        revisit = await revisit_queries.revisit_of_loss(session, items[0].loss.id) if items else None
        return (
            revisit is not None
            and revisit.state == RevisitState.DUE
            and revisit.nudge_at is None
            and revisit.message_id == message.id
        )
    return any(item.awaiting for item in items)


def _shown(message: Message, rows: list[message_queries.MessageItem]) -> list[Listed]:
    """The message's losses as it shows them: a loss whose deal changed owner since the message
    listed it is shown as moved (for a prompt: the loss's prompt is now another message)."""
    return [
        Listed(
            loss=row.loss,
            deal=row.deal,
            shown=DealLoss(
                loss_id=row.loss.id,
                lost_at=row.loss.lost_at,
                deal=deal_facts(row.deal),
                entry=logged_reason(row.entry) if row.entry is not None else None,
                needs_reason=row.loss.state == LossState.AWAITING,
                cancelled=row.loss.state == LossState.CANCELLED,
                moved=row.loss.prompt_message_id != message.id
                if message.kind == MessageKind.PROMPT
                else row.deal.owner_slack_id != message.rep_slack_id,
            ),
        )
        for row in rows
    ]


def _about(items: list[Listed], message: Message) -> dict[str, object]:
    """The ids of a log line about these losses and the rep the message is for."""
    return log_ids(
        deals=[(item.deal.source, item.deal.external_id) for item in items],
        losses=[item.loss.id for item in items],
        user=message.rep_slack_id,
    )


def _nudge_state(revisit: Revisit, *, deal_source: str) -> NudgeState:
    return NudgeState(
        revisit_id=revisit.id,
        standing=NUDGE_STANDINGS[revisit.state],
        due_on=revisit.due_on,
        reopened_in_crm=revisit.closed_by == deal_source,
    )
