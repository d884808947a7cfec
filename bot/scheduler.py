"""The scheduler: every SCHEDULER_TICK, the jobs that prompt, remind, escalate, nudge, post the
weekly digest and bring the stats' monthly summary up to date, on the server's own event loop
(APScheduler 3's AsyncIOScheduler).

Jobs claim their work in the database (see `bot.services.chasing`), so any number of processes can
tick against one database. Each tick also renews this process's claims on the outbox rows it is
sending: the claims of a process that died run out after LEASE_TICKS ticks, and another process
(or this one, restarted) sends what it left.

A tick that outlasts SCHEDULER_TICK (the database is locked or down, and each job waits for it)
makes the ticks due meanwhile skip themselves, with one warning when the skipping starts and one
line when a tick ends again, rather than APScheduler's warning every SCHEDULER_TICK.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime, timedelta
from functools import partial

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.outage import DatabaseOutage
from bot.services import chasing, digest_posting, outbox, revisits, summary
from bot.settings import Settings
from storage.faults import database_unreachable

logger = logging.getLogger(__name__)

LEASE_TICKS = 3


def claim_lease(settings: Settings) -> timedelta:
    return settings.scheduler_tick * LEASE_TICKS


class Jobs:
    def __init__(
        self,
        *,
        settings: Settings,
        chase: chasing.ChasePolicy,
        session_factory: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime],
        process_id: str,
        on_messages_queued: Callable[[], None],
        calls_in_flight: Callable[[], Collection[int]],
    ) -> None:
        self._settings = settings
        self._chase = chase
        self._session_factory = session_factory
        self._clock = clock
        self._process_id = process_id
        self._on_messages_queued = on_messages_queued
        self._calls_in_flight = calls_in_flight
        # One tick at a time in this process, whether the timer or `prompt_soon` started it.
        self._ticking = asyncio.Lock()
        self._prompt_timer: asyncio.TimerHandle | None = None
        self._prompt_timer_at: datetime | None = None
        self._stopped = False
        self._outage = DatabaseOutage(
            logger,
            what="queueing what is due (prompts, reminders, escalations, revisit nudges, the digest)",
            meanwhile="it is tried again every tick",
        )
        self._running: set[asyncio.Task[None]] = set()
        # When the running tick began (monotonic seconds), and whether scheduled ticks skipped for it.
        self._tick_began = 0.0
        self._skipped = False
        self._scheduler = AsyncIOScheduler(timezone=UTC)

    def start(self) -> None:
        self._scheduler.add_job(
            self._scheduled_tick,
            "interval",
            seconds=self._settings.scheduler_tick.total_seconds(),
            id="tick",
            # A tick that runs long is one instance; the next, which only skips itself, is the
            # second. At one, APScheduler would refuse that one with a warning every tick.
            max_instances=2,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        self._scheduler.start()

    async def stop(self) -> None:
        """Stops ticking, and waits for a tick under way to finish its transaction."""
        self._stopped = True
        # APScheduler's shutdown cancels the ticks it started that are still running (and logs each
        # with a traceback), so it comes last: pausing starts no new tick; one more turn of the loop
        # lets a tick already started take its place in the queue for the lock, ahead of this one.
        self._scheduler.pause()
        if self._prompt_timer is not None:
            self._prompt_timer.cancel()
        await asyncio.sleep(0)
        async with self._ticking:
            self._scheduler.shutdown(wait=False)

    def prompt_soon(self) -> None:
        """New losses were recorded: tick when their prompt could first fall due (BULK_WINDOW from
        now), rather than up to a whole SCHEDULER_TICK later. That tick arms the next timer for when
        a prompt is due as the database has it, which counts the losses every process recorded."""
        self._tick_for_prompts_at(self._clock() + self._settings.bulk_window)

    def _tick_for_prompts_at(self, when: datetime) -> None:
        """Ticks at `when`, unless a tick is already set for earlier."""
        if self._stopped:
            return
        if self._prompt_timer is not None:
            assert self._prompt_timer_at is not None
            if self._prompt_timer_at <= when:
                return
            self._prompt_timer.cancel()
        delay = max((when - self._clock()).total_seconds(), 0.0)
        self._prompt_timer = asyncio.get_running_loop().call_later(delay, self._tick_for_prompts)
        self._prompt_timer_at = when

    def _tick_for_prompts(self) -> None:
        self._prompt_timer = self._prompt_timer_at = None
        task = asyncio.create_task(self.tick())
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def tick(self) -> None:
        """One round of every job; a job that fails is logged and tried again next tick."""
        async with self._ticking:
            self._tick_began = time.monotonic()
            await self._tick()
            # Once per slow spell: a lock that outlasts several ticks makes each of them slow, and
            # only a tick done within SCHEDULER_TICK says the database keeps up again.
            took = time.monotonic() - self._tick_began
            if self._skipped and took < self._settings.scheduler_tick.total_seconds():
                self._skipped = False
                logger.warning("the scheduler ticks again: its ticks end within SCHEDULER_TICK once more")

    async def _scheduled_tick(self) -> None:
        """A tick, unless one is still running: then this one is skipped (the next tick does its
        work). The first skip for a tick that has run longer than SCHEDULER_TICK is logged; one
        that only began a moment ago (`prompt_soon` started it) is no news."""
        if self._ticking.locked():
            running_for = time.monotonic() - self._tick_began
            every = self._settings.scheduler_tick.total_seconds()
            if not self._skipped and running_for >= every:
                self._skipped = True
                logger.warning(
                    "the scheduler's tick has run for %.0f s, longer than SCHEDULER_TICK (%g s; the database is"
                    " slow or locked): skipping ticks until it ends",
                    running_for,
                    every,
                )
            return
        await self.tick()

    async def _tick(self) -> None:
        now = self._clock()
        try:
            until = now + claim_lease(self._settings)
            # Only the calls under way: one this process claimed and gave up on is left to run out.
            await outbox.renew_claims(
                self._session_factory, process_id=self._process_id, outbox_ids=self._calls_in_flight(), until=until
            )
        except Exception as error:
            if not database_unreachable(error):
                logger.exception("renewing this process's outbox claims failed; trying again next tick")
            # Else the outbox worker says the database is unreachable, once.
        jobs: dict[str, Callable[[], Awaitable[int]]] = {
            "prompts": partial(self._queue_due_prompts, now=now),
            "reminders": partial(
                chasing.queue_due_reminders, session_factory=self._session_factory, policy=self._chase, now=now
            ),
            "escalations": partial(
                chasing.queue_due_escalations, session_factory=self._session_factory, policy=self._chase, now=now
            ),
            "revisit nudges": partial(
                revisits.queue_due_nudges,
                session_factory=self._session_factory,
                hours=self._chase.hours,
                team_tz=self._chase.team_tz,
                now=now,
            ),
            "digest": partial(
                digest_posting.queue_due_digest,
                session_factory=self._session_factory,
                channel=self._settings.digest_to,
                schedule=self._settings.digest_at,
                tz=self._settings.tz,
                now=now,
            ),
            "stats summary": self._refresh_summary,
        }
        queued = 0
        unreachable = False
        for what, job in jobs.items():
            try:
                queued += await job()
            except Exception as error:
                if self._outage.failed(error):
                    unreachable = True
                else:
                    logger.exception("queueing due %s failed; trying again next tick", what)
        if not unreachable:
            self._outage.succeeded()
        if queued:
            self._on_messages_queued()

    async def _refresh_summary(self) -> int:
        """Queues nothing: the months changed since the last tick are recomputed, so that stats read
        them from the summary again."""
        await summary.refresh_closed_summary(session_factory=self._session_factory)
        return 0

    async def _queue_due_prompts(self, *, now: datetime) -> int:
        prompts = await chasing.queue_due_prompts(session_factory=self._session_factory, policy=self._chase, now=now)
        if prompts.next_due_at is not None:
            self._tick_for_prompts_at(prompts.next_due_at)
        return prompts.queued
