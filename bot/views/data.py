"""The plain data the views render, and the message they give back.

Services build these from database rows; a view never sees a row, so rendering cannot touch the
database, and a message's look is not tied to a table's shape. Everything here is immutable.

Amounts are only ever added up within one currency: `Amounts` maps a currency code to a total
("" for deals the CRM sent without a currency).
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from slack_sdk.models.blocks import Block

from bot.periods import Period, Week

Amounts = dict[str, Decimal]


@dataclass(frozen=True)
class MessageContent:
    """What a Slack message says: its blocks, and the text notifications and screen readers show."""

    text: str
    blocks: list[Block]

    def as_kwargs(self) -> dict[str, Any]:
        """`text` and `blocks` for chat.postMessage / chat.update; `to_dict` checks Block Kit limits."""
        return {"text": self.text, "blocks": [block.to_dict() for block in self.blocks]}


@dataclass(frozen=True)
class DealFacts:
    """A deal as the CRM last reported it."""

    source: str
    name: str
    account: str | None
    amount: Decimal | None
    currency: str | None
    owner_slack_id: str | None
    owner_email: str | None
    stage: str
    url: str | None
    crm_reason: str | None = None
    """The loss reason the CRM itself holds, if it sent one."""


@dataclass(frozen=True)
class LoggedReason:
    """A loss's current reason entry."""

    reason_code: str
    detail: str | None
    explanation: str
    logged_by: str
    logged_at: datetime
    revisit_on: date | None
    recoded: bool = False
    """A manager re-coded it: `logged_by` is the manager."""


@dataclass(frozen=True)
class RecodeNotice:
    """What the rep is told in their prompt's thread when a manager re-codes their reason."""

    deal_name: str
    manager: str
    """The manager's Slack id."""
    before: LoggedReason
    after: LoggedReason


@dataclass(frozen=True)
class DealLoss:
    """One loss as a message shows it."""

    loss_id: int
    lost_at: datetime
    deal: DealFacts
    entry: LoggedReason | None
    """The current reason: a loss has one once it is logged."""
    needs_reason: bool
    """The loss awaits its reason: it is not logged, reopened, or excluded from asking."""
    cancelled: bool = False
    """The deal was reopened before a reason was logged."""
    moved: bool = False
    """The deal changed owner after this message listed it."""

    @property
    def awaiting(self) -> bool:
        return self.needs_reason and not self.moved


class NudgeStanding(StrEnum):
    """Where a revisit nudge stands, as its DM shows it."""

    WAITING = "waiting"
    """Due: the rep has not answered yet."""
    SNOOZED = "snoozed"
    DROPPED = "dropped"
    REOPENED = "reopened"
    REMOVED = "removed"
    """The revisit date was taken off the reason."""


@dataclass(frozen=True)
class NudgeState:
    revisit_id: int
    standing: NudgeStanding
    due_on: date
    reopened_in_crm: bool
    """Closed as a win-back because the CRM reported the deal open or won again."""


@dataclass(frozen=True)
class AwaitingDeal:
    """A rep's loss awaiting a reason, in a list."""

    loss_id: int
    deal_name: str
    account: str | None
    amount: Decimal | None
    currency: str | None
    lost_at: datetime


@dataclass(frozen=True)
class UpcomingRevisit:
    loss_id: int
    revisit_on: date
    deal_name: str
    amount: Decimal | None
    currency: str | None
    owner_slack_id: str | None
    reason_code: str


@dataclass(frozen=True)
class WonBackDeal:
    """A revisited deal that came back."""

    deal_name: str
    amount: Decimal | None
    currency: str | None
    owner_slack_id: str | None
    closed_at: datetime


@dataclass(frozen=True)
class Quote:
    """A large loss's explanation, quoted in the digest."""

    deal_name: str
    amount: Decimal
    currency: str | None
    logged_by: str
    reason_code: str
    explanation: str
    recoded_from: str | None = None
    """The deal's owner when a manager (`logged_by`) re-coded the reason: the quote is still the rep's story."""


@dataclass(frozen=True)
class ReasonFigures:
    code: str
    deals: int
    value: Amounts


@dataclass(frozen=True)
class Quality:
    """How far the reasons of a period can be trusted (README.md, "Re-coding a reason")."""

    confirmed: int = 0
    """Losses whose rep kept their pick over the reason the modal suggested."""
    recoded: int = 0
    """Losses whose reason a manager re-coded."""


