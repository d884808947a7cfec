"""Telling an unreachable database from a bug: the one is an outage to wait out, the other a fault to report."""

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


def database_unreachable(error: BaseException) -> bool:
    """Whether `error` says the database could not be reached or stopped answering (refused or
    dropped connections, a timeout, a SQLite file locked or read-only): the same statement succeeds
    once it is back."""
    if isinstance(error, OSError | TimeoutError | OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def waited_on_a_lock(error: BaseException) -> bool:
    """Whether `error` is SQLite giving up on a lock another connection held (its busy timeout ran
    out): the database is busy, not broken."""
    return isinstance(error, OperationalError) and "database is locked" in str(error.orig)


def describe(error: BaseException) -> str:
    """The exception's type and message, for a log line: its type alone when the message is empty
    (asyncpg's timeouts have none), so a reason is never blank."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        return describe(error.orig)  # without SQLAlchemy's statement and link
    lines = str(error).strip().splitlines()
    message = lines[0] if lines else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
