"""The weekly digest as a Block Kit message: within a message's 50 blocks and 3,000 characters a
section for any team size, long lists ending "and N more". https://docs.slack.dev/reference/block-kit/blocks"""

from datetime import timedelta
from decimal import Decimal

from slack_sdk.models.blocks import Block, ContextBlock, DividerBlock, HeaderBlock, MarkdownTextObject, SectionBlock

from bot.reasons import Catalogue, ReasonGroup
from bot.views.data import Amounts, ClosedStats, Digest, MessageContent, Quality, Quote
from bot.views.figures import amounts_text, fit_list, percent, quality_text, with_amounts
from bot.views.prompt import HEADER_MAX_LENGTH, SECTION_MAX_LENGTH
from bot.views.text import blockquote, day, escape, fit, format_amount, plural, truncate

BAR_WIDTH = 10
CHART_LABEL_WIDTH = 24
NAMES_LISTED = 10
REPS_LISTED = 30
QUOTE_MAX_LENGTH = 600


def build_digest_message(digest: Digest, catalogue: Catalogue) -> MessageContent:
    title = f"Closed-lost digest, {digest.week.period.label}" + (" (so far)" if digest.week.so_far else "")
    header = HeaderBlock(text=truncate(title, HEADER_MAX_LENGTH))
    current = digest.current
    if digest.empty:
        note = f"No closed-lost deals in {digest.week.period.label}."
        if current.won:
            note += f" {with_amounts(f'{current.won:,} won', current.won_value)}."
        blocks: list[Block] = [header, SectionBlock(text=note)]
        if digest.win_backs:
            blocks.append(_section(_win_backs(digest)))
        return MessageContent(text=f"{title}: no closed-lost deals.", blocks=blocks)

    blocks = [header, _section(_headline(current, digest.previous)), DividerBlock()]
    real = [figures for figures in current.reasons if _group(catalogue, figures.code) == ReasonGroup.LOSS]
    if real:
        blocks.append(_section("*Why we lost* (real losses: deals, share, change on the week before, value)"))
        blocks.append(_section(_chart(digest, catalogue)))
    blocks.append(_section(_no_decision(digest, catalogue)))
    if digest.competitors:
        blocks.append(_section(_names("*Competitors*", digest.competitors)))
    if digest.product_gaps:
        blocks.append(_section(_names("*Product gaps*", digest.product_gaps)))
    blocks += [_section(_discipline(digest)), _section(_reps(digest, catalogue))]
    if digest.revisits:
        blocks.append(_section(_revisits(digest, catalogue)))
    if digest.win_backs:
        blocks.append(_section(_win_backs(digest)))
    blocks += [_quote(quote, catalogue) for quote in digest.quotes]
    if digest.quotes_elsewhere:
        blocks.append(_section("*The largest loss in each other currency*"))
        blocks += [_quote(quote, catalogue) for quote in digest.quotes_elsewhere]
    blocks.append(
        ContextBlock(elements=[MarkdownTextObject(text="Amounts in different currencies are never added up.")])
    )
    text = f"{title}: {current.lost} lost, {current.won} won."
    return MessageContent(text=text, blocks=blocks)


def render_text(message: MessageContent) -> str:
    """The message as readable text, one block a paragraph: what `digest --dry-run` prints first."""
    paragraphs = []
    for block in message.as_kwargs()["blocks"]:
        if block["type"] in ("header", "section"):
            paragraphs.append(block["text"]["text"])
        elif block["type"] == "context":
            paragraphs.append(" ".join(element["text"] for element in block["elements"]))
        elif block["type"] == "divider":
            paragraphs.append("---")
    return "\n\n".join(paragraphs)


def _quote(quote: Quote, catalogue: Catalogue) -> SectionBlock:
    quoted = blockquote(fit(escape(quote.explanation), QUOTE_MAX_LENGTH))
    amount = format_amount(quote.amount, quote.currency)
    reason = escape(catalogue.label(quote.reason_code))
    if quote.recoded_from is not None:
        who, recoded = quote.recoded_from, f", re-coded by <@{quote.logged_by}>"
    else:
        who, recoded = quote.logged_by, ""
    return _section(f"{quoted}\n— <@{who}>, *{escape(quote.deal_name)}* ({amount}), {reason}{recoded}")


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=fit(text, SECTION_MAX_LENGTH))


def _group(catalogue: Catalogue, code: str) -> ReasonGroup:
    reason = catalogue.get(code)
    return reason.group if reason is not None else ReasonGroup.LOSS


def _change(now: int, before: int) -> str:
    return f"+{now - before}" if now > before else f"−{before - now}" if now < before else "±0"


def _headline(current: ClosedStats, previous: ClosedStats) -> str:
    by_value = ", ".join(
        f"{currency or 'no currency'} {percent(rate)}" for currency, rate in current.win_rate_by_value.items()
    )
    before_by_value = ", ".join(
        f"{currency or 'no currency'} {percent(rate)}" for currency, rate in previous.win_rate_by_value.items()
    )
    return "\n".join(
        [
            with_amounts(f"*Lost* {current.lost} ({_change(current.lost, previous.lost)})", current.lost_value)
            + f"  _{with_amounts(f'week before: {previous.lost}', previous.lost_value)}_",
            with_amounts(f"*Won* {current.won} ({_change(current.won, previous.won)})", current.won_value)
            + f"  _{with_amounts(f'week before: {previous.won}', previous.won_value)}_",
            f"*Win rate* {percent(current.win_rate)} by count · by value: {by_value or '—'}"
            f"  _week before: {percent(previous.win_rate)} · by value: {before_by_value or '—'}_",
        ]
    )


