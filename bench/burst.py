"""A 10,000-deal bulk closure for 50 reps, against a fake Slack that enforces Slack's rate limits
(README.md, "Benchmarks and their budgets"), beside a bare aiohttp endpoint measured in the same run.

    .venv/bin/python bench/burst.py [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/closedlost_bench_burst]
                                    [--events 10000] [--reps 50] [--rounds 1] [--bulk-window 2s]
                                    [--faults db-cut,db-cut-dms|none] [--quiet 5] [--log-dir DIR]
                                    [--py-spy DIR] [--smoke]

Run it as a script, as the other benchmarks (this folder is then on the import path). Without
--database-url each run gets a new SQLite file; with a PostgreSQL URL the database named in it is
dropped and created afresh before each run (through the server's `postgres` database), so the
user needs CREATEDB.

The bot (its aiohttp app as `closedlost serve` builds it, migrated on start), the fake Slack
(bench/limited_slack.py) and the bare endpoint each run in their own process; the load comes from
this one. The bot runs with BULK_WINDOW=2s, SCHEDULER_TICK=1s, working time all day every day, and
reminders and escalation 100h away, so that the only messages it owes are the prompts.

The events are closed-lost deals with distinct ids, the rep of deal n being rep{n % reps}@example.com
(interleaved, as a mass closure sorted by deal is), which the fake's users.lookupByEmail knows. They
go to the signed POST /webhooks/deals twice, each time on a fresh database and a fresh fake Slack:
once one event a request over 50 connections, once as arrays of 100 over 4. For each it prints
events/s and p50/p99 response times (with the bare endpoint's, and the ratio), the Slack calls
(per method, with the 429s among them, and per rep), the seconds until every rep had a DM (from the
first request, and from the last answer), the DMs per rep and the deals they cover (lost and
duplicated deals and messages, which must all be 0), the bot's CPU time and peak RSS, and the
warnings the bot logged (the log is kept in --log-dir). Figures only: nothing here asserts a time.

Then the burst of one event a request again, once for each of --faults (both by default; `none`
for neither), with the database cut off from the bot for 5 s: `db-cut` once half the requests are
answered, `db-cut-dms` as the first DM goes out (so that posts are under way: Slack takes them
while their outcome cannot be recorded). PostgreSQL is cut behind the tests' TCP proxy
(tests/tcp_proxy.py, in its own process), which drops every connection and refuses new ones;
SQLite (the default, and what --smoke runs in CI) has its write lock held by another process
(tests/sqlite_lock.py). The load sends an event the bot refused (503) again, as a CRM does: after
1 s, then twice as long each time up to 8 s. It prints the events accepted and those refused at
their first answer (then accepted when sent again), the DMs delivered, the deals and DMs lost and
doubled (a deal counted in two DMs, or an outbox message posted twice, by the metadata the fake
Slack keeps; all must be 0), and the seconds from the database's return to the last DM. The
unfaulted runs before them are their baseline.
"""

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from harness import Server, parse_arguments, run_bot, serve, sign_deals
from limited_slack import DEAL_NAME, rep_email, run_limited_slack
from sqlalchemy.engine import make_url

# The faults the tests make (tests/tcp_proxy.py, tests/sqlite_lock.py), imported from the repository
# root: a script run as bench/burst.py has only this folder on its path.
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from tests.sqlite_lock import write_lock_held_by_another_process  # noqa: E402
from tests.tcp_proxy import TcpProxy  # noqa: E402

SINGLE_CONCURRENCY = 50
ARRAY_CONCURRENCY = 4
ARRAY_SIZE = 100
# Longer than any Retry-After the fake gives: a bot sleeping through one is not taken for done.
PATIENCE_SECONDS = 75.0
BOT_SETTINGS = {
    "scheduler_tick": "1s",
    "working_hours": "00:00-24:00",
    "working_days": "mon-sun",
    "reminder_after": "100h,101h",
    "escalate_after": "100h",
}

# Budgets (README.md, "Benchmarks and their budgets").
SINGLE_RATIO_BUDGET = 0.15
ARRAY_EVENTS_BUDGET = 10_000
CALLS_PER_REP_BUDGET = 3
RSS_BUDGET_MIB = 150

