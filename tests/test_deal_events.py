"""Recording deal events from two processes at once on one database: one loss per closure, and
the newest stage wins."""

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crm.event import DealEvent
from bot.services.deal_events import PromptPolicy, record_deal_events
from storage.engine import create_engine, create_session_factory
from storage.models import Deal, Loss
from tests.bot_client import rows

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DEALS = range(20)
POLICY = PromptPolicy(bulk_window=timedelta(0), bulk_max=timedelta(0), min_amount=Decimal(0))


def event(number: int, stage: str, changed_at: datetime, event_id: str) -> DealEvent:
    return DealEvent(
        source="generic",
        deal_id=f"D{number}",
        name=f"Deal {number}",
        stage=stage,
        owner_email=None,
        owner_slack_id="U0DANA001",
        changed_at=changed_at,
        event_id=event_id,
    )


async def record(session_factory: async_sessionmaker[AsyncSession], events: list[DealEvent]) -> None:
    await record_deal_events(
        session_factory=session_factory, events=events, received_at=T0 + timedelta(hours=1), policy=POLICY
    )


async def in_two_processes(database_url: str, first: list[DealEvent], second: list[DealEvent]) -> None:
    engines = [create_engine(database_url), create_engine(database_url)]
    factories = [create_session_factory(engine) for engine in engines]
    try:
        for factory in factories:
            await rows(factory, Deal)  # connected before the race starts
        await asyncio.gather(
            *(record(factories[0], [one]) for one in first), *(record(factories[1], [one]) for one in second)
        )
    finally:
        for engine in engines:
            await engine.dispose()


async def test_two_closures_of_one_deal_at_once_open_one_loss(database_url, session_factory) -> None:
    await record(session_factory, [event(n, "negotiation", T0, f"open-{n}") for n in DEALS])

    await in_two_processes(
        database_url,
        [event(n, "closed_lost", T0 + timedelta(minutes=1), f"a-{n}") for n in DEALS],
        [event(n, "closed_lost", T0 + timedelta(minutes=2), f"b-{n}") for n in DEALS],
    )

    losses = await rows(session_factory, Loss)
    assert sorted(loss.deal_id for loss in losses) == sorted(deal.id for deal in await rows(session_factory, Deal))
    assert all(loss.state == "awaiting" for loss in losses)


async def test_a_closure_racing_a_newer_reopen_leaves_the_deal_open(database_url, session_factory) -> None:
    await record(session_factory, [event(n, "negotiation", T0, f"open-{n}") for n in DEALS])

    await in_two_processes(
        database_url,
        [event(n, "closed_lost", T0 + timedelta(minutes=1), f"lost-{n}") for n in DEALS],
        [event(n, "negotiation", T0 + timedelta(minutes=2), f"reopen-{n}") for n in DEALS],
    )

    assert {deal.stage for deal in await rows(session_factory, Deal)} == {"negotiation"}
    assert [loss for loss in await rows(session_factory, Loss) if loss.state == "awaiting"] == []
