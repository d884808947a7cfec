"""The monthly summary behind `/closedlost stats` (`closed_summary`): whatever sequence of deal
events, reasons, revisions, bulk answers and plain SQL changes is applied, and whenever the
summary is refreshed, the stats read through it equal the stats read from the deals themselves,
for periods that start and end anywhere in a month. On SQLite and PostgreSQL."""

import asyncio
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import func, insert, select, text, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.event import CLOSED_LOST, CLOSED_WON, DealEvent
from bot.periods import Period
from bot.reasons import DEFAULT_REASONS, Catalogue
from bot.services.deal_events import PromptPolicy, record_deal_events
from bot.services.debriefs import Audience
from bot.services.losses import record_reason, record_reason_for_several
from bot.services.stats import read_closed_stats, summarise
from bot.services.summary import refresh_closed_summary
from bot.validation import ReasonForm
from bot.views.data import ClosedStats
from storage import summary_queries
from storage.engine import create_engine, create_session_factory
from storage.migrate import MIGRATIONS, upgrade_to_head
from storage.models import ClosedSummary, ClosedSummaryChange, Deal, Loss, LossState, ReasonEntry
from storage.stats_queries import ClosedGroup, raw_closed_groups

CATALOGUE = Catalogue(DEFAULT_REASONS)
# Deals under 1,000 are recorded as excluded losses: counted, never asked about.
POLICY = PromptPolicy(bulk_window=timedelta(0), bulk_max=timedelta(0), min_amount=Decimal(1000))
START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 7, 1, tzinfo=UTC)
REPS = ("U0DANA001", "U0EVAN002", "U0FRAN003")
CODES = ("price", "competitor", "timing", "no_decision", "missing_feature", "stale", "other")
EXPLANATION = "The buyer froze spending until the reorganisation is done next year."


def moment(rng: random.Random) -> datetime:
    """Anywhere in the half year, month edges (and the first instant of a month) more often."""
    if rng.random() < 0.2:
        month = rng.randrange(1, 7)
        return datetime(2026, month, 1, tzinfo=UTC) + rng.choice([timedelta(0), timedelta(microseconds=-1)])
    return START + (END - START) * rng.random()


async def stats_both_ways(
    session_factory: async_sessionmaker[AsyncSession], since: datetime | None, until: datetime
) -> tuple[ClosedStats, ClosedStats]:
    async with session_factory() as session, session.begin():
        through_summary = await read_closed_stats(
            session, period=Period("p", since, until), owner_slack_id=None, catalogue=CATALOGUE
        )
        rows = await session.execute(union_all(*raw_closed_groups(since, until, None, CLOSED_WON)))
        from_deals = summarise([ClosedGroup._make(row) for row in rows], CATALOGUE)
    return through_summary, from_deals


async def check(session_factory: async_sessionmaker[AsyncSession], rng: random.Random) -> None:
    periods: list[tuple[datetime | None, datetime]] = [
        (None, END + timedelta(days=3)),
        (datetime(2026, 1, 1, tzinfo=UTC), END + timedelta(hours=5)),
        (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)),
    ]
    for _ in range(3):
        since, until = sorted((moment(rng), moment(rng)))
        periods.append((since, until))
    for since, until in periods:
        through_summary, from_deals = await stats_both_ways(session_factory, since, until)
        assert through_summary == from_deals, (since, until)


