"""The `/closedlost` command's text, read into what was asked (README.md, "`/closedlost` and the
Home tab"). Pure: no I/O.

With `should_escape: true` in the manifest, Slack sends a picked user as `<@U123|name>` (or
`<@U123>`), never as the bare `@name` that was typed: https://docs.slack.dev/interactivity/implementing-slash-commands
"""

import re
from dataclasses import dataclass

from bot.periods import PeriodName

USAGE = (
    "*/closedlost stats* `[7d|30d|90d|quarter|year|all]` `[@user]` — lost deals and their value, reasons, "
    "no-decision share, logged %, win rate (default: the last 30 days, everyone)\n"
    "*/closedlost pending* — your deals still waiting for a reason, with their *Log reason* buttons\n"
    "*/closedlost revisit* — your upcoming revisits\n"
    "*/closedlost reasons* — the reasons reps pick from, with their codes\n"
    "*/closedlost export* `[7d|30d|90d|quarter|year|all]` — a spreadsheet (CSV) of the losses, one row "
    "each, sent to your DM with the bot (default: the last 30 days)\n"
    "*/closedlost admin* — for the bot's admins: what Slack refused, failed CRM jobs, each CRM's last event, "
    "the backlog\n"
    "*/closedlost help* — this list"
)
PERIODS = {name.value: name for name in PeriodName}
MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


@dataclass(frozen=True)
class Stats:
    period: PeriodName
    user_id: str | None
    """The rep the figures are narrowed to; None for everyone."""


@dataclass(frozen=True)
class Pending:
    pass


@dataclass(frozen=True)
class Revisits:
    pass


@dataclass(frozen=True)
class Reasons:
    pass


@dataclass(frozen=True)
class Export:
    period: PeriodName


@dataclass(frozen=True)
class Admin:
    pass


@dataclass(frozen=True)
class Usage:
    problem: str | None = None
    """What was wrong with the command, shown above the usage; None when help was asked for. It
    quotes what the user typed: escape it before it goes into mrkdwn."""


Command = Stats | Pending | Revisits | Reasons | Export | Admin | Usage
WITHOUT_ARGUMENTS: dict[str, Command] = {
    "pending": Pending(),
    "revisit": Revisits(),
    "reasons": Reasons(),
    "admin": Admin(),
}


def parse_command(text: str) -> Command:
    words = text.split()
    if not words or words[0].lower() == "help":
        return Usage()
    name, arguments = words[0].lower(), words[1:]
    if name == "stats":
        return _parse_stats(arguments)
    if name == "export":
        return _parse_export(arguments)
    if name in WITHOUT_ARGUMENTS:
        if arguments:
            return Usage(f"`{name}` takes nothing after it (got `{' '.join(arguments)}`).")
        return WITHOUT_ARGUMENTS[name]
    return Usage(f"There is no `{words[0]}` command.")


def _parse_stats(arguments: list[str]) -> Command:
    period: PeriodName | None = None
    user_id: str | None = None
    for argument in arguments:
        mention = MENTION.fullmatch(argument)
        named = PERIODS.get(argument.lower())
        if mention is not None and user_id is None:
            user_id = mention.group(1)
        elif named is not None and period is None:
            period = named
        elif mention is not None or named is not None:
            return Usage(f"`stats` takes one period and one person at most (got `{' '.join(arguments)}`).")
        elif argument.startswith("@"):
            return Usage(f"`{argument}` is not someone Slack knows: pick the person from the list as you type `@`.")
        else:
            return _not_a_period(argument)
    return Stats(period or PeriodName.DAYS_30, user_id)


def _parse_export(arguments: list[str]) -> Command:
    if len(arguments) > 1:
        return Usage(f"`export` takes one period at most (got `{' '.join(arguments)}`).")
    if not arguments:
        return Export(PeriodName.DAYS_30)
    named = PERIODS.get(arguments[0].lower())
    return Export(named) if named is not None else _not_a_period(arguments[0])


def _not_a_period(argument: str) -> Usage:
    periods = ", ".join(f"`{name}`" for name in PeriodName)
    return Usage(f"`{argument}` is not a period: use one of {periods}.")
