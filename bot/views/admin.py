"""The admin view: `/closedlost admin`'s reply, and the same blocks at the bottom of an admin's Home
tab. At most 30 blocks, so that the Home tab stays inside its 100 and the reply inside a message's 50."""

from datetime import datetime, timedelta

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.views import ids
from bot.views.data import AdminPanel, Backlog, CrmActivity, FailedJob, Fix, MessageContent, RefusedMessage
from bot.views.figures import and_more
from bot.views.prompt import SECTION_MAX_LENGTH
from bot.views.text import escape, fit

DEALS_NAMED = 3
ERROR_MAX_LENGTH = 300

KINDS = {
    "prompt": "Prompt",
    "reminder": "Reminder",
    "escalation": "Escalation",
    "revisit": "Revisit nudge",
    "debrief": "Debrief card",
    "route": "Route post",
    "digest": "Weekly digest",
    "recode": "Re-code notice",
}
SOURCES = {"generic": "Deal webhook", "hubspot": "HubSpot", "salesforce": "Salesforce", "pipedrive": "Pipedrive"}
INVITE = "invite it there (`/invite @closedlost`)"
RETRIED = ":arrows_counterclockwise: Queued again: it goes out in a moment. Below is the list as it stands now."
NOT_RETRIED = "That one was no longer waiting for a retry (retried already?): nothing changed."


def build_admin_reply(panel: AdminPanel, *, retried: bool | None = None) -> MessageContent:
    """`/closedlost admin`, or the same reply drawn again after a Retry: `retried` says whether the
    item went back in its queue, or had left the list already (a double click, another admin)."""
    blocks: list[Block] = [HeaderBlock(text="closedlost admin")]
    if retried is not None:
        notice = RETRIED if retried else NOT_RETRIED
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=notice)]))
    blocks += admin_blocks(panel)
    problems = panel.refused_total + panel.failed_jobs_total
    text = f"closedlost admin: {problems} to fix" if problems else "closedlost admin: nothing to fix"
    return MessageContent(text=text, blocks=blocks)


def build_admin_refusal(reason: str) -> MessageContent:
    return MessageContent(text=reason, blocks=[SectionBlock(text=f":no_entry: {reason}")])


def admin_blocks(panel: AdminPanel) -> list[Block]:
    """What Slack refused, the CRM jobs that failed (each with its Retry), the CRMs and the backlog."""
    blocks: list[Block] = [SectionBlock(text=f"*Messages Slack refused: {panel.refused_total:,}*")]
    if not panel.refused:
        blocks.append(SectionBlock(text="Slack took every message. :white_check_mark:"))
    for refused in panel.refused:
        blocks.append(_retry_section(_refused_text(refused), ids.RETRY_MESSAGE, refused.outbox_id))
    blocks += _more(len(panel.refused), panel.refused_total)
    blocks += [DividerBlock(), SectionBlock(text=f"*CRM jobs that failed: {panel.failed_jobs_total:,}*")]
    if not panel.failed_jobs:
        blocks.append(SectionBlock(text="No CRM job failed. :white_check_mark:"))
    for job in panel.failed_jobs:
        blocks.append(_retry_section(_job_text(job), ids.RETRY_CRM_JOB, job.job_id))
    blocks += _more(len(panel.failed_jobs), panel.failed_jobs_total)
    blocks += [
        DividerBlock(),
        SectionBlock(text="*CRMs*\n" + "\n".join(_crm_line(crm) for crm in panel.crms)),
        SectionBlock(text=_backlog_text(panel.backlog)),
    ]
    return blocks


def _retry_section(text: str, action_id: str, item_id: int) -> SectionBlock:
    button = ButtonElement(text="Retry", action_id=action_id, value=str(item_id))
    return SectionBlock(text=fit(text, SECTION_MAX_LENGTH), accessory=button)


def _more(shown: int, total: int) -> list[Block]:
    more = and_more(shown, total)
    return [ContextBlock(elements=[MarkdownTextObject(text=f"{more}, older.")])] if more else []


