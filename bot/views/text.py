"""Formatting of text that goes into mrkdwn."""

import re
from datetime import date, datetime
from decimal import Decimal


def escape(text: str) -> str:
    """Escape text a person or a CRM wrote before it goes into mrkdwn, so `<!channel>` or
    `<@U123>` in it is shown, never acted on. https://docs.slack.dev/messaging/formatting-message-text#escaping
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Where a value is missing, a list shows this in its place: never a sentence such as "no amount".
MISSING = "—"


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`1 deal`, `3 deals`, `1,200 deals`; `plural_form` for an irregular word (`plural(2, "loss", "losses")`)."""
    word = singular if count == 1 else plural_form or f"{singular}s"
    return f"{count:,} {word}"


def format_amount(amount: Decimal | None, currency: str | None) -> str:
    """`48,000 USD`. An amount always shows its currency: one the CRM sent without says so, since
    it cannot be told apart from any other. No amount at all is `—`, never a sentence."""
    if amount is None:
        return MISSING
    number = f"{amount:,.0f}" if amount == amount.to_integral_value() else f"{amount:,.2f}"
    return f"{number} {currency or '(no currency)'}"


def day(when: date | datetime) -> str:
    """A day, in the one style every message uses: `Nov 9, 2026`, as Slack writes its own short dates.

    A moment (a datetime) is shown by Slack in the reader's own time zone, so that a loss at 23:30 in
    New York is not "tomorrow" to its rep; the text after `|` is what clients that cannot render it
    show. A calendar day (a date: a revisit date, a week's Monday) is the same day for everyone.
    https://docs.slack.dev/messaging/formatting-message-text#date-formatting"""
    if isinstance(when, datetime):
        return f"<!date^{int(when.timestamp())}^{{date_short}}|{_plain_day(when)}>"
    return _plain_day(when)


def span(first: date, last: date) -> str:
    """A span of days, both ends included: `Aug 24 – Nov 15, 2026`, or `Dec 28, 2026 – Jan 3, 2027`."""
    start = f"{first:%b %-d}" if first.year == last.year else _plain_day(first)
    return f"{start} – {_plain_day(last)}"


def _plain_day(when: date) -> str:
    return f"{when:%b %-d, %Y}"


def truncate(text: str, limit: int) -> str:
    """Shortens plain text to `limit` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fit(mrkdwn: str, limit: int) -> str:
    """Shortens escaped mrkdwn to `limit` characters without cutting an `&amp;`-style entity in two.
    Escaping can make text up to five times longer, so limits are applied after it."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    return re.sub(r"&[a-z]{0,3}$", "", mrkdwn[: limit - 1]) + "…"


def blockquote(mrkdwn: str) -> str:
    """Each line of `mrkdwn` (already escaped) as a mrkdwn quote."""
    return "\n".join(f">{line}" for line in mrkdwn.splitlines())
