"""A database outage told once: one warning when a part of the bot first finds the database
unreachable, and one when that part works again, rather than a line with a traceback for every
statement that failed meanwhile (README.md, "Logs")."""

import logging
import time

from storage.faults import database_unreachable, describe


class DatabaseOutage:
    def __init__(self, logger: logging.Logger, *, what: str, meanwhile: str) -> None:
        """`what` fails while the database is unreachable ("storing deal events"); `meanwhile` says
        what happens until it is back ("webhooks are answered 503")."""
        self._logger = logger
        self._what = what
        self._meanwhile = meanwhile
        self._since: float | None = None
        self._failures = 0

    def failed(self, error: BaseException) -> bool:
        """Whether `error` is the database being unreachable: the first of an outage is warned of,
        the others counted. Anything else is a fault the caller reports, with its traceback."""
        if not database_unreachable(error):
            return False
        self._failures += 1
        if self._since is None:
            self._since = time.monotonic()
            self._logger.warning(
                "%s failed: the database is unreachable (%s); %s until it is back",
                self._what,
                describe(error),
                self._meanwhile,
            )
        return True

    def succeeded(self) -> None:
        if self._since is not None:
            self._logger.warning(
                "%s works again: the database is back (it was not for %.0f s; %d tries failed meanwhile)",
                self._what,
                time.monotonic() - self._since,
                self._failures,
            )
        self._since = None
        self._failures = 0
