"""How the bot's log reads: a line of text by default, or one JSON object a line (LOG_FORMAT=json)
for a log system to index.

A log call about a deal, a loss or a Slack user passes their ids with `extra=log_ids(...)`; the JSON
line carries them as fields, so a log system can find every line about one deal.
"""

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ID_FIELDS = ("deal_id", "deal_ids", "loss_id", "loss_ids", "slack_user_id")


def log_ids(
    *, deals: Iterable[tuple[str, str]] = (), losses: Iterable[int] = (), user: str | None = None
) -> dict[str, Any]:
    """`extra=` for a log call about these deals ((source, CRM id) pairs), losses and Slack user:
    `deal_id` and `loss_id` for one, `deal_ids` and `loss_ids` (lists) for several, so that each
    field keeps one type. A deal's id is `source:crm id`, as the text lines write it."""
    fields: dict[str, Any] = {}
    deal_keys = [f"{source}:{external_id}" for source, external_id in deals]
    loss_ids = list(losses)
    if len(deal_keys) == 1:
        fields["deal_id"] = deal_keys[0]
    elif deal_keys:
        fields["deal_ids"] = deal_keys
    if len(loss_ids) == 1:
        fields["loss_id"] = loss_ids[0]
    elif loss_ids:
        fields["loss_ids"] = loss_ids
    if user is not None:
        fields["slack_user_id"] = user
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, the ids of `log_ids()`
    when the call passed them, and the exception's traceback when there is one. Newlines in a
    message or a traceback are escaped, so a record is always exactly one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ID_FIELDS:
            if field in record.__dict__:
                entry[field] = record.__dict__[field]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str) -> None:
    """Sends every log record, Python's warnings included, to stderr in `log_format` ("text" or
    "json"). With JSON, an exception nothing caught is logged as a record too, so that even a crash
    leaves only JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        sys.excepthook = _log_uncaught
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    logging.captureWarnings(True)
    # matplotlib (the digest's chart) tells at INFO how it built its font cache: nothing to act on.
    logging.getLogger("matplotlib").setLevel(max(logging.WARNING, logging.getLogger().level))


def _log_uncaught(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
    logging.getLogger("closedlost").critical("uncaught %s", kind.__name__, exc_info=(kind, error, traceback))
