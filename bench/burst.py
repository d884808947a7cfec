"""A 10,000-deal bulk closure for 50 reps, against a fake Slack that enforces Slack's rate limits
(README.md, "Benchmarks and their budgets"), beside a bare aiohttp endpoint measured in the same run.

    .venv/bin/python bench/burst.py [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/closedlost_bench_burst]
                                    [--events 10000] [--reps 50] [--rounds 1] [--bulk-window 2s]
                                    [--quiet 5] [--log-dir DIR] [--py-spy DIR] [--smoke]

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
"""

import argparse
import asyncio
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from harness import Server, parse_arguments, run_bot, serve, sign_deals
from limited_slack import DEAL_NAME, rep_email, run_limited_slack

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


# --- the database ------------------------------------------------------------------------------


async def recreate_postgres(database_url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

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


async def post_bodies(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, float, list[float], Counter]:
    """Posts each body once over `concurrency` connections. Returns when the first request went,
    the seconds they all took, each one's response time, and the answers' accepted/duplicates."""
    latencies: list[float] = []
    receipts: Counter[str] = Counter()
    pending = iter(bodies)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def worker() -> None:
            for body in pending:
                started = time.perf_counter()
                async with http.post(f"{url}/webhooks/deals", data=body, headers=sign_deals(body)) as response:
                    answer = await response.read()
                    if response.status != 202:
                        raise RuntimeError(f"the webhook answered {response.status}: {answer[:300]!r}")
                latencies.append(time.perf_counter() - started)
                receipts.update(json.loads(answer))

        first = time.time()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return first, time.perf_counter() - started, latencies, receipts


def percentiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return statistics.median(ordered) * 1000, ordered[max(int(len(ordered) * 0.99) - 1, 0)] * 1000


# --- one run ----------------------------------------------------------------------------------


def wait_for_prompts(slack: Server, reps: int, expected_deals: int, timeout: float, quiet_for: float) -> dict[str, Any]:
    """Polls the fake until every rep has a DM and they cover every deal, and Slack has been quiet
    for `quiet_for` seconds (a duplicate would come in that time); or until nothing happened for
    PATIENCE_SECONDS, or `timeout`."""
    deadline = time.time() + timeout
    while True:
        progress = slack.ask("progress")
        now = time.time()
        quiet = now - progress["last_call"] if progress["last_call"] else 0.0
        complete = len(progress["reps_with_dm"]) >= reps and progress["deals_covered"] >= expected_deals
        if (complete and quiet >= quiet_for) or quiet >= PATIENCE_SECONDS or now > deadline:
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
) -> dict[str, Any]:
    name = f"{mode}-{round_number}"
    database_url = fresh_database(arguments.database_url, folder, name)
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
        first, seconds, latencies, receipts = asyncio.run(post_bodies(bot.url, bodies, concurrency))
        answered = first + seconds
        progress = wait_for_prompts(slack, arguments.reps, len(events), arguments.timeout, arguments.quiet)
        report = slack.ask("report")
        cpu = bot.ask("cpu") - cpu_before
        rss = bot.ask("rss")
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C, not on SIGTERM
            profiler.wait(timeout=30)
        bot.stop()
        slack.stop()
    log = log_path.read_text() if log_path.exists() else ""
    return {
        "mode": mode,
        "seconds": seconds,
        "requests": len(bodies),
        "events": len(events),
        "latencies": latencies,
        "receipts": dict(receipts),
        "first": first,
        "answered": answered,
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
    mode, seconds, latencies = result["mode"], result["seconds"], result["latencies"]
    p50, p99 = percentiles(latencies)
    events_rate = result["events"] / seconds
    requests_rate = result["requests"] / seconds
    if mode == "single":
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
    receipts = result["receipts"]
    print(
        f"          {seconds:.2f} s for {result['requests']} requests; answers: {receipts.get('accepted', 0)} "
        f"accepted, {receipts.get('duplicates', 0)} duplicates"
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
            f"  every rep had a DM {last_dm - result['first']:.1f} s after the first request "
            f"({last_dm - result['answered']:+.1f} s after the last answer)"
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
    reps_without = sum(1 for rep in range(reps) if dms_by_rep[rep] == 0)
    per_rep = [dms_by_rep[rep] for rep in range(reps)]
    print(
        f"  DMs delivered: {len(prompts)} prompts (per rep min {min(per_rep)}, max {max(per_rep)}; "
        f"{sum(m['updates'] for m in prompts)} updates), {len(others)} other messages"
    )
    print(
        f"  lost: {reps_without} reps without a DM, {lost_deals} deals in no DM   "
        f"duplicated: {doubled_messages} messages delivered twice, {extra_deals} deals over {per_rep_deals} a rep, "
        f"{shown_twice} deals listed in two DMs   (all must be 0)"
    )
    verdict = "met" if result["rss"] < RSS_BUDGET_MIB else "NOT met"
    print(f"  bot: {result['cpu']:.1f} s CPU; peak RSS {result['rss']} MiB (budget < {RSS_BUDGET_MIB} MiB: {verdict})")
    lines = result["log_lines"]
    print(f"  bot log: {len(lines)} warnings/errors ({result['log_path']})")
    for line in lines[:5]:
        print(f"    {line[:220]}")
    return reps_without == lost_deals == doubled_messages == extra_deals == shown_twice == 0


def measure_bare(events: list[dict[str, Any]]) -> float:
    bare = Server(run_bare)
    bodies = [json.dumps(event).encode() for event in events]
    _, seconds, latencies, _ = asyncio.run(post_bodies(bare.url, bodies, SINGLE_CONCURRENCY))
    bare.stop()
    bare_rate = len(bodies) / seconds
    p50, p99 = percentiles(latencies)
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
    parser.add_argument("--log-dir", help="where the bot's logs are kept (default: a new folder in /tmp)")
    parser.add_argument("--py-spy", help="a folder: profile the bot with py-spy (raw stacks), one file a run")
    arguments = parse_arguments(parser, smoke={"events": 100, "reps": 5, "quiet": 1.0})
    arguments.database = "postgresql" if arguments.database_url else "sqlite"
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
    if not exact:
        print("burst: some deals or DMs were lost or doubled (see above)")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
