"""The DM a rep gets for lost deals, in each state of their losses: awaiting, logged, cancelled,
or moved to another owner.

One loss gets a detailed message; several (a bulk closure) get a list with a Log button per deal,
paginated within Block Kit's 50 blocks. The same message is updated in place (`chat.update`) as
the losses change, so the rep's DM always shows where each deal stands.
"""

from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.crm.event import CLOSED_WON
from bot.reasons import Catalogue
from bot.views import ids
from bot.views.data import DealFacts, DealLoss, LoggedReason, MessageContent
from bot.views.recode import who_logged
from bot.views.text import blockquote, day, escape, fit, format_amount, plural, truncate

# Block Kit limits: https://docs.slack.dev/reference/block-kit/blocks
HEADER_MAX_LENGTH = 150
SECTION_MAX_LENGTH = 3000
FIELD_MAX_LENGTH = 1900
# A button's accessibility_label: https://docs.slack.dev/reference/block-kit/block-elements/button-element
BUTTON_LABEL_MAX_LENGTH = 75


# Deals listed on one page of a bulk prompt: with the header, the buttons, the page line and the
# page buttons, a page stays under Block Kit's 50 blocks.
PAGE_SIZE = 40
# A bulk prompt of at least this many deals offers to log them all as a pipeline clean-up.
CLEAN_UP_MIN_DEALS = 20


def build_prompt_message(*, items: list[DealLoss], catalogue: Catalogue, message_id: int, page: int) -> MessageContent:
    """The prompt for one loss, or the list of several."""
    if len(items) == 1:
        return build_single_prompt(items[0], catalogue=catalogue)
    return build_bulk_prompt(items, catalogue=catalogue, message_id=message_id, page=page)


def build_single_prompt(item: DealLoss, *, catalogue: Catalogue) -> MessageContent:
    """One line about the deal, then what it needs: the ask and one primary button while it awaits
    a reason; the reason once logged; what happened to it when no reason is needed any more."""
    deal, entry = item.deal, item.entry
    about = SectionBlock(text=fit(_deal_summary(deal, item.lost_at), SECTION_MAX_LENGTH))
    if item.cancelled and not item.moved:
        outcome = "was won" if deal.stage == CLOSED_WON else "was reopened in the CRM"
        now = "Won" if deal.stage == CLOSED_WON else "Reopened in the CRM"
        blocks: list[Block] = [about, SectionBlock(text=f"{now} after it was closed lost: no reason is needed.")]
        return MessageContent(text=f"{escape(deal.name)} {outcome}: no reason is needed.", blocks=blocks)
    if item.moved:
        blocks = [about, SectionBlock(text=f"This deal now belongs to {_owner(deal)}: they will log its reason.")]
        return MessageContent(text=f"{escape(deal.name)} now belongs to {_owner(deal)}.", blocks=blocks)
    if entry is not None:
        blocks = [
            about,
            *_logged_entry(entry, catalogue),
            _buttons(deal, ids.EDIT_REASON, "Edit", item.loss_id, primary=False),
        ]
        return MessageContent(
            text=f"Reason logged for {escape(deal.name)}: {catalogue.label(entry.reason_code)}.", blocks=blocks
        )
    blocks = [
        about,
        SectionBlock(text="Why was it lost? One reason and a sentence: under a minute, and the team learns from it."),
        _buttons(deal, ids.LOG_REASON, "Log reason", item.loss_id, primary=True),
    ]
    amount = f" ({format_amount(deal.amount, deal.currency)})" if deal.amount is not None else ""
    return MessageContent(text=f"Closed lost: {escape(deal.name)}{amount}. Log why it was lost.", blocks=blocks)


def build_bulk_prompt(items: list[DealLoss], *, catalogue: Catalogue, message_id: int, page: int) -> MessageContent:
    """A list of a rep's lost deals, each with its own button, one page at a time."""
    awaiting = sum(item.awaiting for item in items)
    pages = (len(items) + PAGE_SIZE - 1) // PAGE_SIZE
    page = min(max(page, 0), pages - 1)
    settled = len(items) - awaiting
    if awaiting:
        headline = f"{plural(awaiting, 'closed-lost deal')} {'needs' if awaiting == 1 else 'need'} a reason"
    elif all(item.entry is not None for item in items):
        headline = "Every deal here has its reason"
    else:
        headline = "Nothing here needs a reason any more"
    # The count closed together is not the count still waiting: say how the two differ.
    together = f"{len(items):,} of your deals were closed lost together"
    if not awaiting:
        intro = f"{together}: each has its reason, or no longer needs one."
    elif settled:
        intro = (
            f"{together}; {settled:,} of them {'is' if settled == 1 else 'are'} settled (logged, reopened or "
            "moved). Log why each of the others was lost, or log one reason for several lost for the same reason."
        )
    else:
        intro = f"{together}. Log why each was lost, or log one reason for several that were lost for the same reason."
    blocks: list[Block] = [HeaderBlock(text=headline)]
    clean_up = awaiting > 0 and len(items) >= CLEAN_UP_MIN_DEALS and catalogue.offers_clean_up
    if clean_up:
        blocks.extend(_clean_up_question(len(items), message_id))
    else:
        blocks.append(SectionBlock(text=intro))
    if awaiting > 1 and not clean_up:
        blocks.append(
            ActionsBlock(
                elements=[
                    ButtonElement(
                        text="Log one reason for several",
                        action_id=ids.LOG_SEVERAL,
                        value=str(message_id),
                        style="primary",
                    )
                ]
            )
        )
    shown = items[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    blocks.extend(deal_line(item, catalogue) for item in shown)
    if pages > 1:
        first = page * PAGE_SIZE + 1
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text=f"Deals {first}–{first + len(shown) - 1} of {len(items)} · page {page + 1} of {pages}"
                    )
                ]
            )
        )
        turns = []
        if page > 0:
            turns.append(ButtonElement(text="← Previous", action_id=ids.PAGE_BACK, value=f"{message_id}:{page - 1}"))
        if page < pages - 1:
            turns.append(ButtonElement(text="Next →", action_id=ids.PAGE_NEXT, value=f"{message_id}:{page + 1}"))
        blocks.append(ActionsBlock(elements=turns))
    return MessageContent(text=f"{headline}.", blocks=blocks)


