"""The async engine and session factory, configured the same way for the server, the CLI and tests."""

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Connections for reads on SQLite (`create_read_engine`): a few commands or Home tabs at once.
READ_POOL_SIZE = 4
# How long a connection to PostgreSQL may take. asyncpg's default is 60 s, and a port that accepts
# connections but never answers then ends in a TimeoutError with no message, a minute later.
CONNECT_TIMEOUT_SECONDS = 10
# A probe waits this long for SQLite's write lock: longer than the health check waits for it (so
# the check reports the wait itself), short enough that an abandoned probe ends soon after.
PROBE_BUSY_TIMEOUT_MS = 3_000
# The one table every migrated database has, with one row, written only by migrations: a probe
# can ask to write it without touching any row that real work uses.
_PROBE_WRITE = text("UPDATE alembic_version SET version_num = version_num")
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
        kwargs["connect_args"] = {
            "server_settings": POSTGRESQL_SETTINGS,
            "timeout": CONNECT_TIMEOUT_SECONDS,
            **kwargs.get("connect_args", {}),
        }
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


def create_read_engine(url: str) -> AsyncEngine | None:
    """An engine for work that only reads, on a SQLite file; None for PostgreSQL, whose readers
    never wait for its writers (and for an in-memory SQLite database, which has one connection).

    `create_engine` gives SQLite one connection and starts every transaction with the write lock,
    so a read waits for every write before it, and for a lock another process holds. WAL lets
    readers read beside the writer, on connections of their own: these start a plain (deferred)
    `BEGIN`, which reads one snapshot and never takes the write lock, and are `query_only`, so
    that a write sent here by mistake fails at once rather than racing the one writer.
    """
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or "mode=memory" in url:
        # Each connection to an in-memory database opens a new, empty one.
        return None
    engine = create_async_engine(url, pool_size=READ_POOL_SIZE, max_overflow=0)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def create_probe_engine(url: str) -> AsyncEngine:
    """An engine for health probes and for waiting on the database at start.

    A fresh connection per probe (NullPool): a probe never waits for a connection that real work
    holds, nor keeps one real work needs. On SQLite the connection runs without the
    `BEGIN IMMEDIATE` of `create_engine`, so a read probe reads beside a writer as WAL allows,
    and `probe_writes` asks for the write lock itself.
    """
    if url.startswith("postgresql+asyncpg"):
        return create_engine(url, poolclass=NullPool)
    engine = create_async_engine(url, poolclass=NullPool)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # No implicit transactions: each statement runs on its own unless the probe says BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={PROBE_BUSY_TIMEOUT_MS}")
        cursor.close()

    return engine


async def probe_writes(engine: AsyncEngine) -> None:
    """Takes the write lock and updates a row to itself, then rolls back: the database has to be
    writable and its lock free, and nothing is changed. Raises what the driver raises otherwise."""
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                await connection.execute(_PROBE_WRITE)
            finally:
                await connection.exec_driver_sql("ROLLBACK")
        else:
            await connection.execute(_PROBE_WRITE)
            await connection.rollback()


async def ping(session: AsyncSession) -> None:
    await session.execute(text("SELECT 1"))
