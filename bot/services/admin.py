"""The admin view (`/closedlost admin`, and the bottom of an admin's Home tab): what Slack refused and
what to fix, the CRM jobs that failed, each CRM's last webhook, the backlog; and the Retry that
sends a refused message or a failed job again once the admin has fixed the cause.

Only ADMIN_USERS see it or retry: anyone else gets `NotAdmin`, and nothing changes.
"""

import re
from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.connectors import SOURCES
from bot.errors import NotAdmin
from bot.services.delivery import NO_OWNER, NO_SLACK_USER
from bot.views.data import AdminPanel, Backlog, CrmActivity, FailedJob, Fix, RefusedMessage
from storage import crm_job_queries, deal_queries, loss_queries, message_queries
from storage.models import CrmJobKind, OutboxKind

# The newest few of each list: enough to act on, and with the rest of the Home tab inside its 100 blocks.
SHOWN = 10

# Slack's error codes (https://docs.slack.dev/reference/methods/chat.postMessage#errors), as the
# outbox records them ("Slack answered not_in_channel"), and what each asks of the admin.
FIXES = {
    "users_not_found": Fix.OWNER_EMAIL,
    "user_not_found": Fix.OWNER_EMAIL,
    "not_in_channel": Fix.INVITE_BOT,
    "channel_not_found": Fix.CHANNEL,
    "is_archived": Fix.ARCHIVED,
    "account_inactive": Fix.REP_INACTIVE,
    "user_disabled": Fix.REP_INACTIVE,
    "cannot_dm_bot": Fix.OWNER_IS_BOT,
    "message_not_found": Fix.MESSAGE_GONE,
    "cant_update_message": Fix.MESSAGE_GONE,
    "invalid_blocks": Fix.REPORT,
    "msg_too_long": Fix.REPORT,
    "msg_blocks_too_long": Fix.REPORT,
}
WORD = re.compile(r"[a-z_]+")


async def load_admin_panel(
    *, session_factory: async_sessionmaker[AsyncSession], user_id: str, admins: Collection[str], now: datetime
) -> AdminPanel:
    _check_admin(user_id, admins)
    async with session_factory() as session, session.begin():
        calls, refused_total = await message_queries.refused_calls(session, limit=SHOWN)
        deals = await message_queries.deal_names_listed(session, [call.message_id for call in calls])
        jobs, failed_total = await crm_job_queries.failed_crm_jobs(session, limit=SHOWN)
        crms = [
            CrmActivity(
                source=source,
                last_event_at=await deal_queries.last_event_received_at(session, source),
                # No CRM is swept yet: the sweep's branch records its runs and fills this in.
                last_sweep_at=None,
            )
            for source in SOURCES
        ]
        backlog = await _backlog(session, now)
    return AdminPanel(
        refused=[
            RefusedMessage(
                outbox_id=call.id,
                kind=call.message_kind,
                update=call.call == OutboxKind.UPDATE,
                channel=call.post_to,
                rep_slack_id=call.rep_slack_id,
                rep_email=call.rep_email,
                deals=deals.get(call.message_id, []),
                error=call.error or "unknown error",
                fix=what_to_fix(call.error or ""),
            )
            for call in calls
        ],
        refused_total=refused_total,
        failed_jobs=[
            FailedJob(
                job_id=job.id,
                write_back=job.kind == CrmJobKind.WRITE_BACK,
                source=job.source,
                deal_name=job.deal_name,
                event_key=job.event_key,
                error=job.error or "unknown error",
            )
            for job in jobs
        ],
        failed_jobs_total=failed_total,
        crms=crms,
        backlog=backlog,
    )


async def read_backlog(*, session_factory: async_sessionmaker[AsyncSession], now: datetime) -> Backlog:
    """The outbox's and the CRM jobs' backlog as it is now (the metrics read it at each scrape)."""
    async with session_factory() as session, session.begin():
        return await _backlog(session, now)


async def retry_refused_message(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    outbox_id: int,
    user_id: str,
    admins: Collection[str],
    now: datetime,
) -> bool:
    """Puts a refused call back in the outbox, due now, and clears the delivery error of the losses
    its message lists: a prompt goes to the rep once the admin has fixed the cause. Returns False
    when the call is no longer refused (retried already, by a double click or another admin)."""
    _check_admin(user_id, admins)
    async with session_factory() as session, session.begin():
        message_id = await message_queries.requeue_failed_call(session, outbox_id, now)
        if message_id is None:
            return False
        await loss_queries.clear_delivery_errors(session, message_id)
    return True


async def retry_failed_crm_job(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    job_id: int,
    user_id: str,
    admins: Collection[str],
    now: datetime,
) -> bool:
    """Puts a failed CRM job back in the queue, due now. Returns False when it is no longer failed."""
    _check_admin(user_id, admins)
    async with session_factory() as session, session.begin():
        return await crm_job_queries.requeue_failed_crm_job(session, job_id, now)


def what_to_fix(error: str) -> Fix:
    """What the admin does about a call that failed with `error`, as the outbox recorded it."""
    if error.startswith(NO_SLACK_USER):
        return Fix.OWNER_EMAIL
    if error == NO_OWNER:
        return Fix.DEAL_OWNER
    return next((FIXES[word] for word in WORD.findall(error) if word in FIXES), Fix.SLACK_FAILING)


def _check_admin(user_id: str, admins: Collection[str]) -> None:
    if user_id not in admins:
        raise NotAdmin()


async def _backlog(session: AsyncSession, now: datetime) -> Backlog:
    pending, oldest = await message_queries.pending_calls(session)
    jobs_pending, jobs_failed = await crm_job_queries.crm_job_counts(session)
    return Backlog(
        outbox_pending=pending,
        oldest_pending_age=max(now - oldest, timedelta(0)) if oldest is not None else None,
        crm_jobs_pending=jobs_pending,
        crm_jobs_failed=jobs_failed,
    )
