"""A rep's side of a loss: opening it to log or edit a reason, and storing that reason."""

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.competitors import competitor_key, detail_key
from bot.errors import AlreadyLogged, LossCancelled, LossNotFound, NothingToRecode, NotOwner
from bot.reasons import CLEAN_UP_CODE, Catalogue, Requirement, code_for_crm_reason
from bot.second_look import Suggestion, reason_in_text, second_look
from bot.services import crm_jobs, outbox, revisits
from bot.services.competitors import logged_competitors
from bot.services.debriefs import Audience, queue_reason_posts
from bot.services.presenting import deal_facts
from bot.validation import ReasonForm
from bot.views.data import DealFacts
from storage import loss_queries, message_queries
from storage.models import Deal, Loss, LossState, Message, MessageKind, ReasonEntry


@dataclass(frozen=True)
class LossForModal:
    deal: DealFacts
    revision: int
    """The loss's newest revision: a submission made from this modal must build on it."""
    current: ReasonForm | None
    """What the modal opens with: the reason logged so far, to edit; for a first answer, the reason
    the CRM already has (mapped through REASON_ALIASES, or else found by the words of its text, with
    the competitor it names), for the rep to confirm; or None."""


async def open_loss(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    loss_id: int,
    user_id: str,
    catalogue: Catalogue,
    reason_aliases: Mapping[str, str],
    competitor_merges: Mapping[str, str],
    recoding: bool = False,
) -> LossForModal:
    """What the reason modal needs, for the deal's owner only; with `recoding`, for a manager the
    caller found may re-code it (`bot.services.recoding`), on a loss with a reason."""
    async with session_factory() as session, session.begin():
        found = await loss_queries.loss_with_deal(session, loss_id)
        if found is None:
            raise LossNotFound()
        loss, deal = found
        entry = await loss_queries.latest_entry(session, loss_id)
        _check_can_log(loss, deal, user_id, recoding=recoding, logged=entry is not None)
        current = None
        if entry is not None:
            current = ReasonForm(
                reason_code=entry.reason_code,
                detail=entry.detail,
                explanation=entry.explanation,
                revisit_on=entry.revisit_on,
            )
        elif deal.crm_reason:
            current = await _crm_reason_form(session, deal.crm_reason, catalogue, reason_aliases, competitor_merges)
    revision = entry.revision if entry is not None else 0
    return LossForModal(deal=deal_facts(deal), revision=revision, current=current)


async def _crm_reason_form(
    session: AsyncSession,
    crm_reason: str,
    catalogue: Catalogue,
    reason_aliases: Mapping[str, str],
    competitor_merges: Mapping[str, str],
) -> ReasonForm | None:
    code = code_for_crm_reason(crm_reason, aliases=reason_aliases, catalogue=catalogue)
    if code is not None:
        return ReasonForm(reason_code=code, detail=None, explanation="", revisit_on=None)
    competitors = await logged_competitors(session, catalogue=catalogue, competitor_merges=competitor_merges)
    found = reason_in_text(
        crm_reason,
        catalogue=catalogue,
        competitors={name.key: name.spelling for name in competitors},
        merges=competitor_merges,
    )
    if found is None:
        return None
    return ReasonForm(reason_code=found.code, detail=found.competitor, explanation="", revisit_on=None)


@dataclass(frozen=True)
class SecondLook:
    deal: DealFacts
    suggestion: Suggestion


async def take_second_look(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    loss_id: int,
    revision: int,
    user_id: str,
    form: ReasonForm,
    catalogue: Catalogue,
    competitor_merges: Mapping[str, str],
) -> SecondLook | None:
    """The reason a validated answer's explanation points at instead of the one picked
    (bot/second_look.py), with the team's logged competitors; None when the words agree with the
    pick. Refused, as storing it would be, for anyone but the deal's owner or a cancelled loss; not
    asked when the loss has moved past `revision` (the modal's), which `record_reason` then answers."""
    picked = catalogue.get(form.reason_code or "")
    if picked is None:
        return None
    async with session_factory() as session, session.begin():
        found = await loss_queries.loss_with_deal(session, loss_id)
        if found is None:
            raise LossNotFound()
        loss, deal = found
        _check_can_log(loss, deal, user_id, recoding=False, logged=False)
        latest = await loss_queries.latest_entry(session, loss_id)
        if (latest.revision if latest is not None else 0) != revision:
            return None
        competitors = await logged_competitors(session, catalogue=catalogue, competitor_merges=competitor_merges)
    suggestion = second_look(
        form.explanation,
        picked,
        catalogue=catalogue,
        competitors={name.key: name.spelling for name in competitors},
        merges=competitor_merges,
    )
    return SecondLook(deal=deal_facts(deal), suggestion=suggestion) if suggestion is not None else None


