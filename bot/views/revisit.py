"""The DM that nudges a rep to revisit a lost deal on its revisit date: the question, the reason
logged for it, how long ago it was lost, Open in CRM and three answers. Once answered (or closed by the CRM), the same
message shows the outcome instead of the buttons."""

from datetime import datetime

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, SectionBlock

from bot.reasons import Catalogue, Requirement
from bot.views import ids
from bot.views.data import DealLoss, LoggedReason, MessageContent, NudgeStanding, NudgeState
from bot.views.prompt import HEADER_MAX_LENGTH, SECTION_MAX_LENGTH
from bot.views.text import blockquote, day, escape, fit, format_amount, plural, truncate


def build_revisit_nudge(item: DealLoss, *, nudge: NudgeState, catalogue: Catalogue, now: datetime) -> MessageContent:
    """The question first ("Worth another try with Dunder?"), then why it was lost and when, then
    Open in CRM as the primary action beside the three answers."""
    deal, entry = item.deal, item.entry
    ago = lost_ago(item.lost_at, now)
    who = escape(truncate(deal.account or deal.name, HEADER_MAX_LENGTH))
    why = _why_lost(entry, catalogue)
    facts = [f"*{escape(truncate(deal.name, HEADER_MAX_LENGTH))}*"]
    if deal.amount is not None:
        facts.append(format_amount(deal.amount, deal.currency))
    facts.append(f"lost {ago}, {day(item.lost_at)}")
    context = f"{why}\n{' · '.join(facts)}"
    if entry is not None:
        context += f"\n{blockquote(escape(entry.explanation))}"
    link = ButtonElement(text="Open in CRM", action_id=ids.OPEN_IN_CRM, url=deal.url) if deal.url else None

    if nudge.standing == NudgeStanding.WAITING:
        question = f"*Worth another try with {who}?*"
        blocks: list[Block] = [SectionBlock(text=fit(f"{question}\n{context}", SECTION_MAX_LENGTH))]
        value = str(nudge.revisit_id)
        answers = [
            ButtonElement(
                text="I reopened it",
                action_id=ids.REVISIT_REOPENED,
                value=value,
                style=None if link else "primary",
            ),
            ButtonElement(text="Remind me in 30 days", action_id=ids.REVISIT_SNOOZE, value=value),
            ButtonElement(text="Drop it", action_id=ids.REVISIT_DROP, value=value),
        ]
        if link is not None:
            link.style = "primary"
        blocks.append(ActionsBlock(elements=[*([link] if link else []), *answers]))
        text = f"Worth another try with {who}? {escape(deal.name)} was lost {ago}: {why}."
        return MessageContent(text=text, blocks=blocks)

    outcome = describe_outcome(nudge)
    blocks = [SectionBlock(text=fit(f"{context}\n{outcome}", SECTION_MAX_LENGTH))]
    if link:
        blocks.append(ActionsBlock(elements=[link]))
    return MessageContent(text=f"{escape(deal.name)}: {outcome}", blocks=blocks)


def _why_lost(entry: LoggedReason | None, catalogue: Catalogue) -> str:
    """`Lost to Initech`, `Price / budget: SSO`, or `No reason was logged`."""
    if entry is None:
        return "No reason was logged"
    reason = catalogue.get(entry.reason_code)
    if entry.detail and reason is not None and reason.requires == Requirement.COMPETITOR:
        return f"Lost to {escape(entry.detail)}"
    label = escape(catalogue.label(entry.reason_code))
    return f"{label}: {escape(entry.detail)}" if entry.detail else label


def describe_outcome(nudge: NudgeState) -> str:
    """What became of a revisit that no longer waits for an answer."""
    if nudge.standing == NudgeStanding.REOPENED:
        where = "Reopened in the CRM" if nudge.reopened_in_crm else "Reopened"
        return f":tada: {where} — counted as a win-back."
    if nudge.standing == NudgeStanding.SNOOZED:
        return f":zzz: Snoozed until {day(nudge.due_on)}."
    if nudge.standing == NudgeStanding.DROPPED:
        return "Dropped: not worth another try."
    return "No longer planned: the revisit date was removed from the reason."


def lost_ago(lost_at: datetime, now: datetime) -> str:
    """`12 days ago`: how long ago a deal was lost."""
    days = (now - lost_at).days
    if days < 1:
        return "today"
    return f"{plural(days, 'day')} ago"
