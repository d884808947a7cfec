"""Whether the bot can do its job, for `GET /healthz` (README.md, "Other endpoints").

Each probe runs on a connection of its own (`storage.engine.create_probe_engine`) and is waited
for at most `PROBE_SECONDS`, so that the check answers in time during a lock or an outage. A probe
that did not answer in time is left to finish in the background (a SQLite call cannot be
interrupted), and no second one of its kind starts while it runs.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from storage import message_queries
from storage.engine import CONNECT_TIMEOUT_SECONDS, create_probe_engine, probe_writes
from storage.faults import waited_on_a_lock

PROBE_SECONDS = 1.5
OK = "ok"

T = TypeVar("T")


@dataclass(frozen=True)
class Probe:
    """What one probe found: `problem` is None when it worked, else one line saying what went wrong;
    `timed_out` when it did not answer within PROBE_SECONDS."""

    problem: str | None = None
    timed_out: bool = False

    @property
    def state(self) -> str:
        return OK if self.problem is None else self.problem


@dataclass(frozen=True)
class Health:
    reads: Probe
    writes: Probe
    pending_calls: int | None
    """Slack calls in the outbox waiting to be made; None when the database could not be read."""
    oldest_pending_seconds: float | None
    """How long the oldest of them has waited since it was queued; None when none waits."""

    @property
    def available(self) -> bool:
        """False when the bot cannot do its job: the database cannot be read, or refuses writes.
        A write that waits on a lock (another process holds it) is degraded, not down: SQLite
        has one writer at a time, and the bot's own long transactions must not fail the check."""
        return self.reads.problem is None and (self.writes.problem is None or self.writes.timed_out)

    @property
    def degraded(self) -> bool:
        return self.reads.problem is not None or self.writes.problem is not None

    def unavailable_because(self) -> str:
        """One line naming what the bot cannot do, for a check that is not `available`."""
        if self.reads.problem is not None:
            return "the database cannot be read"
        return "the database cannot be written"


class HealthCheck:
    """Probes the database behind `engine` (one from `create_probe_engine`, which this owns)."""

    def __init__(self, *, engine: AsyncEngine, clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._clock = clock
        self._running: dict[str, asyncio.Task[tuple[Probe, object]]] = {}

    async def check(self) -> Health:
        """Reads the outbox and probes a write at the same time; returns within PROBE_SECONDS or so."""
        (reads, pending), (writes, _) = await asyncio.gather(
            self._bounded("reads", self._read_outbox), self._bounded("writes", self._write)
        )
        count, oldest = (None, None) if pending is None else pending
        waited = None if oldest is None else max(0.0, (self._clock() - oldest).total_seconds())
        return Health(reads=reads, writes=writes, pending_calls=count, oldest_pending_seconds=waited)

    async def close(self) -> None:
        for task in self._running.values():
            task.cancel()
        await self._engine.dispose()

    async def _read_outbox(self) -> message_queries.PendingCalls:
        async with AsyncSession(self._engine) as session:
            return await message_queries.pending_calls(session)

    async def _write(self) -> None:
        await probe_writes(self._engine)

    async def _bounded(self, name: str, probe: Callable[[], Awaitable[T]]) -> tuple[Probe, T | None]:
        task = self._running.get(name)
        if task is None or task.done():
            task = asyncio.create_task(run_probe(probe), name=f"health-{name}")
            self._running[name] = task
        done, _ = await asyncio.wait({task}, timeout=PROBE_SECONDS)
        if not done:
            return Probe(problem=f"no answer within {PROBE_SECONDS:g} s", timed_out=True), None
        del self._running[name]
        return task.result()  # type: ignore[return-value]


async def run_probe(probe: Callable[[], Awaitable[T]]) -> tuple[Probe, T | None]:
    """The probe's result, or a Probe naming what it raised: whatever the driver raises (a refused
    connection, a read-only file, a full disk) is what the check reports, never a traceback."""
    try:
        return Probe(), await probe()
    except Exception as error:
        if waited_on_a_lock(error):
            # Busy, not broken: the same as a probe still waiting (a probe that gave up on the lock
            # just as it was freed must not turn a locked database into a 503).
            return Probe(problem=f"no answer within {PROBE_SECONDS:g} s", timed_out=True), None
        return Probe(problem=f"failed: {describe(error)}"), None


def describe(error: BaseException) -> str:
    """The driver's own message in one line (SQLAlchemy adds the statement and a link on more
    lines), or the error's type when it has no message (asyncio's TimeoutError)."""
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


async def connection_problem(database_url: str) -> str | None:
    """None when the database at `database_url` takes a connection and answers a query; else one
    line saying why not, in the driver's words. Gives up after CONNECT_TIMEOUT_SECONDS."""
    engine = create_probe_engine(database_url)
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")
    except TimeoutError:
        # asyncpg's connect timeout, a TimeoutError without a message: the port took the
        # connection (or the network swallowed it) and nothing answered.
        return f"no answer within {CONNECT_TIMEOUT_SECONDS} s"
    except Exception as error:
        return describe(error)
    finally:
        await engine.dispose()
    return None
