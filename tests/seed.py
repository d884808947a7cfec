"""Deals, losses and reasons written straight to the database, for the tests of what reads them
(`/closedlost`, App Home, the digest): known rows in, exact figures out."""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import count

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.competitors import competitor_key
from bot.services.revisits import first_moment
from storage.models import Deal, Loss, LossState, ReasonEntry, Revisit, RevisitState

EXPLANATION = "The buyer chose to spend the budget elsewhere this year."


@dataclass
class Seed:
    """Collects rows, then `save`s them in one transaction."""

    deals: list[Deal] = field(default_factory=list)
    losses: list[tuple[Loss, Deal]] = field(default_factory=list)
    entries: list[tuple[ReasonEntry, Loss]] = field(default_factory=list)
    _numbers: count = field(default_factory=lambda: count(1))

    def deal(
        self,
        *,
        owner: str,
        stage: str,
        changed_at: datetime,
        amount: str | None,
        currency: str | None = "USD",
        name: str | None = None,
    ) -> Deal:
        number = next(self._numbers)
        deal = Deal(
            source="generic",
            external_id=f"seed-{number}",
            name=name or f"Deal {number}",
            account=f"Account {number}",
            amount=Decimal(amount) if amount is not None else None,
            currency=currency,
            owner_email=None,
            owner_slack_id=owner,
            stage=stage,
            stage_changed_at=changed_at,
            url=None,
            created_at=changed_at,
            updated_at=changed_at,
        )
        self.deals.append(deal)
        return deal

    def loss(
        self,
        *,
        owner: str,
        lost_at: datetime,
        amount: str | None,
        currency: str | None = "USD",
        state: LossState = LossState.LOGGED,
        name: str | None = None,
    ) -> Loss:
        deal = self.deal(
            owner=owner, stage="closed_lost", changed_at=lost_at, amount=amount, currency=currency, name=name
        )
        loss = Loss(lost_at=lost_at, state=state, prompted_at=lost_at, created_at=lost_at)
        if state == LossState.CANCELLED:
            deal.stage = "negotiation"
            loss.cancelled_at = lost_at
        self.losses.append((loss, deal))
        return loss

    def reason(
        self,
        loss: Loss,
        code: str,
        *,
        logged_at: datetime,
        revision: int = 1,
        detail: str | None = None,
        explanation: str = EXPLANATION,
        revisit_on: date | None = None,
    ) -> ReasonEntry:
        if loss.logged_at is None:
            loss.logged_at = logged_at
        entry = ReasonEntry(
            revision=revision,
            reason_code=code,
            detail=detail,
            detail_key=competitor_key(detail) if detail is not None else None,
            explanation=explanation,
            revisit_on=revisit_on,
            logged_by=next(deal.owner_slack_id for lost, deal in self.losses if lost is loss) or "",
            logged_at=logged_at,
        )
        self.entries.append((entry, loss))
        return entry

    async def save(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        async with session_factory() as session, session.begin():
            session.add_all(self.deals)
            await session.flush()
            for loss, deal in self.losses:
                loss.deal_id = deal.id
            session.add_all(loss for loss, _ in self.losses)
            await session.flush()
            for entry, loss in self.entries:
                entry.loss_id = loss.id
            session.add_all(entry for entry, _ in self.entries)
            session.add_all(self._revisits())

    def _revisits(self) -> list[Revisit]:
        """A due revisit for each logged loss whose newest reason has a revisit date, as storing
        that reason makes."""
        newest: dict[int, ReasonEntry] = {}
        for entry, loss in self.entries:
            if loss.state == LossState.LOGGED and entry.revision > getattr(newest.get(loss.id), "revision", 0):
                newest[loss.id] = entry
        return [
            Revisit(
                loss_id=loss_id,
                due_on=entry.revisit_on,
                state=RevisitState.DUE,
                nudge_at=first_moment(entry.revisit_on),
                snoozes=0,
                created_at=entry.logged_at,
            )
            for loss_id, entry in newest.items()
            if entry.revisit_on is not None
        ]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


DANA = "U0DANA001"
SAM = "U0SAM0001"
NOW = datetime.now(UTC)
TODAY = NOW.date()


def days_ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


def in_days(days: int) -> date:
    return TODAY + timedelta(days=days)


async def seed_team(session_factory: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Dana's and Sam's closed deals, for the figures `/closedlost` and App Home show; returns the
    id of the one loss awaiting a reason."""
    seed = Seed()
    price = seed.loss(owner=DANA, lost_at=days_ago(10), amount="10000")
    seed.reason(price, "price", logged_at=days_ago(9), revisit_on=in_days(30))
    # Edited from price to competitor: the newest revision is the answer, dates included.
    competitor = seed.loss(owner=DANA, lost_at=days_ago(5), amount="20000")
    seed.reason(competitor, "price", logged_at=days_ago(4), revisit_on=in_days(10))
    seed.reason(competitor, "competitor", logged_at=days_ago(3), revision=2, detail="Initech", revisit_on=in_days(60))
    awaiting = seed.loss(
        owner=DANA, lost_at=days_ago(3), amount="5000", currency="EUR", state=LossState.AWAITING, name="Globex <EU>"
    )
    went_dark = seed.loss(owner=DANA, lost_at=days_ago(40), amount="7000")
    seed.reason(went_dark, "no_decision", logged_at=days_ago(39), revisit_on=TODAY - timedelta(days=1))
    seed.loss(owner=DANA, lost_at=days_ago(2), amount="99999", state=LossState.CANCELLED)
    seed.deal(owner=DANA, stage="closed_won", changed_at=days_ago(7), amount="30000")

    sams_dark = seed.loss(owner=SAM, lost_at=days_ago(20), amount="8000", currency="EUR")
    seed.reason(sams_dark, "no_decision", logged_at=days_ago(19))
    sams_price = seed.loss(owner=SAM, lost_at=days_ago(1), amount="2500.50")
    seed.reason(sams_price, "price", logged_at=days_ago(1), revisit_on=in_days(5))
    seed.deal(owner=SAM, stage="closed_won", changed_at=days_ago(50), amount="4000", currency="EUR")
    seed.deal(owner=SAM, stage="negotiation", changed_at=days_ago(1), amount="1000000")
    seed.loss(owner=SAM, lost_at=days_ago(400), amount="1000", currency=None)
    await seed.save(session_factory)
    return {"awaiting": awaiting.id}
