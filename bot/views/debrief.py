"""The posts about logged reasons: the debrief card for large losses in the manager channel, and
the post in a team's channel (REASON_ROUTES).

Both show the losses' current reasons, so an edit made later shows once the post is updated. A
post made for several deals (the several-deals modal) groups them by reason: one reason with its
explanation, then its deals, listed within a section's 3,000 characters and ending "and N more".
"""

from decimal import Decimal

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    InteractiveElement,
    MarkdownTextObject,
    SectionBlock,
)

from bot.reasons import Catalogue, Requirement
from bot.views import ids
from bot.views.data import Amounts, DealLoss, LoggedReason, MessageContent
from bot.views.figures import fit_list, with_amounts
from bot.views.prompt import FIELD_MAX_LENGTH, HEADER_MAX_LENGTH, SECTION_MAX_LENGTH
from bot.views.recode import recode_control, who_logged
from bot.views.text import blockquote, day, escape, fit, format_amount, plural, truncate

# Reasons shown in one post: each takes two blocks, well within Block Kit's 50.
MAX_REASONS = 15
DETAIL_NAMES = {Requirement.COMPETITOR: "Competitor", Requirement.FEATURE: "Missing feature"}
DISCUSS = ":speech_balloon: What would have won it? Discuss in this thread."


def build_debrief(items: list[DealLoss], *, catalogue: Catalogue) -> MessageContent:
    """The card the team discusses a large loss on, in its thread."""
    logged = _logged(items)
    if len(logged) == 1:
        item, entry = logged[0]
        blocks = _one_deal(item, entry, catalogue, headline=f"Debrief: {item.deal.name}")
        text = f"Debrief: {escape(item.deal.name)} ({format_amount(item.deal.amount, item.deal.currency)})"
    else:
        blocks = _several_deals(logged, catalogue, headline=f"Debrief: {len(logged)} large losses")
        text = with_amounts(f"Debrief: {len(logged)} large losses", _total(logged))
    blocks += _recode_menu(items)
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=DISCUSS)]))
    return MessageContent(text=text, blocks=blocks)


def build_route_post(items: list[DealLoss], *, catalogue: Catalogue) -> MessageContent:
    """A post in a channel that hears about a reason: which deals were lost for it, and why."""
    logged = _logged(items)
    if len(logged) == 1:
        item, entry = logged[0]
        label = catalogue.label(entry.reason_code)
        blocks = _one_deal(item, entry, catalogue, headline=f"Lost: {item.deal.name}")
        text = f"{escape(item.deal.name)} was lost: {escape(label)}"
    else:
        blocks = _several_deals(logged, catalogue, headline=f"{len(logged)} deals lost")
        text = with_amounts(f"{len(logged)} deals lost", _total(logged))
        blocks += _recode_menu(items)
    return MessageContent(text=text, blocks=blocks)


def _logged(items: list[DealLoss]) -> list[tuple[DealLoss, LoggedReason]]:
    return [(item, item.entry) for item in items if item.entry is not None]


def _one_deal(item: DealLoss, entry: LoggedReason, catalogue: Catalogue, *, headline: str) -> list[Block]:
    deal = item.deal
    blocks: list[Block] = [
        HeaderBlock(text=truncate(headline, HEADER_MAX_LENGTH)),
        SectionBlock(
            fields=[
                MarkdownTextObject(text=f"*Deal*\n{fit(escape(deal.name), FIELD_MAX_LENGTH)}"),
                MarkdownTextObject(
                    text=f"*Account*\n{fit(escape(deal.account), FIELD_MAX_LENGTH) if deal.account else '—'}"
                ),
                MarkdownTextObject(text=f"*Amount*\n{format_amount(deal.amount, deal.currency)}"),
                MarkdownTextObject(text=f"*Lost on*\n{day(item.lost_at)}"),
            ]
        ),
        _reason_section(entry, catalogue, rep=deal.owner_slack_id),
    ]
    buttons: list[InteractiveElement] = []
    if deal.url:
        buttons.append(ButtonElement(text="Open in CRM", action_id=ids.OPEN_IN_CRM, url=deal.url))
    recode = recode_control([item])
    if recode is not None:
        buttons.append(recode)
    if buttons:
        blocks.append(ActionsBlock(elements=buttons))
    return blocks


def _recode_menu(items: list[DealLoss]) -> list[Block]:
    """The Re-code menu of a post about several deals (one deal's post has its button beside Open in CRM)."""
    if len(_logged(items)) < 2:
        return []
    menu = recode_control(items)
    return [ActionsBlock(elements=[menu])] if menu is not None else []


def _several_deals(logged: list[tuple[DealLoss, LoggedReason]], catalogue: Catalogue, *, headline: str) -> list[Block]:
    """The deals grouped by their current reason (one, unless some were edited since)."""
    groups: dict[tuple[str, str | None, str, str], list[tuple[DealLoss, LoggedReason]]] = {}
    for item, entry in logged:
        key = (entry.reason_code, entry.detail, entry.explanation, entry.logged_by)
        groups.setdefault(key, []).append((item, entry))
    blocks: list[Block] = [HeaderBlock(text=truncate(with_amounts(headline, _total(logged)), HEADER_MAX_LENGTH))]
    for group in list(groups.values())[:MAX_REASONS]:
        lines = [_deal_line(item) for item, _ in group]
        heading = with_amounts(f"*{plural(len(group), 'deal')}*", _total(group))
        blocks.append(_reason_section(group[0][1], catalogue, rep=group[0][0].deal.owner_slack_id))
        blocks.append(SectionBlock(text=fit_list(heading, lines, len(lines))))
    left_out = sum(len(group) for group in list(groups.values())[MAX_REASONS:])
    if left_out:
        blocks.append(
            ContextBlock(
                elements=[MarkdownTextObject(text=f"…and {plural(left_out, 'more deal')} with other reasons.")]
            )
        )
    return blocks


def _reason_section(entry: LoggedReason, catalogue: Catalogue, *, rep: str | None) -> SectionBlock:
    """The reason, its competitor or missing feature, the explanation quoted, and who logged it
    (the rep, and the manager who re-coded it)."""
    lines = [f"*Reason:* {escape(catalogue.label(entry.reason_code))}"]
    reason = catalogue.get(entry.reason_code)
    if entry.detail and reason is not None and reason.requires is not None:
        lines.append(f"*{DETAIL_NAMES[reason.requires]}:* {escape(entry.detail)}")
    lines.append(who_logged(entry, rep=rep))
    quoted = blockquote(escape(entry.explanation))
    return SectionBlock(text=fit("\n".join([*lines, quoted]), SECTION_MAX_LENGTH))


def _deal_line(item: DealLoss) -> str:
    deal = item.deal
    line = f"• *{escape(deal.name)}*"
    if deal.account:
        line += f" · {escape(deal.account)}"
    if deal.amount is not None:
        line += f" · {format_amount(deal.amount, deal.currency)}"
    return f"{line} · lost {day(item.lost_at)}"


def _total(logged: list[tuple[DealLoss, LoggedReason]]) -> Amounts:
    """The amounts added up per currency, never across currencies."""
    totals: Amounts = {}
    for item, _ in logged:
        if item.deal.amount is not None:
            currency = item.deal.currency or ""
            totals[currency] = totals.get(currency, Decimal(0)) + item.deal.amount
    return totals