class Operations:
    """Random changes made through the services that make them in the bot."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], rng: random.Random) -> None:
        self.session_factory = session_factory
        self.rng = rng
        self.deals = 0

    async def deal_event(self) -> None:
        rng = self.rng
        known = rng.random() < 0.5 and self.deals > 0
        deal_id = rng.randrange(1, self.deals + 1) if known else self._new_deal()
        changed_at = moment(rng)
        await record_deal_events(
            session_factory=self.session_factory,
            events=[
                DealEvent(
                    source="hubspot",
                    deal_id=str(deal_id),
                    name=f"Deal {deal_id}",
                    stage=rng.choice([CLOSED_LOST, CLOSED_LOST, CLOSED_WON, "negotiation"]),
                    owner_email=None,
                    owner_slack_id=rng.choice(REPS),
                    changed_at=changed_at,
                    amount=rng.choice([None, Decimal(rng.randrange(100, 90_000)) / 4]),
                    currency=rng.choice([None, "USD", "USD", "EUR"]),
                )
            ],
            received_at=changed_at + timedelta(minutes=1),
            policy=POLICY,
        )

    def _new_deal(self) -> int:
        self.deals += 1
        return self.deals

    async def log_or_revise(self) -> None:
        async with self.session_factory() as session:
            losses = (
                await session.execute(
                    select(Loss.id, func.max(ReasonEntry.revision), Deal.owner_slack_id)
                    .join(Deal, Deal.id == Loss.deal_id)
                    .outerjoin(ReasonEntry, ReasonEntry.loss_id == Loss.id)
                    .where(Loss.state.in_([LossState.AWAITING, LossState.LOGGED]))
                    .group_by(Loss.id, Deal.owner_slack_id)
                )
            ).all()
        if not losses:
            return
        loss_id, revision, owner = self.rng.choice(losses)
        await record_reason(
            session_factory=self.session_factory,
            loss_id=loss_id,
            revision=revision or 0,
            form=self._form(),
            catalogue=CATALOGUE,
            user_id=owner,
            view_id=None,
            now=END,
            write_back_to=set(),
            audience=Audience(),
            competitor_merges={},
        )

    async def bulk_answer(self) -> None:
        rep = self.rng.choice(REPS)
        async with self.session_factory() as session:
            awaiting = list(
                await session.scalars(
                    text(
                        "SELECT loss.id FROM loss JOIN deal ON deal.id = loss.deal_id "
                        "WHERE loss.state = 'awaiting' AND deal.owner_slack_id = :rep"
                    ),
                    {"rep": rep},
                )
            )
        await record_reason_for_several(
            session_factory=self.session_factory,
            loss_ids=awaiting,
            form=ReasonForm(reason_code="stale", detail=None, explanation="", revisit_on=None),
            catalogue=CATALOGUE,
            user_id=rep,
            view_id=None,
            now=END,
            write_back_to=set(),
            audience=Audience(),
            competitor_merges={},
            bulk=True,
        )

    async def recode_in_sql(self) -> None:
        """A change no service makes (a manager's re-coding, an admin's fix in SQL): the summary
        follows it too, since the database marks the month itself."""
        code = self.rng.choice(CODES)
        async with self.session_factory() as session, session.begin():
            entry_id = await session.scalar(select(ReasonEntry.id).order_by(func.random()).limit(1))
            if entry_id is not None:
                await session.execute(update(ReasonEntry).where(ReasonEntry.id == entry_id).values(reason_code=code))

    async def refresh(self) -> None:
        await refresh_closed_summary(session_factory=self.session_factory)

    def _form(self) -> ReasonForm:
        code = self.rng.choice(CODES[:5])
        detail = {"competitor": "Initech", "missing_feature": "SSO"}.get(code)
        return ReasonForm(reason_code=code, detail=detail, explanation=EXPLANATION, revisit_on=None)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_stats_through_the_summary_equal_the_stats_from_the_deals_after_any_sequence_of_changes(
    session_factory: async_sessionmaker[AsyncSession], seed: int
) -> None:
    rng = random.Random(seed)
    operations = Operations(session_factory, rng)
    steps = [operations.deal_event] * 6 + [
        operations.log_or_revise,
        operations.log_or_revise,
        operations.bulk_answer,
        operations.recode_in_sql,
        operations.refresh,
    ]
    for step in range(120):
        await rng.choice(steps)()
        if step % 10 == 9:
            await check(session_factory, rng)
    await operations.refresh()
    async with session_factory() as session:
        assert await summary_queries.changed_months(session) == []
        summarised = await session.scalar(select(func.sum(ClosedSummary.deals)))
    assert summarised, "the summary holds the deals: the checks below read it"
    await check(session_factory, rng)


async def test_a_change_marks_its_month_until_the_summary_is_refreshed(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    operations = Operations(session_factory, random.Random(7))
    for _ in range(20):
        await operations.deal_event()
    await operations.refresh()
    async with session_factory() as session, session.begin():
        assert await summary_queries.changed_months(session) == []
        loss = await session.scalar(select(Loss).where(Loss.state != LossState.CANCELLED).limit(1))
        assert loss is not None
        loss.state = LossState.EXCLUDED
    month = loss.lost_at.date().replace(day=1)
    async with session_factory() as session:
        assert await summary_queries.changed_months(session) == [month]
    await check(session_factory, random.Random(8))
    assert await refresh_closed_summary(session_factory=session_factory) == 1
    await check(session_factory, random.Random(9))


def _downgrade(database_url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url)
    command.downgrade(config, revision)


async def test_the_migration_marks_every_month_of_the_deals_stored_before_it(
    database_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    operations = Operations(session_factory, random.Random(11))
    for _ in range(30):
        await operations.deal_event()
    await asyncio.to_thread(_downgrade, database_url, "0013_detail_keys")
    await asyncio.to_thread(upgrade_to_head, database_url)
    async with session_factory() as session:
        months = await summary_queries.changed_months(session)
        moments = [*await session.scalars(select(Loss.lost_at)), *await session.scalars(select(Deal.stage_changed_at))]
    assert months
    assert months == sorted({at.date().replace(day=1) for at in moments})
    await check(session_factory, random.Random(12))
    assert await refresh_closed_summary(session_factory=session_factory) == len(months)
    await check(session_factory, random.Random(13))


async def test_refreshes_beside_writers_leave_the_summary_equal_to_the_deals(database_url: str) -> None:
    """Two processes refreshing (engines of their own) while a third writes: no refresh drops a mark
    it did not account for, and no two leave the same month counted twice."""
    engines = [create_engine(database_url) for _ in range(3)]
    writer, *refreshers = [create_session_factory(engine) for engine in engines]
    try:
        operations = Operations(writer, random.Random(21))
        done = asyncio.Event()

        async def write() -> None:
            for _ in range(60):
                await operations.deal_event()
                if operations.rng.random() < 0.3:
                    await operations.log_or_revise()
            done.set()

        async def refresh(session_factory: async_sessionmaker[AsyncSession]) -> None:
            while not done.is_set():
                await refresh_closed_summary(session_factory=session_factory)
                await asyncio.sleep(0)

        await asyncio.gather(write(), *(refresh(each) for each in refreshers))
        await check(writer, random.Random(22))
        await refresh_closed_summary(session_factory=writer)
        await check(writer, random.Random(23))
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_month_marked_by_more_transactions_than_a_statement_takes_parameters_is_refreshed(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """On PostgreSQL every transaction that writes a month marks it apart: a busy month between two
    ticks can hold more marks than one statement can name."""
    operations = Operations(session_factory, random.Random(31))
    for _ in range(10):
        await operations.deal_event()
    async with session_factory() as session, session.begin():
        month = (await summary_queries.changed_months(session))[0]
        # Below every real transaction id (and SQLite's 0): 40,000 transactions of its own.
        marks = [{"month": month, "tx": tx} for tx in range(-40_000, 0)]
        await session.execute(insert(ClosedSummaryChange), marks)
    await refresh_closed_summary(session_factory=session_factory)
    async with session_factory() as session:
        assert await summary_queries.changed_months(session) == []
    await check(session_factory, random.Random(32))
