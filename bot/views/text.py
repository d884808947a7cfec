"""Formatting of text that goes into mrkdwn."""

from decimal import Decimal


def escape(text: str) -> str:
    """Escape text a person or a CRM wrote before it goes into mrkdwn, so `<!channel>` or
    `<@U123>` in it is shown, never acted on. https://docs.slack.dev/messaging/formatting-message-text#escaping
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    """A mrkdwn link whose label is escaped; a `|` or `>` in the URL would end the link early."""
    safe_url = escape(url).replace("|", "%7C")
    return f"<{safe_url}|{escape(label)}>"


def format_amount(amount: Decimal | None, currency: str | None) -> str:
    if amount is None:
        return "no amount"
    number = f"{amount:,.0f}" if amount == amount.to_integral_value() else f"{amount:,.2f}"
    return f"{number} {currency}" if currency else number


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