async def record_reason(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    loss_id: int,
    revision: int,
    form: ReasonForm,
    catalogue: Catalogue,
    user_id: str,
    view_id: str | None,
    now: datetime,
    write_back_to: Collection[str],
    audience: Audience,
    competitor_merges: Mapping[str, str],
    confirmed_over: str | None = None,
    recoding: bool = False,
) -> ReasonEntry:
    """Stores a validated reason as the loss's next revision, with the loss's revisit on its date,
    and queues the DM's update, the reason's write-back to the deal's CRM when that CRM is in
    `write_back_to`, and the posts it calls for in `audience`'s channels.

    `revision` is the one the modal was opened on; a second submission made against the same
    revision (a double click, a second window) is refused by the unique (loss, revision) key, and
    the same view submitted again returns the entry it already made. The detail (a competitor, a
    missing feature) is stored with its key, a competitor's through `competitor_merges`
    (COMPETITORS_FILE). `confirmed_over` is the reason the modal suggested when the rep kept theirs.

    With `recoding`, `user_id` is a manager the caller found may re-code the rep's reasons
    (`bot.services.recoding`): the revision is stored as theirs, marked re-coded, over the reason
    the loss has, and a notice of it is queued in the rep's prompt thread.
    """
    try:
        async with session_factory() as session, session.begin():
            found = await loss_queries.loss_with_deal(session, loss_id, for_update=True)
            if found is None:
                raise LossNotFound()
            loss, deal = found
            latest = await loss_queries.latest_entry(session, loss.id)
            _check_can_log(loss, deal, user_id, recoding=recoding, logged=latest is not None)
            if latest is not None and latest.revision != revision:
                if view_id is not None and latest.view_id == view_id:
                    return latest
                raise AlreadyLogged()
            entry = _entry(loss.id, revision + 1, form, catalogue, competitor_merges, user_id, view_id, now)
            entry.confirmed_over = confirmed_over
            entry.recoded = recoding
            session.add(entry)
            await session.flush()
            await revisits.record_revisit_date(
                session,
                loss_id=loss.id,
                before=latest.revisit_on if latest is not None else None,
                after=entry.revisit_on,
                user_id=user_id,
                now=now,
            )
            if loss.state == LossState.AWAITING:
                loss.state = LossState.LOGGED
                loss.logged_at = now
            messages = await message_queries.message_ids_about(session, [loss.id])
            await outbox.queue_updates(session, message_ids=messages, now=now)
            if deal.source in write_back_to:
                await crm_jobs.queue_write_back(session, loss_id=loss.id, source=deal.source, now=now)
            await queue_reason_posts(
                session,
                audience=audience,
                logged=[(loss, deal)],
                reason_code=entry.reason_code,
                first=latest is None,
                rep_slack_id=deal.owner_slack_id or user_id,
                now=now,
            )
            if recoding:
                await _queue_recode_notice(session, loss=loss, deal=deal, entry=entry, now=now)
    except IntegrityError as error:
        if "revision" not in str(error.orig):
            raise
        raise AlreadyLogged() from None
    return entry


async def reason_codes_missing_from(
    catalogue: Catalogue, *, session_factory: async_sessionmaker[AsyncSession]
) -> set[str]:
    """Codes that stored answers use but the catalogue no longer has; a catalogue must retire a
    code, never drop it (README.md, "The reason catalogue")."""
    async with session_factory() as session, session.begin():
        return await loss_queries.stored_reason_codes(session) - catalogue.codes


def _check_can_log(loss: Loss, deal: Deal, user_id: str, *, recoding: bool, logged: bool) -> None:
    if loss.state == LossState.CANCELLED:
        raise LossCancelled()
    if recoding:
        if not logged:
            raise NothingToRecode()
    elif deal.owner_slack_id != user_id:
        raise NotOwner(deal.owner_slack_id)


async def _queue_recode_notice(
    session: AsyncSession, *, loss: Loss, deal: Deal, entry: ReasonEntry, now: datetime
) -> None:
    """Tells the rep that a manager re-coded their reason: a reply in the thread of the loss's
    prompt, or a DM of its own when the loss was never prompted (logged first from the Home tab,
    imported)."""
    rep = deal.owner_slack_id
    if rep is None:
        return
    prompt = await session.get(Message, loss.prompt_message_id) if loss.prompt_message_id is not None else None
    thread = prompt if prompt is not None and prompt.ts is not None and prompt.rep_slack_id == rep else None
    [message_id] = await message_queries.insert_messages(
        session,
        [
            {
                "kind": MessageKind.RECODE,
                "rep_key": rep,
                "rep_slack_id": rep,
                "rep_email": deal.owner_email,
                "post_to": thread.channel if thread is not None else None,
                "thread_ts": thread.ts if thread is not None else None,
                "reason_entry_id": entry.id,
                "created_at": now,
            }
        ],
    )
    await outbox.queue_posts(session, message_ids=[message_id], now=now)