@dataclass(frozen=True)
class ClosedStats:
    """Figures about the deals closed in a period."""

    lost: int = 0
    lost_value: Amounts = field(default_factory=dict)
    logged: int = 0
    """Losses with a reason a rep logged."""
    excluded: int = 0
    """Losses counted, but for which no reason is asked (PROMPT_MIN_AMOUNT, an excluded deal,
    imported history)."""
    reasons: list[ReasonFigures] = field(default_factory=list)
    """Most deals first, then by code; imported reasons included."""
    no_decision: int = 0
    """Losses whose reason is in the no-decision group: not real losses."""
    won: int = 0
    won_value: Amounts = field(default_factory=dict)
    imported: list[tuple[str, int]] = field(default_factory=list)
    """Losses whose reason came with imported history (`closedlost import`), by where it came from
    ("HubSpot", "a CSV file"), most first: in the reasons, never in the share logged."""
    quality: Quality = field(default_factory=Quality)

    @property
    def needing_reason(self) -> int:
        return self.lost - self.excluded

    @property
    def logged_share(self) -> float | None:
        """Of the losses a reason is asked for."""
        return self.logged / self.needing_reason if self.needing_reason else None

    @property
    def with_reason(self) -> int:
        """Losses with a reason, logged or imported: what the reasons' shares are of."""
        return self.logged + sum(count for _, count in self.imported)

    @property
    def no_decision_share(self) -> float | None:
        """Of the losses with a reason: those without one cannot be told apart yet."""
        return self.no_decision / self.with_reason if self.with_reason else None

    @property
    def win_rate(self) -> float | None:
        closed = self.won + self.lost
        return self.won / closed if closed else None

    @property
    def win_rate_by_value(self) -> dict[str, float]:
        """Per currency: won value over won and lost value, where any value closed."""
        rates = {}
        for currency in sorted(self.won_value.keys() | self.lost_value.keys()):
            won = self.won_value.get(currency, Decimal(0))
            closed = won + self.lost_value.get(currency, Decimal(0))
            if closed:
                rates[currency] = float(won / closed)
        return rates


class Fix(StrEnum):
    """What the admin does about a message Slack refused."""

    OWNER_EMAIL = "owner_email"
    """No Slack user has the deal owner's email."""
    DEAL_OWNER = "deal_owner"
    """The CRM named no owner for the deal."""
    INVITE_BOT = "invite_bot"
    """The bot is not in the channel."""
    CHANNEL = "channel"
    """Slack knows no such channel: the setting that names it is wrong."""
    ARCHIVED = "archived"
    REP_INACTIVE = "rep_inactive"
    """The rep's Slack account is deactivated."""
    OWNER_IS_BOT = "owner_is_bot"
    MESSAGE_GONE = "message_gone"
    """The message was deleted in Slack: there is nothing left to update."""
    REPORT = "report"
    """Slack refused what the bot sent: a bug to report, with the log."""
    SLACK_FAILING = "slack_failing"
    """Slack kept failing until the bot gave up: retry once it works again."""


@dataclass(frozen=True)
class RefusedMessage:
    """A message Slack refused for good (or kept failing), as the admin view lists it."""

    outbox_id: int
    kind: str
    """prompt, reminder, escalation, revisit, debrief, route or digest."""
    update: bool
    """The refused call was an update of a posted message, not its post."""
    channel: str | None
    """The channel it goes to; None for a DM to the rep."""
    rep_slack_id: str | None
    rep_email: str | None
    deals: list[str]
    """The names of the deals it lists."""
    error: str
    fix: Fix


@dataclass(frozen=True)
class FailedJob:
    """A CRM job that failed for good, as the admin view lists it."""

    job_id: int
    write_back: bool
    """A reason to write to the CRM; else a deal to fetch from it."""
    source: str
    deal_name: str | None
    event_key: str | None
    error: str


@dataclass(frozen=True)
class CrmActivity:
    source: str
    last_event_at: datetime | None
    """When its last deal event was received (a webhook's, or a fetch's that a webhook asked for)."""
    last_sweep_at: datetime | None


@dataclass(frozen=True)
class Backlog:
    outbox_pending: int
    oldest_pending_age: timedelta | None
    """How long the oldest pending Slack call has waited; None when none waits."""
    crm_jobs_pending: int
    crm_jobs_failed: int


