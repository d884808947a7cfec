"""History from HubSpot, and `/closedlost stats` on a long history (README.md, "Benchmarks and their
budgets").

    .venv/bin/python bench/sync.py [--crm-deals 200000] [--deals 1000000] [--reps 200] [--repeat 9]
                                   [--database-url postgresql+asyncpg://…] [--skip-import] [--smoke]

Two parts, each on databases of its own.

The import. A fake HubSpot (bench/fake_hubspot.py), in its own process, holds --crm-deals closed
deals and answers the deal search as HubSpot does: 200 results a page at most, 10,000 a query, and
5 searches a second (429 with Retry-After past that). `closedlost import --crm hubspot --since DATE`
runs as a subprocess, as an admin runs it, against an empty database (a new SQLite file, or a new
database on the --database-url server), with HUBSPOT_API_URL pointing at the fake and
REASON_ALIASES mapping some of its reasons, and HUBSPOT_SEARCHES_PER_SECOND the fake's limit
(without one, a rate no search reaches). Printed: the deals it read per second beside the rate
the limit allows (5 searches × 200 deals = 1,000 deals/s; budget ≥ 0.9×), the requests it made and
how many were refused, and its peak RSS (VmHWM of the subprocess, polled; budget < 150 MiB and flat
in the number of deals). Then the same against the fake without a limit, beside a raw bulk insert
of the same rows (deals, their audit events, losses, mapped reasons) with SQLAlchemy Core in
chunks, in the same run (budget ≥ 0.3×); and a tenth of the deals without a limit, whose peak RSS
should be the same. A checkout whose CLI has no `import` command prints
"skipped: closedlost import not available" for this part.

The stats. --deals closed deals are inserted in bulk as bench/stats.py fills them (five years,
most losses with a reason), the bot runs in its own process as `closedlost serve` builds it, and
its scheduler computes the monthly summary (`closed_summary`) on its first tick: the time that
takes is printed. Then `/closedlost stats all` and `stats year` are sent as signed slash commands
over HTTP and timed to their answer at the response_url, each beside the same GROUP BY as raw SQL
on the database driver, which is what the bot ran for them before the summary (budget: under
150 ms end to end on 1,000,000 deals).
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from fake_hubspot import PAGE_LIMIT, SEARCHES_PER_SECOND, YEARS, make_deals, owner_email, run_fake_hubspot
from harness import BOT_TOKEN, SIGNING_SECRET, Server, parse_arguments, run_bot, run_fake_slack
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url
from stats import CHUNK, FakeSlack, RawDatabase, compare, prepare, slash_command, wait_for_summary

from storage.engine import create_engine
from storage.migrate import upgrade_to_head
from storage.models import Deal, DealEventRecord, Loss, LossState, ReasonEntry

ROOT = Path(__file__).resolve().parent.parent
CLOSEDLOST = [sys.executable, "-m", "bot"]
ALLOWED_RATE = SEARCHES_PER_SECOND * PAGE_LIMIT
UNLIMITED_SEARCHES_PER_SECOND = 1_000_000
REASON_ALIASES = {"Went dark": "no_decision", "Budget cut": "price"}


# --- the import ------------------------------------------------------------------------------------


def import_available() -> bool:
    """Whether this checkout's CLI has `closedlost import` (another branch brings it)."""
    return subprocess.run([*CLOSEDLOST, "import", "--help"], cwd=ROOT, capture_output=True, check=False).returncode == 0


