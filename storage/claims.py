"""Claims on the rows that processes work through: outbox calls and CRM jobs.

A process claims a row for itself (`claimed_by`) until a moment (`claimed_until`); once that moment
has passed, another process may claim the row and do the work again. So a process records the
outcome of its work only while it still holds the claim: the functions that do raise `ClaimLost`
otherwise, and change nothing.
"""


class ClaimLost(Exception):
    """The row is no longer held by the process that claimed it: its claim ran out and another
    process took the row over (or finished it). That process's outcome is the one recorded."""
