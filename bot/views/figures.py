"""Blocks that `/closedlost` replies and App Home share: figures for a period, a rep's deals
awaiting a reason, a rep's upcoming revisits."""

from slack_sdk.models.blocks import Block, ButtonElement, ContextBlock, MarkdownTextObject, SectionBlock

from bot.reasons import Catalogue
from bot.views import ids
from bot.views.data import Amounts, AwaitingDeal, ClosedStats, Quality, UpcomingRevisit
from bot.views.prompt import SECTION_MAX_LENGTH, button_for
from bot.views.text import MISSING, day, escape, fit, format_amount, plural

MAX_REASON_LINES = 15
MAX_REVISIT_LINES = 25
# One item of a list (a line, a name) never takes a whole section.
ITEM_MAX_LENGTH = 500


def amounts_text(amounts: Amounts) -> str:
    """Each currency's total on its own, never added together: `120,000 USD · 9,500 EUR`; `—` for none."""
    if not amounts:
        return MISSING
    return " · ".join(format_amount(amounts[currency], currency or None) for currency in sorted(amounts))


def with_amounts(text: str, amounts: Amounts) -> str:
    """`text · 120,000 USD`, or `text` alone when there is no amount to add: a sentence never ends in "—"."""
    return f"{text} · {amounts_text(amounts)}" if amounts else text


def percent(share: float | None) -> str:
    return "—" if share is None else f"{share:.0%}"


def and_more(shown: int, total: int) -> str:
    return f"and {total - shown} more" if total > shown else ""


def fit_list(heading: str, items: list[str], total: int, *, separator: str = "\n") -> str:
    """`heading` (if any) on its own line, then as many of `items` as fit in a section, then
    "and N more" for the rest of `total`: a long list is cut between items, never inside one, and
    always says how much it left out."""
    room = SECTION_MAX_LENGTH - len(heading) - len(f"\n{separator}and {total} more")
    shown: list[str] = []
    for item in items:
        item = fit(item, ITEM_MAX_LENGTH)
        if len(separator) + len(item) > room:
            break
        shown.append(item)
        room -= len(separator) + len(item)
    more = and_more(len(shown), total)
    listed = separator.join([*shown, *([more] if more else [])])
    return f"{heading}\n{listed}" if heading else listed


def quality_text(quality: Quality, *, logged: int | None = None) -> str:
    """`2 picks kept over a suggestion (5% of logged losses) · 1 reason re-coded by a manager`; the
    share when `logged` is given."""
    kept = f"{plural(quality.confirmed, 'pick')} kept over a suggestion"
    if logged:
        kept += f" ({percent(quality.confirmed / logged)} of logged losses)"
    return f"{kept} · {plural(quality.recoded, 'reason')} re-coded by a manager"


def stats_blocks(stats: ClosedStats, catalogue: Catalogue) -> list[Block]:
    if not stats.lost and not stats.won:
        return [SectionBlock(text="No deals were closed in this period.")]
    by_value = ", ".join(
        f"{currency or 'no currency'} {percent(rate)}" for currency, rate in stats.win_rate_by_value.items()
    )
    summary = [
        with_amounts(f"*{stats.lost:,}* lost", stats.lost_value),
        with_amounts(f"*{stats.won:,}* won", stats.won_value),
    ]
    # No win rate before any win is recorded: a "0%" would only say the CRM sends no wins.
    if stats.won:
        summary.append(
            f"*Win rate* {percent(stats.win_rate)} by count" + (f" · by value: {by_value}" if by_value else "")
        )
    summary += [
        f"*Logged* {percent(stats.logged_share)} ({stats.logged:,} of "
        f"{plural(stats.needing_reason, 'loss', 'losses')} {'has' if stats.logged == 1 else 'have'} a reason"
        + (f"; {stats.excluded:,} more {'needs' if stats.excluded == 1 else 'need'} none)" if stats.excluded else ")"),
        f"*No decision / went dark* {percent(stats.no_decision_share)} of losses with a reason ({stats.no_decision})",
    ]
    if stats.logged:
        summary.append(f"*Reason quality* {quality_text(stats.quality, logged=stats.logged)}")
    blocks: list[Block] = [SectionBlock(text=fit("\n".join(summary), SECTION_MAX_LENGTH))]
    if stats.reasons:
        lines = [
            f"• {escape(catalogue.label(figures.code))} — *{figures.deals}* "
            f"({percent(figures.deals / stats.with_reason)}) · {amounts_text(figures.value)}"
            for figures in stats.reasons[:MAX_REASON_LINES]
        ]
        heading = "*Reasons* (by deals, share of losses with a reason, value)"
        blocks.append(SectionBlock(text=fit_list(heading, lines, len(stats.reasons))))
    if stats.imported:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=imported_note(stats.imported))]))
    return blocks


def imported_note(imported: list[tuple[str, int]]) -> str:
    """ "Includes 120 reasons imported from HubSpot and 30 from a CSV file", and what they count in."""
    origins = [f"{plural(count, 'reason')} imported from {escape(origin)}" for origin, count in imported[:1]]
    origins += [f"{count:,} from {escape(origin)}" for origin, count in imported[1:]]
    listed = ", ".join(origins[:-1]) + " and " + origins[-1] if len(origins) > 1 else origins[0]
    return f"Includes {listed}: counted in the reasons, not in the share logged, as no rep was asked."


def awaiting_blocks(losses: list[AwaitingDeal], total: int) -> list[Block]:
    """The count and the action first ("3 deals need a reason" beside "Log one reason for several"),
    then one section a loss, the biggest first, with the DM's own Log reason button (same action,
    same modal); "All caught up" alone when none waits."""
    if not total:
        return [SectionBlock(text="*All caught up* :tada: No deal of yours is waiting for a reason.")]
    several = None
    if total > 1:
        several = ButtonElement(text="Log one reason for several", action_id=ids.LOG_SEVERAL, value="awaiting")
    count = f"*{plural(total, 'deal')} {'needs' if total == 1 else 'need'} a reason*"
    blocks: list[Block] = [SectionBlock(text=count, accessory=several)]
    for loss in losses:
        parts = [f"*{escape(loss.deal_name)}*"]
        if loss.account:
            parts.append(escape(loss.account))
        if loss.amount is not None:
            parts.append(format_amount(loss.amount, loss.currency))
        parts.append(f"lost {day(loss.lost_at)}")
        button = button_for(loss.deal_name, "Log reason", ids.LOG_REASON, loss.loss_id, style="primary")
        blocks.append(SectionBlock(text=fit(" · ".join(parts), SECTION_MAX_LENGTH), accessory=button))
    more = and_more(len(losses), total)
    if more:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"{more}: log these first, or see the DMs.")]))
    return blocks


def revisit_blocks(revisits: list[UpcomingRevisit], total: int, catalogue: Catalogue) -> list[Block]:
    """The count as a heading, then a line a revisit, soonest first; one line alone when none is planned."""
    if not total:
        return [SectionBlock(text="*Upcoming revisits:* none planned.")]
    lines = [
        f"• {day(revisit.revisit_on)} — *{escape(revisit.deal_name)}*"
        + (f" ({format_amount(revisit.amount, revisit.currency)})" if revisit.amount is not None else "")
        + f" · {escape(catalogue.label(revisit.reason_code))}"
        for revisit in revisits[:MAX_REVISIT_LINES]
    ]
    return [SectionBlock(text=fit_list(f"*{plural(total, 'upcoming revisit')}*", lines, total))]
