"""The async engine and session factory, configured the same way for the server, the CLI and tests."""

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 10_000
# asyncpg prepares every statement and keeps it per connection; after five runs PostgreSQL may
# switch to a generic plan, made without the parameters' values. For stats that plan guesses how
# many losses a period holds (the last 7 days and this year are one statement) and is then several
# times slower than the plan for the actual dates, on some connections and not others. Planning a
# statement for its values takes a millisecond or two.
# https://www.postgresql.org/docs/current/runtime-config-query.html#GUC-PLAN-CACHE-MODE
POSTGRESQL_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if url.startswith("sqlite") and "poolclass" not in kwargs:
        # SQLite has one writer at a time. Handing one connection from task to task in the pool
        # queue is far faster than several connections waiting on each other's lock, where
        # SQLite's busy handler sleeps in steps of up to 100 ms.
        kwargs.update(pool_size=1, max_overflow=0)
    if url.startswith("postgresql+asyncpg"):
        kwargs["connect_args"] = {"server_settings": POSTGRESQL_SETTINGS, **kwargs.get("connect_args", {})}
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL so readers never block the writer, a busy timeout so writers wait for each other, and
    `BEGIN IMMEDIATE` so that a transaction takes the write lock up front: a transaction that read
    first and upgraded later could fail with SQLITE_BUSY without ever waiting on the timeout.
    Recipe: https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#serializable-isolation-savepoints-transactional-ddl
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(session: AsyncSession) -> None:
    await session.execute(text("SELECT 1"))
