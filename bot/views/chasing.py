"""The reminder a rep gets in their prompt's thread, and the escalation post in the manager channel."""

from decimal import Decimal

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ContextBlock, MarkdownTextObject, SectionBlock

from bot.reasons import Catalogue
from bot.views import ids
from bot.views.data import DealLoss, MessageContent
from bot.views.prompt import SECTION_MAX_LENGTH, deal_line
from bot.views.text import MISSING, day, escape, fit, format_amount, plural

# A reminder lists the first few deals; the prompt above it lists them all.
REMINDER_DEALS = 10
# An escalation lists up to this many deals, several to a section, within 50 blocks.
ESCALATION_DEALS = 100
LINES_PER_SECTION = 10


def build_reminder(items: list[DealLoss], *, catalogue: Catalogue, message_id: int) -> MessageContent:
    """A reply in the prompt's thread about the deals still without a reason."""
    count = len(items)
    deals = f"{plural(count, 'closed-lost deal')} still {'needs' if count == 1 else 'need'}"
    blocks: list[Block] = [SectionBlock(text=f":wave: Reminder: {deals} a reason. It takes under a minute each.")]
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
    items: list[DealLoss], *, rep_slack_id: str, manager: str | None, catalogue: Catalogue
) -> MessageContent:
    """The day's post about one rep's overdue losses; updated as they are logged. `manager` is
    the manager's Slack id, or their email when Slack does not know it: an email is left out, since
    it pings no one and shows an address where a name belongs."""
    waiting = [item for item in items if item.awaiting]
    cc = f" (cc <@{manager}>)" if manager is not None and "@" not in manager else ""
    if waiting:
        totals = _totals(waiting)
        headline = (
            f":alarm_clock: <@{rep_slack_id}> has {plural(len(waiting), 'closed-lost deal')} "
            f"with no reason logged after the reminders{cc}." + (f" Total: {totals}." if totals != MISSING else "")
        )
    else:
        headline = f":white_check_mark: <@{rep_slack_id}> has logged every reason below{cc}."
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
    text = f"{plural(len(waiting), 'overdue closed-lost reason')} for <@{rep_slack_id}>" if waiting else headline
    return MessageContent(text=text, blocks=blocks)


def _line(item: DealLoss, catalogue: Catalogue) -> str:
    deal, entry = item.deal, item.entry
    line = f"• *{escape(deal.name)}* · {format_amount(deal.amount, deal.currency)} · lost {day(item.lost_at)}"
    if item.moved:
        return f"{line} · moved to another rep"
    if entry is not None:
        return f"{line} · :white_check_mark: logged late: {escape(catalogue.label(entry.reason_code))}"
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
