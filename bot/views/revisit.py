"""The DM that nudges a rep to revisit a lost deal on its revisit date: the deal, the reason logged
for it, how long ago it was lost, and three answers. Once answered (or closed by the CRM), the same
message shows the outcome instead of the buttons."""

from datetime import datetime

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, HeaderBlock, MarkdownTextObject, SectionBlock

from bot.reasons import Catalogue
from bot.views import ids
from bot.views.data import DealLoss, MessageContent, NudgeStanding, NudgeState
from bot.views.prompt import FIELD_MAX_LENGTH, HEADER_MAX_LENGTH, SECTION_MAX_LENGTH
from bot.views.text import blockquote, day, escape, fit, format_amount, plural, truncate


def build_revisit_nudge(item: DealLoss, *, nudge: NudgeState, catalogue: Catalogue, now: datetime) -> MessageContent:
    deal, entry = item.deal, item.entry
    ago = lost_ago(item.lost_at, now)
    blocks: list[Block] = [
        HeaderBlock(text=truncate(f"Time to revisit: {deal.name}", HEADER_MAX_LENGTH)),
        SectionBlock(
            fields=[
                MarkdownTextObject(
                    text=f"*Account*\n{fit(escape(deal.account), FIELD_MAX_LENGTH) if deal.account else '—'}"
                ),
                MarkdownTextObject(text=f"*Amount*\n{format_amount(deal.amount, deal.currency)}"),
                MarkdownTextObject(text=f"*Lost*\n{ago}, {day(item.lost_at)}"),
            ]
        ),
    ]
    label = catalogue.label(entry.reason_code) if entry is not None else "no reason"
    if entry is not None:
        reason = f"*Logged reason: {escape(label)}*"
        if entry.detail:
            reason += f": {escape(entry.detail)}"
        quoted = blockquote(escape(entry.explanation))
        blocks.append(SectionBlock(text=fit(f"{reason}\n{quoted}", SECTION_MAX_LENGTH)))
    link = [ButtonElement(text="Open in CRM", action_id=ids.OPEN_IN_CRM, url=deal.url)] if deal.url else []

    if nudge.standing == NudgeStanding.WAITING:
        blocks.append(SectionBlock(text="You planned to look at this deal again today. Is it worth another try?"))
        value = str(nudge.revisit_id)
        answers = [
            ButtonElement(text="Reopened it", action_id=ids.REVISIT_REOPENED, value=value, style="primary"),
            ButtonElement(text="Snooze 30 days", action_id=ids.REVISIT_SNOOZE, value=value),
            ButtonElement(text="Not worth it", action_id=ids.REVISIT_DROP, value=value),
        ]
        blocks.append(ActionsBlock(elements=answers + link))
        return MessageContent(text=f"Time to revisit {escape(deal.name)}: lost {ago}, {escape(label)}.", blocks=blocks)

    outcome = describe_outcome(nudge)
    blocks.append(SectionBlock(text=outcome))
    if link:
        blocks.append(ActionsBlock(elements=link))
    return MessageContent(text=f"{escape(deal.name)}: {outcome}", blocks=blocks)


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
