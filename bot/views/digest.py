"""The weekly digest as a Block Kit message: within a message's 50 blocks and 3,000 characters a
section for any team size, long lists ending "and N more". https://docs.slack.dev/reference/block-kit/blocks"""

from datetime import timedelta
from decimal import Decimal

from slack_sdk.models.blocks import Block, DividerBlock, HeaderBlock, SectionBlock

from bot.reasons import Catalogue, ReasonGroup, Requirement
from bot.views.data import Amounts, ClosedStats, Digest, MessageContent, Quality, Quote
from bot.views.figures import amounts_text, fit_list, percent, quality_text, with_amounts
from bot.views.prompt import HEADER_MAX_LENGTH, SECTION_MAX_LENGTH
from bot.views.text import blockquote, day, escape, fit, format_amount, plural, truncate

NAMES_LISTED = 10
REPS_LISTED = 30
QUOTE_MAX_LENGTH = 600
UNNAMED = "a Slack user with no name"


def build_digest_message(digest: Digest, catalogue: Catalogue) -> MessageContent:
    """Three lines first (lost and won, the top reason, discipline), then the details. People are
    named, never mentioned: a digest pings nobody."""
    title = f"Closed-lost digest, {digest.week.period.label}" + (" (so far)" if digest.week.so_far else "")
    header = HeaderBlock(text=truncate(title, HEADER_MAX_LENGTH))
    current = digest.current
    if digest.empty:
        note = f"No closed-lost deals in {digest.week.period.label}."
        if current.won:
            note += f" {with_amounts(plural(current.won, 'deal') + ' won', current.won_value)}."
        blocks: list[Block] = [header, SectionBlock(text=note)]
        if digest.win_backs:
            blocks.append(_section(_win_backs(digest)))
        return MessageContent(text=f"{title}: no closed-lost deals.", blocks=blocks)

    summary = _summary(digest, catalogue)
    blocks = [header, _section("\n".join(summary)), DividerBlock(), _section(_headline(current, digest.previous))]
    if any(_group(catalogue, figures.code) == ReasonGroup.LOSS for figures in current.reasons):
        blocks.append(_section(_why_we_lost(digest, catalogue)))
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
    if digest.quotes or digest.quotes_elsewhere:
        blocks.append(_section("*In their words:* the largest losses"))
    blocks += [_quote(quote, digest, catalogue) for quote in [*digest.quotes, *digest.quotes_elsewhere]]
    text = f"{title}: " + ". ".join(line.replace("*", "") for line in summary) + "."
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


def _quote(quote: Quote, digest: Digest, catalogue: Catalogue) -> SectionBlock:
    quoted = blockquote(fit(escape(quote.explanation), QUOTE_MAX_LENGTH))
    amount = format_amount(quote.amount, quote.currency)
    reason = escape(catalogue.label(quote.reason_code))
    # A re-coded reason is still the rep's story; the manager who re-coded it is said, not named.
    who = quote.recoded_from or quote.logged_by
    recoded = ", re-coded by a manager" if quote.recoded_from is not None else ""
    return _section(f"{quoted}\n— {_person(digest, who)}, *{escape(quote.deal_name)}* ({amount}), {reason}{recoded}")


def _person(digest: Digest, user_id: str | None, *, nobody: str = "a rep not in Slack") -> str:
    """A person's display name, never a mention; `nobody` when the bot knows no Slack user."""
    if user_id is None:
        return nobody
    return escape(digest.names.get(user_id, UNNAMED))


def _in_brackets(amounts: Amounts) -> str:
    return f" ({amounts_text(amounts)})" if amounts else ""


def _named_in(digest: Digest, catalogue: Catalogue, code: str) -> list[tuple[str, int]]:
    """The competitors, or the missing features, that reps named with this reason; [] for a reason
    that names neither."""
    reason = catalogue.get(code)
    if reason is None or reason.requires is None:
        return []
    return digest.competitors if reason.requires == Requirement.COMPETITOR else digest.product_gaps


