"""Migrations on a database that already holds data: 0005 makes revisits of the revisit dates logged
before it, 0008 marks the deal events stored before it as webhooks', 0013 gives the competitors and
features stored before it their key, 0014 leaves the reasons stored before it as the reps' own; each
can be undone."""

import asyncio
from datetime import UTC, date, datetime

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.migrate import MIGRATIONS, upgrade_to_head
from storage.models import Revisit, RevisitState

LOST_AT = datetime(2026, 10, 1, 15, tzinfo=UTC)


def _downgrade(database_url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url)
    command.downgrade(config, revision)


async def _seed_before_0005(session_factory: async_sessionmaker[AsyncSession]) -> None:
    """Three logged losses: one with a revisit date on its newest revision, one whose newest revision
    dropped the date, one without; and an awaiting loss, which has no answer to carry over."""
    rows = {"lost": LOST_AT, "now": LOST_AT}
    async with session_factory() as session, session.begin():
        for deal_id, state in ((1, "logged"), (2, "logged"), (3, "logged"), (4, "awaiting")):
            await session.execute(
                text(
                    "INSERT INTO deal (id, source, external_id, name, stage, stage_changed_at, created_at, updated_at)"
                    " VALUES (:id, 'api', :external, 'Deal', 'closed_lost', :lost, :now, :now)"
                ),
                {"id": deal_id, "external": f"d{deal_id}", **rows},
            )
            await session.execute(
                text(
                    "INSERT INTO loss (id, deal_id, lost_at, state, reminders_sent, created_at)"
                    " VALUES (:id, :id, :lost, :state, 0, :now)"
                ),
                {"id": deal_id, "state": state, **rows},
            )
        answers = [(1, 1, date(2027, 1, 4)), (2, 1, date(2027, 2, 1)), (2, 2, None), (3, 1, None)]
        for loss_id, revision, revisit_on in answers:
            await session.execute(
                text(
                    "INSERT INTO reason_entry (loss_id, revision, reason_code, explanation, revisit_on, logged_by,"
                    " logged_at) VALUES (:loss, :revision, 'timing', 'Their budget opens in January.', :revisit,"
                    " 'U0DANA001', :now)"
                ),
                {"loss": loss_id, "revision": revision, "revisit": revisit_on, **rows},
            )