class Databases:
    """Empty databases for one run each: SQLite files in a folder, or new PostgreSQL databases on
    the server of `server_url`, dropped at the end."""

    def __init__(self, folder: Path, server_url: str | None) -> None:
        self._folder = folder
        self._server = make_url(server_url) if server_url else None
        self._made: list[str] = []

    async def new(self, name: str) -> str:
        if self._server is None:
            url = f"sqlite+aiosqlite:///{self._folder / f'{name}.db'}"
        else:
            database = f"closedlost_bench_{name}_{uuid.uuid4().hex[:8]}"
            admin = await self._admin()
            try:
                await admin.execute(f'CREATE DATABASE "{database}"')
            finally:
                await admin.close()
            self._made.append(database)
            url = self._server.set(database=database).render_as_string(hide_password=False)
        await asyncio.to_thread(upgrade_to_head, url)
        return url

    async def drop_all(self) -> None:
        if not self._made:
            return
        admin = await self._admin()
        try:
            for database in self._made:
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()

    async def _admin(self) -> asyncpg.Connection:
        server = self._server
        assert server is not None
        return await asyncpg.connect(
            host=server.host, port=server.port, user=server.username, password=server.password, database=server.database
        )


async def run_import(
    database_url: str, crm_url: str, slack_url: str, since: date, searches_per_second: int
) -> tuple[float, int, str]:
    """Runs `closedlost import --crm hubspot --since DATE` to its end: (seconds, peak RSS in MiB,
    the last lines it printed). Its output is read as it comes, so that a progress bar never
    blocks it on a full pipe."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_url,
        "HUBSPOT_TOKEN": "pat-bench",
        "HUBSPOT_API_URL": crm_url + "/",
        "REASON_ALIASES": json.dumps(REASON_ALIASES),
        "HUBSPOT_SEARCHES_PER_SECOND": str(searches_per_second),
        "LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *CLOSEDLOST,
        "import",
        "--crm",
        "hubspot",
        "--since",
        since.isoformat(),
        cwd=ROOT,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    peak = 0
    output: list[str] = []

    async def read() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            output.append(chunk.decode(errors="replace"))

    reading = asyncio.create_task(read())
    while process.returncode is None:
        peak = max(peak, vm_hwm_mib(process.pid))
        try:
            await asyncio.wait_for(process.wait(), timeout=0.2)
        except TimeoutError:
            pass
    seconds = time.perf_counter() - started
    await reading
    tail = "\n".join("".join(output).replace("\r", "\n").strip().splitlines()[-8:])
    if process.returncode != 0:
        raise SystemExit(f"closedlost import exited with {process.returncode}:\n{tail}")
    return seconds, peak, tail


def vm_hwm_mib(pid: int) -> int:
    """The process's peak resident memory so far (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return 0