def _summary(digest: Digest, catalogue: Catalogue) -> list[str]:
    """Lost and won with their values; the top reason with its top competitor or missing feature;
    discipline in one clause."""
    current = digest.current
    closed = f"*{current.lost:,} lost*" + _in_brackets(current.lost_value)
    if current.won:
        closed += f", *{current.won:,} won*" + _in_brackets(current.won_value)
        closed += f", win rate {percent(current.win_rate)}"
    real = [figures for figures in current.reasons if _group(catalogue, figures.code) == ReasonGroup.LOSS]
    if real:
        top = real[0]
        logged = plural(current.with_reason, "loss with a reason", "losses with a reason")
        reason = f"*Top reason:* {escape(catalogue.label(top.code))}, {top.deals:,} of {logged}"
        named = _named_in(digest, catalogue, top.code)
        if named:
            reason += f", most often {escape(named[0][0])}"
    elif current.with_reason:
        reason = "*Top reason:* none that is a real loss: every logged loss was no decision or a clean-up"
    else:
        reason = "*Top reason:* not known yet: no loss of the week has a reason"
    discipline = f"*Discipline:* {percent(current.logged_share)} logged"
    if digest.median_time_to_reason is not None:
        discipline += f", {_duration(digest.median_time_to_reason)} to a reason at the median"
    overdue = sum(count for _, count in digest.overdue)
    discipline += f"; {plural(overdue, 'loss', 'losses')} overdue" if overdue else "; nothing overdue"
    return [closed, reason, discipline]


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=fit(text, SECTION_MAX_LENGTH))


def _group(catalogue: Catalogue, code: str) -> ReasonGroup:
    reason = catalogue.get(code)
    return reason.group if reason is not None else ReasonGroup.LOSS


def _change(now: int, before: int) -> str:
    return f"+{now - before}" if now > before else f"−{before - now}" if now < before else "±0"


def _headline(current: ClosedStats, previous: ClosedStats) -> str:
    """The week against the one before; win rates by value per currency, never across currencies."""
    lines = [
        f"*Against the week before:* lost {current.lost:,} ({_change(current.lost, previous.lost)}),"
        f" won {current.won:,} ({_change(current.won, previous.won)}),"
        f" win rate {percent(current.win_rate)} (was {percent(previous.win_rate)})"
    ]
    by_value = ", ".join(
        f"{currency} {percent(rate)}" for currency, rate in current.win_rate_by_value.items() if currency
    )
    if by_value:
        lines.append(f"*Win rate by value:* {by_value}")
    return "\n".join(lines)


def _why_we_lost(digest: Digest, catalogue: Catalogue) -> str:
    """Real losses by reason, a line each: plain lines read on a phone (the chart posted after the
    digest draws them)."""
    before = {figures.code: figures.deals for figures in digest.previous.reasons}
    logged = digest.current.with_reason
    lines = [
        f"• {escape(catalogue.label(figures.code))} — *{figures.deals:,}* ({percent(figures.deals / logged)},"
        f" {_change(figures.deals, before.get(figures.code, 0))} on the week before) · {amounts_text(figures.value)}"
        for figures in digest.current.reasons
        if _group(catalogue, figures.code) == ReasonGroup.LOSS
    ]
    return fit_list("*Why we lost* (real losses: deals, share of losses with a reason, value)", lines, len(lines))


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
        f"{percent(digest.current.no_decision_share)} of losses with a reason",
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
    minutes = seconds // 60
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


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
        reps = [f"{_person(digest, rep, nobody='reps not in Slack')} ({count})" for rep, count in digest.overdue]
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
        f"• {_person(digest, line.user_id, nobody='Reps not in Slack')} — {line.lost} lost · "
        f"{percent(line.logged_share)} logged · top: "
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
        + f" · {_person(digest, revisit.owner_slack_id, nobody='owner not in Slack')} · "
        f"{escape(catalogue.label(revisit.reason_code))}"
        for revisit in digest.revisits
    ]
    return fit_list(f"*Revisits in the next two weeks* ({digest.revisits_total})", lines, digest.revisits_total)


def _win_backs(digest: Digest) -> str:
    lines = [
        f"• *{escape(win_back.deal_name)}*"
        + (f" ({format_amount(win_back.amount, win_back.currency)})" if win_back.amount is not None else "")
        + f" · {_person(digest, win_back.owner_slack_id, nobody='owner not in Slack')}"
        for win_back in digest.win_backs
    ]
    return fit_list(f"*Win-backs: revisited deals reopened* ({digest.win_backs_total})", lines, digest.win_backs_total)