def _clean_up_question(count: int, message_id: int) -> list[Block]:
    """The one-click answer for a bulk clean-up (README.md, "Bulk clean-ups"), beside the way to log
    real reasons."""
    return [
        SectionBlock(text=f"{count} deals closed together — a pipeline clean-up?"),
        ActionsBlock(
            elements=[
                ButtonElement(
                    text="Yes, log them all as clean-up",
                    action_id=ids.LOG_CLEAN_UP,
                    value=str(message_id),
                    style="primary",
                ),
                ButtonElement(text="I'll log reasons", action_id=ids.LOG_SEVERAL, value=str(message_id)),
            ]
        ),
    ]


def deal_line(item: DealLoss, catalogue: Catalogue) -> SectionBlock:
    """One deal in a list: what it was and where its reason stands, with the button that fits."""
    deal, entry = item.deal, item.entry
    summary = f"*{escape(deal.name)}*"
    if deal.account:
        summary += f" · {escape(deal.account)}"
    if deal.amount is not None:
        summary += f" · {format_amount(deal.amount, deal.currency)}"
    summary += f" · lost {day(item.lost_at)}"
    button = None
    if item.moved:
        status = f"Now belongs to {_owner(deal)}."
    elif item.cancelled:
        status = "Reopened in the CRM: no reason is needed."
    elif entry is not None:
        status = f":white_check_mark: {escape(catalogue.label(entry.reason_code))}"
        if entry.detail:
            status += f": {escape(entry.detail)}"
        button = button_for(deal.name, "Edit", ids.EDIT_REASON, item.loss_id)
    else:
        status = "Needs a reason."
        button = button_for(deal.name, "Log reason", ids.LOG_REASON, item.loss_id)
    return SectionBlock(text=fit(f"{summary}\n{status}", SECTION_MAX_LENGTH), accessory=button)


def button_for(deal_name: str, label: str, action_id: str, loss_id: int, *, style: str | None = None) -> ButtonElement:
    """A button about one deal, whose accessibility_label names it: a screen reader on a list of
    forty deals reads "Log reason for Acme — 200 seats", not forty times "Log reason"."""
    return ButtonElement(
        text=label,
        action_id=action_id,
        value=str(loss_id),
        style=style,
        accessibility_label=truncate(f"{label} for {deal_name}", BUTTON_LABEL_MAX_LENGTH),
    )


def _owner(deal: DealFacts) -> str:
    if deal.owner_slack_id:
        return f"<@{deal.owner_slack_id}>"
    return escape(deal.owner_email or "another rep")


def _deal_summary(deal: DealFacts, lost_at: datetime) -> str:
    """`*Acme — 200 seats* · Acme Corp · 48,000 USD · closed lost Nov 20, 2026`: the deal's name once,
    cut as a header would be (a CRM allows names far longer than anyone reads)."""
    parts = [f"*{escape(truncate(deal.name, HEADER_MAX_LENGTH))}*"]
    if deal.account:
        parts.append(escape(deal.account))
    if deal.amount is not None:
        parts.append(format_amount(deal.amount, deal.currency))
    parts.append(f"closed lost {day(lost_at)}")
    return " · ".join(parts)


def _logged_entry(entry: LoggedReason, catalogue: Catalogue) -> list[Block]:
    headline = f":white_check_mark: *{escape(catalogue.label(entry.reason_code))}*"
    if entry.detail:
        headline += f": {escape(entry.detail)}"
    quoted = blockquote(escape(entry.explanation))
    context = who_logged(entry)
    if entry.revisit_on is not None:
        context += f" · revisit on {day(entry.revisit_on)}"
    return [
        SectionBlock(text=fit(f"{headline}\n{quoted}", SECTION_MAX_LENGTH)),
        ContextBlock(elements=[MarkdownTextObject(text=context)]),
    ]


def _buttons(deal: DealFacts, action_id: str, label: str, loss_id: int, *, primary: bool) -> ActionsBlock:
    elements = [button_for(deal.name, label, action_id, loss_id, style="primary" if primary else None)]
    if deal.url:
        elements.append(ButtonElement(text="Open in CRM", action_id=ids.OPEN_IN_CRM, url=deal.url))
    return ActionsBlock(elements=elements)