async def test_revisit_dates_logged_before_0005_become_revisits(
    database_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await asyncio.to_thread(_downgrade, database_url, "0004")
    await _seed_before_0005(session_factory)

    await asyncio.to_thread(upgrade_to_head, database_url)

    async with session_factory() as session:
        revisits = (await session.scalars(select(Revisit))).all()
    assert [(r.loss_id, r.due_on, r.state, r.nudged_at) for r in revisits] == [
        (1, date(2027, 1, 4), RevisitState.DUE, None)
    ]
    # The date begins first at UTC+14: from then on the nudge job waits for the rep's own morning.
    assert revisits[0].nudge_at == datetime(2027, 1, 3, 10, tzinfo=UTC)


async def test_0005_can_be_undone_and_done_again(
    database_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await asyncio.to_thread(_downgrade, database_url, "0004")

    async with session_factory() as session:
        tables = await session.run_sync(lambda sync: inspect(sync.connection()).get_table_names())
    assert "revisit" not in tables and "digest_run" not in tables

    await asyncio.to_thread(upgrade_to_head, database_url)
    async with session_factory() as session:
        tables = await session.run_sync(lambda sync: inspect(sync.connection()).get_table_names())
    assert {"revisit", "digest_run"} <= set(tables)


async def test_0008_marks_the_events_stored_before_as_webhooks_and_can_be_undone(
    database_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await asyncio.to_thread(_downgrade, database_url, "0007")
    async with session_factory() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO deal (id, source, external_id, name, stage, stage_changed_at, created_at, updated_at)"
                " VALUES (1, 'hubspot', '42', 'Deal', 'closed_lost', :at, :at, :at)"
            ),
            {"at": LOST_AT},
        )
        await session.execute(
            text(
                "INSERT INTO deal_event (idempotency_key, deal_id, stage, changed_at, received_at, applied, payload)"
                " VALUES ('hubspot:event:1', 1, 'closed_lost', :at, :at, true, '{}')"
            ),
            {"at": LOST_AT},
        )

    await asyncio.to_thread(upgrade_to_head, database_url)

    async with session_factory() as session:
        assert (await session.execute(text("SELECT via FROM deal_event"))).scalars().all() == ["webhook"]
        tables = await session.run_sync(lambda sync: inspect(sync.connection()).get_table_names())
    assert {"sweep_cursor", "webhook_miss"} <= set(tables)

    await asyncio.to_thread(_downgrade, database_url, "0007")
    async with session_factory() as session:
        tables = await session.run_sync(lambda sync: inspect(sync.connection()).get_table_names())
        columns = await session.run_sync(lambda sync: inspect(sync.connection()).get_columns("deal_event"))
    assert "sweep_cursor" not in tables and "webhook_miss" not in tables
    assert "via" not in {column["name"] for column in columns}


async def test_0013_gives_the_details_stored_before_it_their_key_and_can_be_undone(
    database_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await asyncio.to_thread(_downgrade, database_url, "0010_claimed_by")
    details = ["Initech", "initech inc.", "INITECH, Inc", "Globex", None]
    async with session_factory() as session, session.begin():
        for number, detail in enumerate(details, start=1):
            values = {"id": number, "external": f"d{number}", "detail": detail, "at": LOST_AT}
            await session.execute(
                text(
                    "INSERT INTO deal (id, source, external_id, name, stage, stage_changed_at, created_at, updated_at)"
                    " VALUES (:id, 'api', :external, 'Deal', 'closed_lost', :at, :at, :at)"
                ),
                values,
            )
            await session.execute(
                text(
                    "INSERT INTO loss (id, deal_id, lost_at, state, reminders_sent, created_at)"
                    " VALUES (:id, :id, :at, 'logged', 0, :at)"
                ),
                values,
            )
            await session.execute(
                text(
                    "INSERT INTO reason_entry (loss_id, revision, reason_code, detail, explanation, logged_by,"
                    " logged_at) VALUES (:id, 1, 'competitor', :detail, 'They chose Initech.', 'U1', :at)"
                ),
                values,
            )

    await asyncio.to_thread(upgrade_to_head, database_url)

    async with session_factory() as session:
        keys = (await session.execute(text("SELECT detail_key FROM reason_entry ORDER BY loss_id"))).scalars().all()
    assert keys == ["initech", "initech", "initech", "globex", None]

    await asyncio.to_thread(_downgrade, database_url, "0010_claimed_by")
    async with session_factory() as session:
        columns = await session.run_sync(lambda sync: inspect(sync.connection()).get_columns("reason_entry"))
    assert "detail_key" not in {column["name"] for column in columns}


async def test_0014_marks_the_reasons_stored_before_it_as_the_reps_own_and_can_be_undone(
    database_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await asyncio.to_thread(_downgrade, database_url, "0013_detail_keys")
    await _seed_before_0005(session_factory)

    await asyncio.to_thread(upgrade_to_head, database_url)

    async with session_factory() as session:
        flags = (await session.execute(text("SELECT recoded, confirmed_over FROM reason_entry"))).all()
        message_columns = await session.run_sync(lambda sync: inspect(sync.connection()).get_columns("message"))
    assert [(bool(recoded), confirmed) for recoded, confirmed in flags] == [(False, None)] * 4
    assert "reason_entry_id" in {column["name"] for column in message_columns}

    await asyncio.to_thread(_downgrade, database_url, "0013_detail_keys")
    async with session_factory() as session:
        columns = await session.run_sync(lambda sync: inspect(sync.connection()).get_columns("reason_entry"))
        indexes = await session.run_sync(lambda sync: inspect(sync.connection()).get_indexes("reason_entry"))
        message_columns = await session.run_sync(lambda sync: inspect(sync.connection()).get_columns("message"))
    assert not {"recoded", "confirmed_over"} & {column["name"] for column in columns}
    assert "ix_reason_entry_flagged" not in {index["name"] for index in indexes}
    assert "reason_entry_id" not in {column["name"] for column in message_columns}