FAULT_SECONDS = 5.0
"""How long the database is cut off in a faulted run."""
FAULTS = {
    "db-cut": "half way through the burst",
    "db-cut-dms": "as the first DM goes out",
}
WATCH_AFTER_RETURN_SECONDS = 10.0
"""How long the DMs are watched at least once the database is back: the outbox worker tries again
every 5 s, and the claims it left run out after three ticks; a post made twice would come then."""
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 8.0
RETRY_GIVE_UP_SECONDS = 120.0
"""A request still refused this long after its first try stops the benchmark."""


# --- servers, each in its own process --------------------------------------------------------


def run_bare(pipe: Any) -> None:
    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"accepted": 1, "duplicates": 0}, status=202)

    app = web.Application()
    app.router.add_post("/webhooks/deals", accept)
    serve(app, pipe)


def run_logged_bot(pipe: Any, database_url: str, slack_url: str, overrides: dict[str, Any], log_path: str) -> None:
    """harness.run_bot, with what the bot logs (WARNING and up) written to `log_path`."""
    logging.basicConfig(
        filename=log_path, level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run_bot(pipe, database_url, slack_url, overrides)


def run_proxy(pipe: Any, host: str, port: int) -> None:
    """tests/tcp_proxy.py's proxy to host:port, on a free port sent up the pipe; then answers "cut"
    and "restore" (with the connections dropped or refused so far) until told to stop."""

    async def proxy_commands() -> None:
        proxy = TcpProxy(host, port)
        await proxy.start()
        pipe.send(proxy.port)
        commands = {"cut": proxy.cut, "restore": proxy.restore}
        while (command := await asyncio.to_thread(pipe.recv)) in commands:
            commands[command]()
            pipe.send(proxy.cut_connections)
        await proxy.stop()

    asyncio.run(proxy_commands())


# --- the database ------------------------------------------------------------------------------


async def recreate_postgres(database_url: str) -> None:
    import asyncpg

    url = make_url(database_url)
    connection = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database="postgres"
    )
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{url.database}"')
    finally:
        await connection.close()


def fresh_database(database_url: str | None, folder: Path, name: str) -> str:
    if database_url is None:
        return f"sqlite+aiosqlite:///{folder / f'{name}.db'}"
    asyncio.run(recreate_postgres(database_url))
    return database_url


class ProxiedPostgres:
    """PostgreSQL behind a TCP proxy in its own process: cut, it drops the bot's connections and
    refuses new ones, as a server that stopped does."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self._proxy = Server(run_proxy, url.host or "127.0.0.1", url.port or 5432)
        self.bot_database_url = url.set(host="127.0.0.1", port=self._proxy.port).render_as_string(hide_password=False)
        self.what = "PostgreSQL's connections dropped and refused by a TCP proxy"

    async def cut(self) -> None:
        await asyncio.to_thread(self._proxy.ask, "cut")

    async def restore(self) -> None:
        dropped = await asyncio.to_thread(self._proxy.ask, "restore")
        self.what += f" ({dropped} connections)"

    def close(self) -> None:
        self._proxy.stop()


class LockedSqlite:
    """A SQLite file whose write lock another process holds while cut, as a backup or a person with
    the sqlite3 shell would."""

    def __init__(self, database_url: str) -> None:
        self.bot_database_url = database_url
        self.what = "the SQLite file's write lock held by another process"
        self._path = str(make_url(database_url).database)
        self._lock = contextlib.AsyncExitStack()

    async def cut(self) -> None:
        await self._lock.enter_async_context(write_lock_held_by_another_process(self._path))

    async def restore(self) -> None:
        await self._lock.aclose()

    def close(self) -> None:
        pass


Fault = ProxiedPostgres | LockedSqlite


# --- load -------------------------------------------------------------------------------------


def make_events(count: int, reps: int) -> list[dict[str, Any]]:
    changed_at = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        {
            "deal_id": f"B{number:06d}",
            "name": DEAL_NAME.format(number=number),
            "stage": "closed_lost",
            "amount": 1000 + number,
            "currency": "USD",
            "owner_email": rep_email(number % reps),
            "changed_at": changed_at,
        }
        for number in range(count)
    ]


@dataclass
class Load:
    """What sending the bodies took, and what the bot answered."""

    first: float = 0.0
    """When the first request went (epoch seconds)."""
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    """Every answer's response time, refusals included."""
    receipts: Counter[str] = field(default_factory=Counter)
    """The 202 answers' accepted and duplicates."""
    answered: int = 0
    """Requests answered 202."""
    refused_events: int = 0
    """Events whose request was refused (503) at its first answer, and accepted when sent again."""
    refusals: int = 0
    """503 answers, every try counted."""
    cut_at: float = 0.0
    back_at: float = 0.0
    """When the database was cut off, and when it was back (epoch seconds)."""


