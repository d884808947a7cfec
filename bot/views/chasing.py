"""The reminder a rep gets in their prompt's thread, and the escalation post in the manager channel."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ContextBlock, MarkdownTextObject, SectionBlock

from bot.reasons import Catalogue
from bot.views import ids
from bot.views.data import DealLoss, MessageContent
from bot.views.prompt import SECTION_MAX_LENGTH, deal_line
from bot.views.recode import recode_control
from bot.views.text import MISSING, day, escape, fit, format_amount, plural

# A reminder lists the first few deals; the prompt above it lists them all.
REMINDER_DEALS = 10
# An escalation lists up to this many deals, several to a section, within 50 blocks.
ESCALATION_DEALS = 100
LINES_PER_SECTION = 10


@dataclass(frozen=True)
class EscalationNotice:
    """When the deals of a reminder go on the team's open list (the escalation), told in the
    rep's own time zone so that it is never a surprise."""

    at: datetime
    now: datetime
    tz: ZoneInfo

    def sentence(self) -> str:
        on = self.at.astimezone(self.tz).date()
        today = self.now.astimezone(self.tz).date()
        if on <= today:
            when = "Later today"
        elif on == today + timedelta(days=1):
            when = "Tomorrow"
        elif on < today + timedelta(days=7):
            when = f"On {on:%A}"
        else:
            when = f"On {on:%b} {on.day}"
        return f"{when} this goes on the team's open list, unless a reason is logged first."


def build_reminder(
    items: list[DealLoss], *, catalogue: Catalogue, message_id: int, escalation: EscalationNotice | None = None
) -> MessageContent:
    """A reply in the prompt's thread about the deals it lists: those still without a reason, with
    what happens next when `escalation` is given; once none is waiting, a line that says so."""
    listed = items
    items = [item for item in items if item.awaiting]
    if not items:
        if any(item.entry is None for item in listed):
            done = ":white_check_mark: Done: no deal in this reminder needs a reason any more."
        elif len(listed) == 1:
            done = ":white_check_mark: Done: the deal in this reminder has its reason."
        else:
            done = ":white_check_mark: Done: every deal in this reminder has its reason."
        return MessageContent(text=done, blocks=[SectionBlock(text=done)])
    count = len(items)
    deals = f"{plural(count, 'closed-lost deal')} still {'needs' if count == 1 else 'need'}"
    blocks: list[Block] = [SectionBlock(text=f":wave: Reminder: {deals} a reason. It takes under a minute each.")]
    if escalation is not None:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=escalation.sentence())]))
    blocks.extend(deal_line(item, catalogue) for item in items[:REMINDER_DEALS])
    if count > REMINDER_DEALS:
        blocks.append(
            ContextBlock(
                elements=[MarkdownTextObject(text=f"…and {count - REMINDER_DEALS} more in the message above.")]
            )
        )
    if count > 1:
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(text="Log one reason for several", action_id=ids.LOG_SEVERAL, value=str(message_id))
                ]
            )
        )
    return MessageContent(text=f"Reminder: {deals} a reason.", blocks=blocks)


def build_escalation(
    items: list[DealLoss], *, rep_name: str, manager: str | None, catalogue: Catalogue
) -> MessageContent:
    """The day's post about one rep's overdue losses; updated as they are logged. It names the rep
    without pinging them (`rep_name`, plain text) and mentions only the manager: `manager` is their
    Slack id, or their email when Slack does not know it. An email is left out, since it pings no
    one and shows an address where a name belongs. Once a deal it lists has its reason, the post
    offers to re-code it."""
    waiting = [item for item in items if item.awaiting]
    name = escape(rep_name)
    to = f"<@{manager}>: " if manager is not None and "@" not in manager else ""
    if waiting:
        oldest = min(item.lost_at for item in waiting)
        totals = _totals(waiting)
        headline = (
            f":wave: {to}{name} has {plural(len(waiting), 'closed-lost deal')} "
            f"still open after the reminders, waiting since {day(oldest)}."
            + (f" Total: {totals}." if totals != MISSING else "")
            + " A quick word may help them log why."
        )
    else:
        headline = f":white_check_mark: {name} has logged every reason below."
    lines = [_line(item, catalogue) for item in items[:ESCALATION_DEALS]]
    blocks: list[Block] = [SectionBlock(text=fit(headline, SECTION_MAX_LENGTH))]
    for start in range(0, len(lines), LINES_PER_SECTION):
        blocks.append(SectionBlock(text=fit("\n".join(lines[start : start + LINES_PER_SECTION]), SECTION_MAX_LENGTH)))
    if len(items) > ESCALATION_DEALS:
        blocks.append(
            ContextBlock(
                elements=[MarkdownTextObject(text=f"…and {plural(len(items) - ESCALATION_DEALS, 'more deal')}.")]
            )
        )
    recode = recode_control(items)
    if recode is not None:
        blocks.append(ActionsBlock(elements=[recode]))
    # The fallback text is what notifications show: it mentions the manager too.
    text = (
        f"{to}{name} has {plural(len(waiting), 'closed-lost deal')} still open after the reminders."
        if waiting
        else headline
    )
    return MessageContent(text=text, blocks=blocks)


def _line(item: DealLoss, catalogue: Catalogue) -> str:
    deal, entry = item.deal, item.entry
    line = f"• *{escape(deal.name)}* · {format_amount(deal.amount, deal.currency)} · lost {day(item.lost_at)}"
    if item.moved:
        return f"{line} · moved to another rep"
    if entry is not None:
        recoded = " (re-coded)" if entry.recoded else ""
        return f"{line} · :white_check_mark: logged late: {escape(catalogue.label(entry.reason_code))}{recoded}"
    if not item.awaiting:
        return f"{line} · reopened in the CRM"
    return line


def _totals(items: list[DealLoss]) -> str:
    """The amounts added up per currency: different currencies are never summed together."""
    totals: dict[str | None, Decimal] = {}
    for item in items:
        if item.deal.amount is not None:
            totals[item.deal.currency] = totals.get(item.deal.currency, Decimal(0)) + item.deal.amount
    if not totals:
        return MISSING
    return ", ".join(format_amount(amount, currency) for currency, amount in totals.items())
