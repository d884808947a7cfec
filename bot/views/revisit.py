"""The DM that nudges a rep to revisit a lost deal on its revisit date: the deal, the reason logged
for it, how long ago it was lost, and three answers. Once answered (or closed by the CRM), the same
message shows the outcome instead of the buttons."""

from datetime import datetime

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, HeaderBlock, MarkdownTextObject, SectionBlock

from bot.reasons import Catalogue
from bot.views import ids
from bot.views.prompt import FIELD_MAX_LENGTH, HEADER_MAX_LENGTH, SECTION_MAX_LENGTH, DealLoss, Message, slack_date
from bot.views.text import blockquote, escape, fit, format_amount, truncate
from storage.models import Revisit, RevisitState


def build_revisit_nudge(item: DealLoss, *, revisit: Revisit, catalogue: Catalogue, now: datetime) -> Message:
    deal, loss, entry = item.deal, item.loss, item.entry
    ago = lost_ago(loss.lost_at, now)
    blocks: list[Block] = [
        HeaderBlock(text=truncate(f"Time to revisit: {deal.name}", HEADER_MAX_LENGTH)),
        SectionBlock(
            fields=[
                MarkdownTextObject(
                    text=f"*Account*\n{fit(escape(deal.account), FIELD_MAX_LENGTH) if deal.account else '—'}"
                ),
                MarkdownTextObject(text=f"*Amount*\n{format_amount(deal.amount, deal.currency)}"),
                MarkdownTextObject(text=f"*Lost*\n{ago}, {slack_date(loss.lost_at)}"),
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

    if revisit.state == RevisitState.DUE:
        blocks.append(SectionBlock(text="You planned to look at this deal again today. Is it worth another try?"))
        value = str(revisit.id)
        answers = [
            ButtonElement(text="Reopened it", action_id=ids.REVISIT_REOPENED, value=value, style="primary"),
            ButtonElement(text="Snooze 30 days", action_id=ids.REVISIT_SNOOZE, value=value),
            ButtonElement(text="Not worth it", action_id=ids.REVISIT_DROP, value=value),
        ]
        blocks.append(ActionsBlock(elements=answers + link))
        return Message(text=f"Time to revisit {escape(deal.name)}: lost {ago}, {escape(label)}.", blocks=blocks)

    outcome = describe_outcome(revisit, reopened_in_crm=revisit.closed_by == deal.source)
    blocks.append(SectionBlock(text=outcome))
    if link:
        blocks.append(ActionsBlock(elements=link))
    return Message(text=f"{escape(deal.name)}: {outcome}", blocks=blocks)


def describe_outcome(revisit: Revisit, *, reopened_in_crm: bool) -> str:
    """What became of a revisit that no longer waits for an answer."""
    if revisit.state == RevisitState.REOPENED:
        where = "Reopened in the CRM" if reopened_in_crm else "Reopened"
        return f":tada: {where} — counted as a win-back."
    if revisit.state == RevisitState.SNOOZED:
        return f":zzz: Snoozed until {revisit.due_on:%a %b %-d}."
    if revisit.state == RevisitState.DROPPED:
        return "Dropped: not worth another try."
    return "No longer planned: the revisit date was removed from the reason."


def lost_ago(lost_at: datetime, now: datetime) -> str:
    """`12 days ago`: how long ago a deal was lost."""
    days = (now - lost_at).days
    if days < 1:
        return "today"
    return "1 day ago" if days == 1 else f"{days} days ago"
