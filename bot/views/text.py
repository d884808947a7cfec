"""Formatting of text that goes into mrkdwn."""

import re
from decimal import Decimal


def escape(text: str) -> str:
    """Escape text a person or a CRM wrote before it goes into mrkdwn, so `<!channel>` or
    `<@U123>` in it is shown, never acted on. https://docs.slack.dev/messaging/formatting-message-text#escaping
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def format_amount(amount: Decimal | None, currency: str | None) -> str:
    if amount is None:
        return "no amount"
    number = f"{amount:,.0f}" if amount == amount.to_integral_value() else f"{amount:,.2f}"
    return f"{number} {currency}" if currency else number


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
