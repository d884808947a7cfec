"""Re-coding (README.md, "Re-coding a reason"): the Re-code control on the posts managers read,
who logged a reason as those posts and the rep's DM say it, and the notice the rep gets in their
prompt's thread when a manager re-codes their reason."""

from slack_sdk.models.blocks import (
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    Option,
    SectionBlock,
    StaticSelectElement,
)

from bot.reasons import Catalogue
from bot.views import ids
from bot.views.data import DealLoss, LoggedReason, MessageContent, RecodeNotice
from bot.views.text import day, escape, truncate

# https://docs.slack.dev/reference/block-kit/block-elements/select-menu-element: 100 options, 75 characters each.
MENU_MAX_OPTIONS = 100
OPTION_MAX_LENGTH = 75


def recode_control(items: list[DealLoss]) -> ButtonElement | StaticSelectElement | None:
    """A Re-code button for a post about one deal with a reason; a menu of the deals with a reason
    for a post about several; None when no deal it lists has a reason yet. Anyone in the channel
    sees it; the bot checks who clicks (`bot.services.recoding`)."""
    logged = [item for item in items if item.entry is not None]
    if not logged:
        return None
    if len(items) == 1:
        return ButtonElement(text="Re-code", action_id=ids.RECODE, value=str(logged[0].loss_id))
    options = [
        Option(value=str(item.loss_id), label=truncate(item.deal.name, OPTION_MAX_LENGTH))
        for item in logged[:MENU_MAX_OPTIONS]
    ]
    return StaticSelectElement(action_id=ids.RECODE_PICK, placeholder="Re-code a reason", options=options)


def who_logged(entry: LoggedReason, *, rep: str | None = None) -> str:
    """`Logged by @rep Dec 1, 2026`; for a re-coded reason, who re-coded it, after the rep when
    `rep` (their Slack id) is given."""
    if not entry.recoded:
        return f"Logged by <@{entry.logged_by}> {day(entry.logged_at)}"
    recoded = f"re-coded by <@{entry.logged_by}> {day(entry.logged_at)}"
    return f"Logged by <@{rep}> · {recoded}" if rep else f"R{recoded[1:]}"


def build_recode_notice(notice: RecodeNotice, *, catalogue: Catalogue) -> MessageContent:
    """The reply in the rep's prompt thread: who changed the reason of which deal, from what to what."""
    before, after = _reason(notice.before, catalogue), _reason(notice.after, catalogue)
    deal = f"*{escape(notice.deal_name)}*"
    more = "Reply here if you see it differently."
    if before == after:
        edited = ", with an edited explanation" if notice.before.explanation != notice.after.explanation else ""
        text = f":pencil2: <@{notice.manager}> reviewed the reason of {deal} and kept {after}{edited}."
    else:
        text = f":pencil2: <@{notice.manager}> re-coded the reason of {deal} from {before} to {after}."
        more = f"It counts under its new reason in the stats and the digest. {more}"
    blocks = [SectionBlock(text=text), ContextBlock(elements=[MarkdownTextObject(text=more)])]
    return MessageContent(text=text, blocks=blocks)


def _reason(entry: LoggedReason, catalogue: Catalogue) -> str:
    label = f"*{escape(catalogue.label(entry.reason_code))}*"
    return f"{label} ({escape(entry.detail)})" if entry.detail else label
