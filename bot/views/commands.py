"""The ephemeral replies to `/closedlost`, one builder for each form of the command."""

from slack_sdk.models.blocks import Block, ContextBlock, DividerBlock, HeaderBlock, MarkdownTextObject, SectionBlock

from bot.command import USAGE, Usage
from bot.periods import Period
from bot.reasons import Catalogue, ReasonGroup, Requirement
from bot.views.data import AwaitingDeal, ClosedStats, MessageContent, UpcomingRevisit
from bot.views.figures import awaiting_blocks, revisit_blocks, stats_blocks
from bot.views.text import escape, plural

REASONS_PER_SECTION = 10
REQUIREMENT_NOTES = {Requirement.COMPETITOR: "names the competitor", Requirement.FEATURE: "names the missing feature"}


def build_stats_reply(
    *, stats: ClosedStats, period: Period, user_id: str | None, catalogue: Catalogue
) -> MessageContent:
    whose = f"<@{user_id}>'s deals" if user_id else "Everyone's deals"
    title = f"{whose}, {period.label}"
    blocks: list[Block] = [SectionBlock(text=f"*{title}*"), *stats_blocks(stats, catalogue)]
    return MessageContent(text=f"{title}: {stats.lost} lost, {stats.won} won.", blocks=blocks)


def build_pending_reply(*, losses: list[AwaitingDeal], total: int) -> MessageContent:
    if total:
        text = f"{plural(total, 'deal')} of yours {'needs' if total == 1 else 'need'} a reason."
    else:
        text = "All caught up: no deal of yours is waiting for a reason."
    return MessageContent(text=text, blocks=awaiting_blocks(losses, total))


def build_revisits_reply(*, revisits: list[UpcomingRevisit], total: int, catalogue: Catalogue) -> MessageContent:
    text = f"You have {plural(total, 'upcoming revisit')}." if total else "You have no revisits planned."
    return MessageContent(text=text, blocks=revisit_blocks(revisits, total, catalogue))


def build_reasons_reply(catalogue: Catalogue, *, show_codes: bool = False) -> MessageContent:
    """The reasons by their labels, as reps pick them; `show_codes` adds each one's code after it,
    for an admin who edits the reasons file."""
    lines = []
    for reason in catalogue.active:
        notes = []
        if reason.requires is not None:
            notes.append(REQUIREMENT_NOTES[reason.requires])
        if reason.group == ReasonGroup.NO_DECISION:
            notes.append("kept apart from real losses")
        if reason.revisit_after_days is not None:
            notes.append(f"revisit after {reason.revisit_after_days} days")
        suffix = f" ({', '.join(notes)})" if notes else ""
        code = f" · `{reason.code}`" if show_codes else ""
        lines.append(f"• *{escape(reason.label)}*{suffix}{code}")
    blocks: list[Block] = [HeaderBlock(text="Loss reasons")]
    # A catalogue holds up to 100 reasons; a section holds 3,000 characters.
    for start in range(0, len(lines), REASONS_PER_SECTION):
        blocks.append(SectionBlock(text="\n".join(lines[start : start + REASONS_PER_SECTION])))
    return MessageContent(text="The loss reasons reps pick from.", blocks=blocks)


def build_usage_reply(usage: Usage) -> MessageContent:
    blocks: list[Block] = []
    if usage.problem is not None:
        blocks += [SectionBlock(text=f":warning: {escape(usage.problem)}"), DividerBlock()]
    blocks.append(SectionBlock(text=USAGE))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text="Only you can see these answers.")]))
    text = usage.problem or "How to use /closedlost."
    return MessageContent(text=escape(text), blocks=blocks)


def build_export_reply(*, losses: int, period: Period) -> MessageContent:
    """Says where the export went: the DM with the bot, where Slack lists the file."""
    if losses == 0:
        text = f"No closed-lost deals, {period.label}: there is nothing to export."
    else:
        text = f"Your CSV of closed-lost deals, {period.label} ({losses:,} losses), is in your DM with the bot."
    return MessageContent(text=text, blocks=[SectionBlock(text=text)])


def build_export_failed_reply(problem: str) -> MessageContent:
    text = f"The export could not be sent: {problem}. The bot's log has the details for whoever runs it."
    return MessageContent(text=text, blocks=[SectionBlock(text=f":warning: {escape(text)}")])
