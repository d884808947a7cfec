"""Alembic environment: runs migrations over the async engine, on SQLite or PostgreSQL."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from storage.engine import create_engine
from storage.models import Base

config = context.config
MIGRATION_LOCK = 20261122  # any constant the application uses for nothing else


def _run(connection: Connection) -> None:
    # Batch mode lets later migrations alter columns on SQLite, which has a thin ALTER TABLE.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Replicas starting together would otherwise race to create the same tables.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