async def cut_off(fault: Fault, load: Load) -> None:
    """Cuts the database off for FAULT_SECONDS, noting when in `load`."""
    await fault.cut()
    load.cut_at = time.time()
    await asyncio.sleep(FAULT_SECONDS)
    await fault.restore()
    load.back_at = time.time()


async def cut_off_once_posting(slack: Server, fault: Fault, load: Load) -> None:
    """Cuts the database off as soon as the fake Slack has a DM, while the others are on their way."""
    deadline = time.time() + PATIENCE_SECONDS
    while not (await asyncio.to_thread(slack.ask, "progress"))["reps_with_dm"]:
        if time.time() > deadline:
            raise RuntimeError(f"no DM was posted within {PATIENCE_SECONDS:g} s of the burst")
        await asyncio.sleep(0.05)  # noqa: ASYNC110 (the fake Slack is another process, polled)
    await cut_off(fault, load)


async def post_bodies(url: str, bodies: list[bytes], concurrency: int, fault: Fault | None = None) -> Load:
    """Posts each body over `concurrency` connections until it is answered 202: a body refused
    (503) is sent again as a CRM does, after RETRY_FIRST_SECONDS, then twice as long each time. With
    a fault, the database is cut off for FAULT_SECONDS once half the bodies are answered."""
    load = Load()
    pending = iter(bodies)
    outage: list[asyncio.Task[None]] = []

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def send(body: bytes) -> None:
            wait = RETRY_FIRST_SECONDS
            first_try = time.time()
            while True:
                started = time.perf_counter()
                async with http.post(f"{url}/webhooks/deals", data=body, headers=sign_deals(body)) as response:
                    answer = await response.read()
                load.latencies.append(time.perf_counter() - started)
                if response.status == 202:
                    break
                if response.status != 503 or time.time() - first_try > RETRY_GIVE_UP_SECONDS:
                    raise RuntimeError(f"the webhook answered {response.status}: {answer[:300]!r}")
                if wait == RETRY_FIRST_SECONDS:
                    load.refused_events += len(json.loads(body)) if body.startswith(b"[") else 1
                load.refusals += 1
                await asyncio.sleep(wait)
                wait = min(wait * 2, RETRY_MAX_SECONDS)
            load.receipts.update(json.loads(answer))
            load.answered += 1
            if fault is not None and not outage and load.answered >= max(len(bodies) // 2, 1):
                outage.append(asyncio.create_task(cut_off(fault, load)))

        async def worker() -> None:
            for body in pending:
                await send(body)

        load.first = time.time()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        load.seconds = time.perf_counter() - started
        await asyncio.gather(*outage)
        return load


def percentiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return statistics.median(ordered) * 1000, ordered[max(int(len(ordered) * 0.99) - 1, 0)] * 1000


# --- one run ----------------------------------------------------------------------------------


def wait_for_prompts(
    slack: Server, reps: int, expected_deals: int, timeout: float, quiet_for: float, not_before: float = 0.0
) -> dict[str, Any]:
    """Polls the fake until every rep has a DM and they cover every deal, and Slack has been quiet
    for `quiet_for` seconds (a duplicate would come in that time), and it is `not_before` (epoch
    seconds); or until nothing happened for PATIENCE_SECONDS, or `timeout`."""
    deadline = time.time() + timeout
    while True:
        progress = slack.ask("progress")
        now = time.time()
        quiet = now - progress["last_call"] if progress["last_call"] else 0.0
        complete = len(progress["reps_with_dm"]) >= reps and progress["deals_covered"] >= expected_deals
        if (complete and quiet >= quiet_for and now >= not_before) or quiet >= PATIENCE_SECONDS or now > deadline:
            progress["timed_out"] = now > deadline
            return progress
        time.sleep(0.1)


def run_once(
    mode: str,
    events: list[dict[str, Any]],
    arguments: argparse.Namespace,
    folder: Path,
    log_dir: Path,
    round_number: int,
    fault_name: str | None = None,
) -> dict[str, Any]:
    """One burst on a fresh database and fake Slack; with `fault_name` (of FAULTS), the database
    is cut off once."""
    name = f"{mode}-{fault_name + '-' if fault_name else ''}{round_number}"
    database_url = fresh_database(arguments.database_url, folder, name)
    fault: Fault | None = None
    if fault_name is not None:
        fault = ProxiedPostgres(database_url) if arguments.database_url else LockedSqlite(database_url)
        database_url = fault.bot_database_url
    log_path = log_dir / f"{name}.log"
    slack = Server(run_limited_slack, arguments.reps)
    overrides = {**BOT_SETTINGS, "bulk_window": arguments.bulk_window}
    bot = Server(run_logged_bot, database_url, f"{slack.url}/api/", overrides, str(log_path))
    profiler = None
    if arguments.py_spy:
        profile = Path(arguments.py_spy) / f"{arguments.database}-{name}.txt"
        py_spy = shutil.which("py-spy", path=Path(sys.executable).parent) or "py-spy"
        profiler = subprocess.Popen(
            [py_spy, "record", "--pid", str(bot.pid), "--format", "raw", "--rate", "50", "-o", str(profile)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
    try:
        cpu_before = bot.ask("cpu")
        if mode == "single":
            bodies = [json.dumps(event).encode() for event in events]
            concurrency = SINGLE_CONCURRENCY
        else:
            bodies = [json.dumps(events[i : i + ARRAY_SIZE]).encode() for i in range(0, len(events), ARRAY_SIZE)]
            concurrency = ARRAY_CONCURRENCY
        load = asyncio.run(post_bodies(bot.url, bodies, concurrency, fault if fault_name == "db-cut" else None))
        if fault is not None and fault_name == "db-cut-dms":
            asyncio.run(cut_off_once_posting(slack, fault, load))
        progress = wait_for_prompts(
            slack,
            arguments.reps,
            len(events),
            arguments.timeout,
            arguments.quiet,
            not_before=load.back_at + WATCH_AFTER_RETURN_SECONDS if fault is not None else 0.0,
        )
        report = slack.ask("report")
        cpu = bot.ask("cpu") - cpu_before
        rss = bot.ask("rss")
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C, not on SIGTERM
            profiler.wait(timeout=30)
        bot.stop()
        slack.stop()
        if fault is not None:
            fault.close()
    log = log_path.read_text() if log_path.exists() else ""
    return {
        "mode": mode,
        "fault": fault.what if fault is not None else None,
        "fault_name": fault_name,
        "load": load,
        "requests": len(bodies),
        "events": len(events),
        "progress": progress,
        "report": report,
        "cpu": cpu,
        "rss": rss,
        "log_path": log_path,
        "log_lines": [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line],
    }


# --- printing ---------------------------------------------------------------------------------


def describe(result: dict[str, Any], bare_rate: float, reps: int, per_rep_deals: int) -> bool:
    """Prints the run's figures; False when a deal or a DM was lost or doubled."""
    mode, load = result["mode"], result["load"]
    seconds, latencies = load.seconds, load.latencies
    p50, p99 = percentiles(latencies)
    events_rate = result["events"] / seconds
    requests_rate = result["requests"] / seconds
    if result["fault"] is not None:
        print(
            f"  the database was cut off {load.cut_at - load.first:.1f} s after the first request "
            f"({FAULTS[result['fault_name']]}) and back {load.back_at - load.cut_at:.1f} s later: {result['fault']}"
        )
        print(
            f"  ingest: {seconds:.2f} s for {result['requests']} requests, {events_rate:.0f} events/s; "
            f"answers (refusals included) p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )
    elif mode == "single":
        ratio = requests_rate / bare_rate
        verdict = "met" if ratio >= SINGLE_RATIO_BUDGET else "NOT met"
        print(
            f"  ingest: {requests_rate:7.0f} req/s = {events_rate:7.0f} events/s   p50 {p50:6.1f} ms   "
            f"p99 {p99:6.1f} ms   {ratio:.2f}x bare (budget >= {SINGLE_RATIO_BUDGET}x: {verdict})"
        )
    else:
        verdict = "met" if events_rate >= ARRAY_EVENTS_BUDGET else "NOT met"
        print(
            f"  ingest: {requests_rate:7.0f} req/s = {events_rate:7.0f} events/s   p50 {p50:6.1f} ms   "
            f"p99 {p99:6.1f} ms   (budget >= {ARRAY_EVENTS_BUDGET:,} events/s: {verdict})"
        )
    if result["fault"] is None:
        print(f"          {seconds:.2f} s for {result['requests']} requests")
    duplicates = load.receipts.get("duplicates", 0)
    print(
        f"  events accepted: {load.receipts.get('accepted', 0) + duplicates} ({duplicates} of them as duplicates, "
        f"stored already); refused (503) at their first answer, then accepted when sent again: "
        f"{load.refused_events} ({load.refusals} refusals in all)"
    )

    report, progress = result["report"], result["progress"]
    calls, throttled = report["calls"], report["throttled"]
    total_calls = sum(calls.values())
    per_method = ", ".join(
        f"{method} {count}" + (f" ({throttled[method]} x 429)" if throttled.get(method) else "")
        for method, count in sorted(calls.items())
    )
    print(f"  Slack calls: {total_calls} ({sum(throttled.values())} answered 429): {per_method or 'none'}")
    by_rep = [sum(report["calls_by_rep"].get(rep, {}).values()) for rep in range(reps)]
    worst = max(by_rep)
    verdict = "met" if worst <= CALLS_PER_REP_BUDGET else "NOT met"
    print(
        f"  calls per rep (429s included): min {min(by_rep)}, median {statistics.median(by_rep):g}, "
        f"max {worst}, mean {sum(by_rep) / reps:.2f} (budget <= {CALLS_PER_REP_BUDGET}: {verdict})"
    )
    worst_rep = max(range(reps), key=lambda rep: by_rep[rep])
    print(f"    e.g. rep{worst_rep}: {dict(sorted(report['calls_by_rep'].get(worst_rep, {}).items()))}")

    dm_times = progress["reps_with_dm"]
    if len(dm_times) >= reps:
        last_dm = max(dm_times.values())
        print(
            f"  every rep had a DM {last_dm - load.first:.1f} s after the first request "
            f"({last_dm - load.first - load.seconds:+.1f} s after the last answer)"
        )
    else:
        print(f"  only {len(dm_times)} of {reps} reps had a DM when the wait ended")
    if progress.get("timed_out"):
        print("  (the wait timed out)")

    prompts = [m for m in report["delivered"] if m["rep"] is not None and m["thread_ts"] is None]
    others = [m for m in report["delivered"] if not (m["rep"] is not None and m["thread_ts"] is None)]
    dms_by_rep = Counter(m["rep"] for m in prompts)
    covered_by_rep = Counter()
    for message in prompts:
        covered_by_rep[message["rep"]] += message["covers"]
    lost_deals = sum(max(per_rep_deals - covered_by_rep[rep], 0) for rep in range(reps))
    extra_deals = sum(max(covered_by_rep[rep] - per_rep_deals, 0) for rep in range(reps))
    shown = Counter(number for message in prompts for number in message["shown"])
    shown_twice = sum(1 for count in shown.values() if count > 1)
    contents = Counter(m["content_key"] for m in report["delivered"])
    doubled_messages = sum(count - 1 for count in contents.values() if count > 1)
    posts = Counter(m["message_id"] for m in report["delivered"] if m["message_id"] is not None)
    posted_twice = sum(count - 1 for count in posts.values() if count > 1)
    reps_without = sum(1 for rep in range(reps) if dms_by_rep[rep] == 0)
    per_rep = [dms_by_rep[rep] for rep in range(reps)]
    print(
        f"  DMs delivered: {len(prompts)} prompts (per rep min {min(per_rep)}, max {max(per_rep)}; "
        f"{sum(m['updates'] for m in prompts)} updates), {len(others)} other messages"
    )
    print(
        f"  lost: {reps_without} reps without a DM, {lost_deals} deals in no DM   "
        f"doubled: {doubled_messages} messages delivered twice, {posted_twice} outbox messages posted twice "
        f"(by their metadata), {extra_deals} deals over {per_rep_deals} a rep, "
        f"{shown_twice} deals listed in two DMs   (all must be 0)"
    )
    if result["fault"] is not None and prompts:
        last_dm = max(m["posted_at"] for m in prompts)
        after_return = last_dm - load.back_at
        when = f"{after_return:.1f} s after" if after_return >= 0 else f"{-after_return:.1f} s before"
        print(
            f"  the last DM {when} the database was back "
            f"({last_dm - load.first - load.seconds:+.1f} s after the last event was accepted)"
        )
    verdict = "met" if result["rss"] < RSS_BUDGET_MIB else "NOT met"
    print(f"  bot: {result['cpu']:.1f} s CPU; peak RSS {result['rss']} MiB (budget < {RSS_BUDGET_MIB} MiB: {verdict})")
    lines = result["log_lines"]
    print(f"  bot log: {len(lines)} warnings/errors ({result['log_path']})")
    for line in lines[:5]:
        print(f"    {line[:220]}")
    return reps_without == lost_deals == doubled_messages == posted_twice == extra_deals == shown_twice == 0


def measure_bare(events: list[dict[str, Any]]) -> float:
    bare = Server(run_bare)
    bodies = [json.dumps(event).encode() for event in events]
    load = asyncio.run(post_bodies(bare.url, bodies, SINGLE_CONCURRENCY))
    bare.stop()
    bare_rate = len(bodies) / load.seconds
    p50, p99 = percentiles(load.latencies)
    print(
        f"bare aiohttp endpoint, one event a request, {SINGLE_CONCURRENCY} connections: "
        f"{bare_rate:7.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms"
    )
    return bare_rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a PostgreSQL URL whose database is recreated; default SQLite")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1, help="runs of each mode")
    parser.add_argument("--bulk-window", default="2s", help="BULK_WINDOW for the bot")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the DMs")
    parser.add_argument(
        "--quiet", type=float, default=5.0, help="seconds Slack must be quiet before the DMs are counted"
    )
    parser.add_argument("--modes", default="single,arrays", help="single, arrays or both")
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"further bursts, one event a request, with the database cut off for {FAULT_SECONDS:g} s: "
        "db-cut (half way through the burst), db-cut-dms (as the DMs go out), both, or none",
    )
    parser.add_argument("--log-dir", help="where the bot's logs are kept (default: a new folder in /tmp)")
    parser.add_argument("--py-spy", help="a folder: profile the bot with py-spy (raw stacks), one file a run")
    arguments = parse_arguments(parser, smoke={"events": 100, "reps": 5, "quiet": 1.0})
    arguments.database = "postgresql" if arguments.database_url else "sqlite"
    faults = [] if arguments.faults == "none" else arguments.faults.split(",")
    if unknown := set(faults) - set(FAULTS):
        parser.error(f"--faults: unknown {', '.join(sorted(unknown))}; give some of {', '.join(FAULTS)}, or none")
    log_dir = Path(arguments.log_dir or tempfile.mkdtemp(prefix="closedlost-burst-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    if arguments.py_spy:
        Path(arguments.py_spy).mkdir(parents=True, exist_ok=True)
    events = make_events(arguments.events, arguments.reps)
    per_rep_deals = arguments.events // arguments.reps

    print(
        f"burst: {arguments.events} closed-lost events for {arguments.reps} reps, database {arguments.database}, "
        f"BULK_WINDOW={arguments.bulk_window}, fake Slack with Slack's rate limits"
    )
    exact = True
    with tempfile.TemporaryDirectory() as folder:
        for round_number in range(1, arguments.rounds + 1):
            # Measured next to each round: others share the machine, and its speed drifts.
            bare_rate = measure_bare(events)
            for mode in arguments.modes.split(","):
                connections = SINGLE_CONCURRENCY if mode == "single" else ARRAY_CONCURRENCY
                shape = "one event a request" if mode == "single" else f"arrays of {ARRAY_SIZE}"
                print(f"closedlost, {shape}, {connections} connections (round {round_number}):")
                result = run_once(mode, events, arguments, Path(folder), log_dir, round_number)
                exact = describe(result, bare_rate, arguments.reps, per_rep_deals) and exact
            for fault_name in faults:
                print(
                    f"closedlost, one event a request, {SINGLE_CONCURRENCY} connections, the database cut off for "
                    f"{FAULT_SECONDS:g} s {FAULTS[fault_name]} ({fault_name}, round {round_number}):"
                )
                result = run_once("single", events, arguments, Path(folder), log_dir, round_number, fault_name)
                exact = describe(result, bare_rate, arguments.reps, per_rep_deals) and exact
    if not exact:
        print("burst: some deals or DMs were lost or doubled (see above)")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