def _chart(digest: Digest, catalogue: Catalogue) -> str:
    """A monospace bar chart of real losses by reason; the bar is the share of the week's logged losses."""
    before = {figures.code: figures.deals for figures in digest.previous.reasons}
    logged = digest.current.logged
    lines = []
    for figures in digest.current.reasons:
        if _group(catalogue, figures.code) != ReasonGroup.LOSS:
            continue
        share = figures.deals / logged
        bar = "█" * round(share * BAR_WIDTH)
        label = truncate(catalogue.label(figures.code), CHART_LABEL_WIDTH)
        lines.append(
            f"{label:<{CHART_LABEL_WIDTH}} {bar:<{BAR_WIDTH}} {figures.deals:>4} {percent(share):>4} "
            f"{_change(figures.deals, before.get(figures.code, 0)):>4}  {amounts_text(figures.value)}"
        )
    return "```" + escape("\n".join(lines)) + "```"


def _no_decision(digest: Digest, catalogue: Catalogue) -> str:
    apart = [f for f in digest.current.reasons if _group(catalogue, f.code) == ReasonGroup.NO_DECISION]
    before = sum(f.deals for f in digest.previous.reasons if _group(catalogue, f.code) == ReasonGroup.NO_DECISION)
    deals = sum(f.deals for f in apart)
    value: Amounts = {}
    for figures in apart:
        for currency, amount in figures.value.items():
            value[currency] = value.get(currency, Decimal(0)) + amount
    return with_amounts(
        f"*No decision / went dark* (kept apart from real losses) {deals} ({_change(deals, before)}) · "
        f"{percent(digest.current.no_decision_share)} of logged losses",
        value,
    )


def _names(heading: str, counted: list[tuple[str, int]]) -> str:
    names = [f"{escape(name)} ({count})" for name, count in counted[:NAMES_LISTED]]
    return fit_list(heading, names, len(counted), separator=" · ")


def _duration(delay: timedelta) -> str:
    if delay < timedelta(minutes=1):
        return "under a minute"
    hours, seconds = divmod(int(delay.total_seconds()), 3600)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {seconds // 60} min"


def _discipline(digest: Digest) -> str:
    current, previous = digest.current, digest.previous
    median = _duration(digest.median_time_to_reason) if digest.median_time_to_reason is not None else "—"
    lines = [
        f"*Discipline* {percent(current.logged_share)} of losses have a reason"
        f" _(week before {percent(previous.logged_share)})_ · median time to reason {median}"
    ]
    if current.logged:
        lines.append(f"Reason quality: {quality_text(current.quality, logged=current.logged)}.")
    if digest.overdue:
        reps = [f"<@{rep}> ({count})" if rep else f"reps not in Slack ({count})" for rep, count in digest.overdue]
        listed = fit_list("", reps[:NAMES_LISTED], len(reps), separator=", ")
        lines.append(f"Overdue (past their escalation, or the rep could not be asked): {listed}")
    else:
        lines.append("No loss is overdue for a reason.")
    if digest.bulk_answers:
        deals = "deal was" if digest.bulk_answers == 1 else "deals were"
        lines.append(f"Bulk clean-ups: {digest.bulk_answers} {deals} logged in one click as a pipeline clean-up.")
    for crm, count in digest.webhook_misses:
        changes = plural(count, "stage change")
        lines.append(f"{escape(crm)}: {changes} reached us only through the sweep: check its webhook.")
    return "\n".join(lines)


def _reps(digest: Digest, catalogue: Catalogue) -> str:
    lines = [
        f"• {f'<@{line.user_id}>' if line.user_id else 'Reps not in Slack'} — {line.lost} lost · "
        f"{percent(line.logged / line.lost)} logged · top: "
        f"{escape(catalogue.label(line.top_reason)) if line.top_reason else '—'}" + _rep_quality(line.quality)
        for line in digest.reps[:REPS_LISTED]
    ]
    return fit_list("*By rep*", lines, len(digest.reps))


def _rep_quality(quality: Quality) -> str:
    """A rep's quality figures, short, after their line; nothing when both are zero."""
    if not quality.confirmed and not quality.recoded:
        return ""
    return f" · {quality.confirmed} kept over a suggestion, {quality.recoded} re-coded"


def _revisits(digest: Digest, catalogue: Catalogue) -> str:
    lines = [
        f"• {day(revisit.revisit_on)} — *{escape(revisit.deal_name)}*"
        + (f" ({format_amount(revisit.amount, revisit.currency)})" if revisit.amount is not None else "")
        + f" · {f'<@{revisit.owner_slack_id}>' if revisit.owner_slack_id else 'owner not in Slack'} · "
        f"{escape(catalogue.label(revisit.reason_code))}"
        for revisit in digest.revisits
    ]
    return fit_list(f"*Revisits in the next two weeks* ({digest.revisits_total})", lines, digest.revisits_total)


def _win_backs(digest: Digest) -> str:
    lines = [
        f"• *{escape(win_back.deal_name)}*"
        + (f" ({format_amount(win_back.amount, win_back.currency)})" if win_back.amount is not None else "")
        + f" · {f'<@{win_back.owner_slack_id}>' if win_back.owner_slack_id else 'owner not in Slack'}"
        for win_back in digest.win_backs
    ]
    return fit_list(f"*Win-backs: revisited deals reopened* ({digest.win_backs_total})", lines, digest.win_backs_total)