def _entry(
    loss_id: int,
    revision: int,
    form: ReasonForm,
    catalogue: Catalogue,
    competitor_merges: Mapping[str, str],
    user_id: str,
    view_id: str | None,
    now: datetime,
    *,
    bulk: bool = False,
) -> ReasonEntry:
    reason = catalogue.get(form.reason_code or "")
    requirement = reason.requires if reason is not None else None
    detail = form.detail if requirement is not None else None
    key = None
    if detail is not None:
        # The file merges competitors; a missing feature is grouped by the rules alone.
        key = detail_key(detail, competitor_merges) if requirement == Requirement.COMPETITOR else competitor_key(detail)
    return ReasonEntry(
        loss_id=loss_id,
        revision=revision,
        reason_code=form.reason_code or "",
        detail=detail,
        detail_key=key,
        explanation=form.explanation.strip(),
        revisit_on=form.revisit_on,
        logged_by=user_id,
        logged_at=now,
        view_id=view_id,
        bulk=bulk,
    )


@dataclass(frozen=True)
class SeveralLogged:
    logged: int
    skipped: int
    """Deals picked that no longer await this rep's reason (logged meanwhile, reopened, moved)."""


async def record_reason_for_several(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    loss_ids: list[int],
    form: ReasonForm,
    catalogue: Catalogue,
    user_id: str,
    view_id: str | None,
    now: datetime,
    write_back_to: Collection[str],
    audience: Audience,
    competitor_merges: Mapping[str, str],
    bulk: bool = False,
) -> SeveralLogged:
    """Stores one validated reason as the answer of each picked loss that still awaits this rep's
    reason (with its revisit, when it has a date), in one transaction, and queues the updates of the
    messages that list them, the write-backs to the deals' CRMs that are in `write_back_to`, and the
    posts the reason calls for in `audience`'s channels: one a channel for the whole submission,
    however many deals it logs."""
    logged: list[int] = []
    announced: list[tuple[Loss, Deal]] = []
    async with session_factory() as session, session.begin():
        for loss, deal in await loss_queries.losses_with_deals(session, loss_ids, for_update=True):
            if loss.state != LossState.AWAITING or deal.owner_slack_id != user_id:
                continue
            session.add(_entry(loss.id, 1, form, catalogue, competitor_merges, user_id, view_id, now, bulk=bulk))
            await revisits.record_revisit_date(
                session, loss_id=loss.id, before=None, after=form.revisit_on, user_id=user_id, now=now
            )
            loss.state = LossState.LOGGED
            loss.logged_at = now
            logged.append(loss.id)
            announced.append((loss, deal))
            if deal.source in write_back_to:
                await crm_jobs.queue_write_back(session, loss_id=loss.id, source=deal.source, now=now)
        messages = await message_queries.message_ids_about(session, logged)
        await outbox.queue_updates(session, message_ids=messages, now=now)
        # After the updates are queued: the new posts list these losses too, and need no update.
        await queue_reason_posts(
            session,
            audience=audience,
            logged=announced,
            reason_code=form.reason_code or "",
            first=True,
            rep_slack_id=user_id,
            now=now,
        )
    return SeveralLogged(logged=len(logged), skipped=len(set(loss_ids)) - len(logged))


async def record_clean_up(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    message_id: int,
    catalogue: Catalogue,
    user_id: str,
    now: datetime,
    write_back_to: Collection[str],
    audience: Audience,
) -> SeveralLogged:
    """The one-click answer of a bulk prompt (README.md, "Bulk clean-ups"): every loss the prompt
    asks about that still awaits this rep's reason is logged with the clean-up reason
    (`CLEAN_UP_CODE`) and no explanation, as a bulk answer, like `record_reason_for_several`.
    Nothing is logged for a message that is not this rep's prompt, or when the catalogue has no
    active clean-up reason."""
    if not catalogue.offers_clean_up:
        return SeveralLogged(logged=0, skipped=0)
    async with session_factory() as session, session.begin():
        message = await session.get(Message, message_id)
        if message is None or message.kind != MessageKind.PROMPT or message.rep_slack_id != user_id:
            return SeveralLogged(logged=0, skipped=0)
        items = await message_queries.message_items(session, message_id)
        loss_ids = [item.loss.id for item in items if item.loss.prompt_message_id == message_id]
    return await record_reason_for_several(
        session_factory=session_factory,
        loss_ids=loss_ids,
        form=ReasonForm(reason_code=CLEAN_UP_CODE, detail=None, explanation="", revisit_on=None),
        catalogue=catalogue,
        user_id=user_id,
        view_id=None,
        now=now,
        write_back_to=write_back_to,
        audience=audience,
        competitor_merges={},  # the clean-up reason names no competitor
        bulk=True,
    )


async def turn_page(
    *, session_factory: async_sessionmaker[AsyncSession], message_id: int, page: int, user_id: str, now: datetime
) -> None:
    """Shows another page of a rep's list of deals (the message is updated through the outbox)."""
    async with session_factory() as session, session.begin():
        message = await session.get(Message, message_id)
        if message is None or message.rep_slack_id != user_id or message.kind != MessageKind.PROMPT:
            return
        message.page = max(page, 0)
        await outbox.queue_updates(session, message_ids=[message_id], now=now)