def _refused_text(refused: RefusedMessage) -> str:
    what = KINDS.get(refused.kind, refused.kind)
    if refused.update:
        what = f"Update of a {what.lower()}"
    where = _conversation(refused)
    lines = [f"*{what}* to {where}"]
    if refused.deals:
        names = [f"*{escape(name)}*" for name in refused.deals[:DEALS_NAMED]]
        more = and_more(len(names), len(refused.deals))
        lines.append(", ".join([*names, *([more] if more else [])]))
    lines.append(f"Slack's answer: `{fit(escape(refused.error), ERROR_MAX_LENGTH)}`")
    lines.append(f"To fix: {_fix_text(refused)}")
    return "\n".join(lines)


def _conversation(refused: RefusedMessage) -> str:
    if refused.channel is not None and not refused.channel.startswith("D"):
        return f"<#{refused.channel}>"
    if refused.rep_slack_id is not None:
        return f"<@{refused.rep_slack_id}>"
    return escape(refused.rep_email or "the deal's owner")


def _fix_text(refused: RefusedMessage) -> str:
    channel = f"<#{refused.channel}>" if refused.channel else "the channel"
    match refused.fix:
        case Fix.OWNER_EMAIL:
            return (
                f"no Slack user has the owner's email {escape(refused.rep_email or '')}. Correct the email in the "
                "CRM (the deal is then prompted to the right rep by itself), or add it to the rep's Slack "
                "profile and *Retry*."
            )
        case Fix.DEAL_OWNER:
            return "the CRM sent no owner for the deal: set one in the CRM, and the deal is prompted by itself."
        case Fix.INVITE_BOT:
            return f"the bot is not in {channel}: {INVITE}, then *Retry*."
        case Fix.CHANNEL if refused.channel is not None and not refused.channel.startswith("D"):
            return (
                f"Slack knows no channel {channel}: check the id in MANAGER_CHANNEL, DIGEST_CHANNEL or "
                f"REASON_ROUTES, {INVITE}, then *Retry*."
            )
        case Fix.CHANNEL:
            return "Slack knows no such conversation: check the owner's Slack id in the CRM, then *Retry*."
        case Fix.ARCHIVED:
            return f"{channel} is archived: unarchive it (or set another channel), then *Retry*."
        case Fix.REP_INACTIVE:
            return "the rep's Slack account is deactivated: give the deal another owner in the CRM."
        case Fix.OWNER_IS_BOT:
            return "the deal's owner is a bot user: give the deal to a person in the CRM."
        case Fix.MESSAGE_GONE:
            return "the message was deleted in Slack, so there is nothing left to update."
        case Fix.REPORT:
            return "Slack refused what the bot sent: report it with the bot's log."
        case Fix.SLACK_FAILING:
            return "Slack kept failing until the bot gave up: *Retry* once it works again."


def _job_text(job: FailedJob) -> str:
    crm = SOURCES.get(job.source, job.source)
    if job.write_back:
        subject = f"*{crm} write-back* of the reason for *{escape(job.deal_name or 'a deal no longer stored')}*"
    else:
        subject = f"*{crm} fetch* of the deal an event named (`{escape(job.event_key or '')}`)"
    return (
        f"{subject}\nThe CRM's answer: `{fit(escape(job.error), ERROR_MAX_LENGTH)}`\n"
        f"To fix: correct what the answer names (the field, the token, the deal), then *Retry*."
    )


def _crm_line(crm: CrmActivity) -> str:
    webhook = f"last event {_moment(crm.last_event_at)}" if crm.last_event_at else "no event yet"
    sweep = f"last sweep {_moment(crm.last_sweep_at)}" if crm.last_sweep_at else "no sweep"
    return f"• {SOURCES.get(crm.source, crm.source)}: {webhook} · {sweep}"


def _backlog_text(backlog: Backlog) -> str:
    if backlog.oldest_pending_age is None:
        outbox = "nothing waiting to go to Slack"
    else:
        age = _age(backlog.oldest_pending_age)
        outbox = f"{backlog.outbox_pending:,} waiting to go to Slack, the oldest for {age}"
    jobs = f"{backlog.crm_jobs_pending:,} pending, {backlog.crm_jobs_failed:,} failed"
    return f"*Backlog*\nOutbox: {outbox}\nCRM jobs: {jobs}"


def _moment(moment: datetime) -> str:
    """A date and time Slack shows in the reader's own time zone."""
    return f"<!date^{int(moment.timestamp())}^{{date_short}} {{time}}|{moment:%Y-%m-%d %H:%M} UTC>"


def _age(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
