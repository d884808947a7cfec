"""The DM a rep gets for a lost deal, in each state of its loss: awaiting, logged or cancelled.

The same message is updated in place (`chat.update`) as the loss changes, so the rep's DM always
shows where the deal stands.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.reasons import Catalogue
from bot.views import ids
from bot.views.text import escape, fit, format_amount, truncate
from storage.models import Deal, Loss, LossState, ReasonEntry

# Block Kit limits: https://docs.slack.dev/reference/block-kit/blocks
HEADER_MAX_LENGTH = 150
SECTION_MAX_LENGTH = 3000
FIELD_MAX_LENGTH = 1900


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[Block]

    def as_kwargs(self) -> dict[str, Any]:
        """`text` and `blocks` for chat.postMessage / chat.update; `to_dict` checks Block Kit limits."""
        return {"text": self.text, "blocks": [block.to_dict() for block in self.blocks]}


def build_prompt_message(*, deal: Deal, loss: Loss, entry: ReasonEntry | None, catalogue: Catalogue) -> Message:
    blocks: list[Block] = [
        HeaderBlock(text=truncate(f"Closed lost: {deal.name}", HEADER_MAX_LENGTH)),
        _deal_fields(deal, loss),
    ]
    if loss.state == LossState.CANCELLED:
        blocks.append(
            SectionBlock(text=f"This deal moved back to *{escape(deal.stage)}* in the CRM: no reason is needed.")
        )
        return Message(text=f"{escape(deal.name)} was reopened: no reason is needed.", blocks=blocks)

    if loss.state == LossState.LOGGED and entry is not None:
        blocks.extend(_logged_entry(entry, catalogue))
        blocks.append(_buttons(deal, ids.EDIT_REASON, "Edit", loss.id, primary=False))
        return Message(
            text=f"Reason logged for {escape(deal.name)}: {catalogue.label(entry.reason_code)}.", blocks=blocks
        )

    blocks.append(SectionBlock(text="Why was it lost? It takes under a minute, and it is what the team learns from."))
    blocks.append(_buttons(deal, ids.LOG_REASON, "Log reason", loss.id, primary=True))
    amount = format_amount(deal.amount, deal.currency)
    return Message(text=f"Closed lost: {escape(deal.name)} ({amount}). Log why it was lost.", blocks=blocks)


def _deal_fields(deal: Deal, loss: Loss) -> SectionBlock:
    return SectionBlock(
        fields=[
            MarkdownTextObject(
                text=f"*Account*\n{fit(escape(deal.account), FIELD_MAX_LENGTH) if deal.account else '—'}"
            ),
            MarkdownTextObject(text=f"*Amount*\n{format_amount(deal.amount, deal.currency)}"),
            MarkdownTextObject(text=f"*Lost on*\n{slack_date(loss.lost_at)}"),
        ]
    )


def _logged_entry(entry: ReasonEntry, catalogue: Catalogue) -> list[Block]:
    headline = f":white_check_mark: *{escape(catalogue.label(entry.reason_code))}*"
    if entry.detail:
        headline += f": {escape(entry.detail)}"
    quoted = "\n".join(f">{line}" for line in escape(entry.explanation).splitlines())
    context = f"Logged by <@{entry.logged_by}> {slack_date(entry.logged_at)}"
    if entry.revisit_on is not None:
        context += f" · revisit on {entry.revisit_on:%b %-d, %Y}"
    return [
        SectionBlock(text=fit(f"{headline}\n{quoted}", SECTION_MAX_LENGTH)),
        ContextBlock(elements=[MarkdownTextObject(text=context)]),
    ]


def _buttons(deal: Deal, action_id: str, label: str, loss_id: int, *, primary: bool) -> ActionsBlock:
    elements = [
        ButtonElement(text=label, action_id=action_id, value=str(loss_id), style="primary" if primary else None)
    ]
    if deal.url:
        elements.append(ButtonElement(text="Open in CRM", action_id=ids.OPEN_IN_CRM, url=deal.url))
    return ActionsBlock(elements=elements)


def slack_date(moment: datetime) -> str:
    """A date Slack shows in the reader's own time zone. https://docs.slack.dev/messaging/formatting-message-text#date-formatting"""
    return f"<!date^{int(moment.timestamp())}^{{date_short}}|{moment:%Y-%m-%d}>"