async def stored_deals(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.scalar(select(func.count()).select_from(Deal)) or 0
    finally:
        await engine.dispose()


async def import_once(
    databases: Databases, crm_deals: int, limited: bool, slack_url: str, since: date
) -> tuple[float, int]:
    """One import into a new database from a new fake HubSpot: deals/s, and its peak RSS in MiB."""
    crm = await asyncio.to_thread(Server, run_fake_hubspot, crm_deals, limited)
    try:
        database_url = await databases.new(f"{'limited' if limited else 'unlimited'}_{crm_deals}")
        searches_per_second = SEARCHES_PER_SECOND if limited else UNLIMITED_SEARCHES_PER_SECOND
        seconds, peak, tail = await run_import(database_url, crm.url, slack_url, since, searches_per_second)
        calls: dict[str, int] = await asyncio.to_thread(crm.ask, "calls")
    finally:
        await asyncio.to_thread(crm.stop)
    stored = await stored_deals(database_url)
    rate = crm_deals / seconds
    print("  its last lines:\n    " + tail.replace("\n", "\n    "))
    searches, refused = calls.get("search", 0), calls.get("429", 0)
    line = (
        f"  {'limited' if limited else 'unlimited'} import: {crm_deals:,} deals read, {stored:,} stored, in "
        f"{seconds:.1f} s: {rate:,.0f} deals/s; {searches:,} searches ({refused:,} refused with 429), "
        f"{calls.get('pipelines', 0)} pipeline and {calls.get('owners', 0)} owner requests; peak RSS {peak} MiB "
        "(budget < 150 MiB)"
    )
    if limited:
        line += (
            f"\n  allowed by the limit: {ALLOWED_RATE:,} deals/s; the import reaches {rate / ALLOWED_RATE:.2f}x of it"
            " (budget ≥ 0.9x)"
        )
    print(line)
    return rate, peak


def crm_rows(crm_deals: int, now: datetime) -> list[tuple[list[dict[str, Any]], ...]]:
    """The fake's deals as the import stores them, roughly: each deal, its audit event, and for a
    loss the loss and, when its reason maps, the reason; in chunks."""
    codes = {"price": "price", "competitor": "competitor", "timing": "timing", **REASON_ALIASES}
    chunks = []
    loss_id = 0
    deals = make_deals(crm_deals, now)
    for start in range(0, len(deals), CHUNK):
        deal_rows, events, losses, entries = [], [], [], []
        for deal_id, crm_deal in enumerate(deals[start : start + CHUNK], start=start + 1):
            closed = datetime.fromisoformat(crm_deal["closedate"])
            stage = "closed_lost" if crm_deal["dealstage"] == "closedlost" else "closed_won"
            deal_rows.append(
                {
                    "id": deal_id,
                    "source": "hubspot",
                    "external_id": crm_deal["hs_object_id"],
                    "name": crm_deal["dealname"],
                    "account": None,
                    "amount": Decimal(crm_deal["amount"]),
                    "currency": crm_deal["deal_currency_code"],
                    "owner_email": owner_email(crm_deal["hubspot_owner_id"]),
                    "owner_slack_id": None,
                    "stage": stage,
                    "stage_changed_at": closed,
                    "url": None,
                    "crm_reason": crm_deal["closed_lost_reason"] or None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            events.append(
                {
                    "idempotency_key": f"hubspot:deal:{crm_deal['hs_object_id']}:{stage}:{closed.isoformat()}",
                    "deal_id": deal_id,
                    "stage": stage,
                    "changed_at": closed,
                    "received_at": now,
                    "applied": True,
                    "payload": crm_deal,
                    "via": "import",
                }
            )
            if stage == "closed_won":
                continue
            loss_id += 1
            code = codes.get(crm_deal["closed_lost_reason"].lower()) or codes.get(crm_deal["closed_lost_reason"])
            losses.append(
                {
                    "id": loss_id,
                    "deal_id": deal_id,
                    "lost_at": closed,
                    "state": LossState.LOGGED if code else LossState.AWAITING,
                    "logged_at": closed if code else None,
                    "created_at": now,
                }
            )
            if code:
                entries.append(
                    {
                        "loss_id": loss_id,
                        "revision": 1,
                        "reason_code": code,
                        "explanation": "",
                        "logged_by": "crm",
                        "logged_at": closed,
                    }
                )
        chunks.append((deal_rows, events, losses, entries))
    return chunks


async def raw_insert(databases: Databases, crm_deals: int) -> float:
    """The same rows inserted in bulk into a new database: deals/s."""
    database_url = await databases.new("raw")
    chunks = crm_rows(crm_deals, datetime.now(UTC))
    engine = create_engine(database_url)
    tables = (Deal, DealEventRecord, Loss, ReasonEntry)
    try:
        started = time.perf_counter()
        for chunk in chunks:
            async with engine.begin() as connection:
                for table, rows in zip(tables, chunk, strict=True):
                    if rows:
                        await connection.execute(insert(table), rows)
        seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    rate = crm_deals / seconds
    print(f"  raw bulk insert of the same rows: {crm_deals:,} deals in {seconds:.1f} s: {rate:,.0f} deals/s")
    return rate


async def measure_import(folder: Path, server_url: str | None, crm_deals: int) -> None:
    print(f"the import: closedlost import --crm hubspot, {crm_deals:,} deals in a fake HubSpot")
    if not await asyncio.to_thread(import_available):
        print("  skipped: closedlost import not available")
        return
    databases = Databases(folder, server_url)
    slack = await asyncio.to_thread(Server, run_fake_slack)
    since = (datetime.now(UTC) - timedelta(days=YEARS * 365 + 1)).date()
    try:
        await import_once(databases, crm_deals, True, slack.url + "/api/", since)
        unlimited, peak = await import_once(databases, crm_deals, False, slack.url + "/api/", since)
        raw = await raw_insert(databases, crm_deals)
        print(f"  unlimited import / raw bulk insert: {unlimited / raw:.2f}x (budget ≥ 0.3x)")
        # Memory that grew with the deals read would show here: a tenth of them, the same peak.
        fewer = crm_deals // 10
        _, peak_fewer = await import_once(databases, fewer, False, slack.url + "/api/", since)
        print(f"  peak RSS of the import: {peak_fewer} MiB for {fewer:,} deals, {peak} MiB for {crm_deals:,}")
    finally:
        await asyncio.to_thread(slack.stop)
        await databases.drop_all()


# --- the stats -------------------------------------------------------------------------------------


@asynccontextmanager
async def bot_serving(database_url: str) -> AsyncIterator[tuple[Server, FakeSlack]]:
    slack = FakeSlack()
    slack_url = await slack.start()
    bot = await asyncio.to_thread(Server, run_bot, database_url, slack_url)
    try:
        yield bot, slack
    finally:
        await asyncio.to_thread(bot.stop)
        await slack.stop()


async def measure_stats(database_url: str, deals: int, reps: int, repeat: int) -> None:
    print(f"the stats: {deals:,} closed deals inserted in bulk, {reps} reps")
    await prepare(database_url, deals, reps)
    raw = RawDatabase(database_url)
    await raw.open()
    try:
        async with bot_serving(database_url) as (bot, slack), aiohttp.ClientSession() as http:
            took = await wait_for_summary(database_url)
            print(f"  the bot computed the monthly summary in {took:.1f} s after it started")

            def closed(year: bool) -> Callable[[], Awaitable[Any]]:
                def run() -> Awaitable[Any]:
                    now = datetime.now(UTC)
                    since = datetime(now.year, 1, 1, tzinfo=UTC) if year else None
                    return raw.closed_groups(since, now, None)

                return run

            budget = "  (budget < 150 ms end to end)"
            for name in ("all", "year"):
                await compare(
                    f"stats {name}",
                    repeat,
                    closed(name == "year"),
                    lambda name=name: slash_command(http, bot.url, slack, f"stats {name}"),  # type: ignore[misc]
                    budget,
                )
            print(f"  closedlost peak RSS: {await asyncio.to_thread(bot.ask, 'rss')} MiB")
    finally:
        await raw.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crm-deals", type=int, default=200_000, help="closed deals in the fake HubSpot")
    parser.add_argument("--deals", type=int, default=1_000_000, help="closed deals stored for the stats")
    parser.add_argument("--reps", type=int, default=200, help="reps who own them")
    parser.add_argument("--repeat", type=int, default=9, help="timed runs of each stats command")
    parser.add_argument(
        "--database-url",
        help="the stats' database (empty, or filled by this script or bench/stats.py before); the imports "
        "make new databases on its server. Defaults to SQLite files in a temporary folder",
    )
    parser.add_argument("--skip-import", action="store_true", help="measure the stats only")
    arguments = parse_arguments(parser, smoke={"crm_deals": 3000, "deals": 3000, "reps": 10, "repeat": 2})

    with tempfile.TemporaryDirectory() as folder:
        if not arguments.skip_import:
            asyncio.run(measure_import(Path(folder), arguments.database_url, arguments.crm_deals))
        database_url = arguments.database_url or f"sqlite+aiosqlite:///{Path(folder) / 'stats.db'}"
        asyncio.run(measure_stats(database_url, arguments.deals, arguments.reps, arguments.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