@dataclass(frozen=True)
class AdminPanel:
    """What ADMIN_USERS see to keep the bot healthy; the lists are the newest few, the totals count all."""

    refused: list[RefusedMessage]
    refused_total: int
    failed_jobs: list[FailedJob]
    failed_jobs_total: int
    crms: list[CrmActivity]
    backlog: Backlog


@dataclass(frozen=True)
class Home:
    """What a rep's Home tab shows; the lists are the first few, the totals count them all."""

    awaiting: list[AwaitingDeal]
    awaiting_total: int
    revisits: list[UpcomingRevisit]
    revisits_total: int
    period: Period
    stats: ClosedStats
    admin: AdminPanel | None = None
    """Shown at the bottom, to ADMIN_USERS only."""


@dataclass(frozen=True)
class RepLine:
    user_id: str | None
    lost: int
    logged: int
    """Of the losses a reason was asked for, those the rep logged one for."""
    top_reason: str | None
    """The reason the rep's losses have most that week, imported ones included (ties: the first
    code alphabetically)."""
    not_asked: int = 0
    """Losses no reason is asked for (PROMPT_MIN_AMOUNT, imported history)."""
    quality: Quality = field(default_factory=Quality)

    @property
    def logged_share(self) -> float | None:
        asked = self.lost - self.not_asked
        return self.logged / asked if asked else None


@dataclass(frozen=True)
class Digest:
    """The weekly digest's content (`bot.services.digest` computes it)."""

    week: Week
    current: ClosedStats
    previous: ClosedStats
    """The week before, to compare with."""
    competitors: list[tuple[str, int]]
    product_gaps: list[tuple[str, int]]
    median_time_to_reason: timedelta | None
    overdue: list[tuple[str | None, int]]
    """Reps with overdue losses (past their escalation, or never asked: the prompt could not be
    delivered), as of when the digest is built."""
    reps: list[RepLine]
    """Most losses first."""
    revisits: list[UpcomingRevisit]
    revisits_total: int
    win_backs: list[WonBackDeal]
    """Revisited deals that came back during the week."""
    win_backs_total: int
    quotes: list[Quote]
    """The largest losses in the team's main currency (CURRENCY), largest first."""
    webhook_misses: list[tuple[str, int]] = field(default_factory=list)
    """Per CRM (by name) whose webhook is configured, the stage changes that reached the bot only
    through the sweep during the week."""
    bulk_answers: int = 0
    """Losses of the week answered with a bulk clean-up's one click (README.md, "Bulk clean-ups"),
    counted apart from the reasons reps gave one by one."""
    quotes_elsewhere: list[Quote] = field(default_factory=list)
    """The largest loss in each other currency (or none), listed apart from `quotes`."""
    names: dict[str, str] = field(default_factory=dict)
    """Display names by Slack id of the people the digest lists: it names them, never pings them."""

    def people(self) -> set[str]:
        """The Slack ids of everyone the digest lists."""
        ids: set[str | None] = {rep for rep, _ in self.overdue} | {line.user_id for line in self.reps}
        ids |= {revisit.owner_slack_id for revisit in self.revisits}
        ids |= {win_back.owner_slack_id for win_back in self.win_backs}
        ids |= {quote.recoded_from or quote.logged_by for quote in [*self.quotes, *self.quotes_elsewhere]}
        return {user_id for user_id in ids if user_id}

    @property
    def empty(self) -> bool:
        return not self.current.lost


@dataclass(frozen=True)
class WeekCounts:
    """One week of the digest's chart: deals, never amounts, so that no currency is mixed."""

    monday: date
    lost_by_reason: dict[str, int]
    """Losses by their current reason code."""
    without_reason: int
    """Losses still awaiting a reason, or for which none is asked."""
    won: int

    @property
    def lost(self) -> int:
        return sum(self.lost_by_reason.values()) + self.without_reason

    @property
    def win_rate(self) -> float | None:
        """Won over won and lost, by count; None for a week in which no deal closed."""
        closed = self.won + self.lost
        return self.won / closed if closed else None


@dataclass(frozen=True)
class LossTrend:
    """What the digest's chart shows: the weeks up to the digest's, oldest first."""

    weeks: list[WeekCounts]
    last_so_far: bool
    """The last week is not over (a dry run of the current week)."""

    @property
    def empty(self) -> bool:
        """No deal closed in any of the weeks: there is nothing to draw."""
        return not any(week.lost or week.won for week in self.weeks)
