"""Ack latency of a button click and a modal submit, beside a bare Bolt `ack()` handler (README.md,
"Benchmarks and their budgets").

    .venv/bin/python bench/ack.py [--requests 1000] [--sequential-requests 500] [--concurrency 10]
                                  [--deals 200] [--database-url postgresql+asyncpg://…] [--smoke]

Each server runs in its own process (the load generator in this one), beside a fake Slack Web API in
a third. The baseline is an AsyncApp whose listeners only `await ack()`, served by aiohttp through
Bolt's aiohttp adapter as the bot is. Before measuring the bot, closed-lost deals are posted to
/webhooks/deals and their DMs delivered, so that clicks and submissions find real losses, owned by
the user who sends them. For three cases, one request at a time and then a few at once, it prints
requests/s and p50/p99 response times for both servers, the bot's p99 over the baseline's (budget
2x), how far that p99 is under Slack's 3 s, what the answers were, each server's CPU time per
request (work done after the ack included), and the bot's peak RSS:

- a click on Log reason in the DM (the bot acks, then opens the modal in the background);
- a valid submission of the reason modal (the bot stores the reason before it acks). Each is made
  on the loss's latest revision, as if the modal had been opened afresh: the first one for a loss is
  its first answer, later ones are edits, and none is refused as already saved;
- an invalid submission ("n/a"), answered with `response_action: errors`.

Cases run one after another, each once the Slack calls left over from the one before are done; the
time those took after the last answer is printed too. Bolt's listener runner looks for the ack every
10 ms (`asyncio_runner.py`), so no request is answered in under ~10 ms, and a listener that acks
after more than 10 ms of work waits for the next look: one request at a time tops out near 80/s.
"""

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from harness import BOT_TOKEN, SIGNING_SECRET, Server, parse_arguments, run_bot, run_fake_slack, serve, sign_deals
from slack_sdk.signature import SignatureVerifier

from bot.views import ids

SLACK_DEADLINE_MS = 3000
PROMPTS_WAIT_SECONDS = 120.0
GOOD_EXPLANATION = (
    "Their CFO froze new spending until the Q3 reorganisation is done; the champion wants to restart then."
)
VAGUE_EXPLANATION = "n/a"
# Prompts go out on the first tick after the deals arrive, not after the default BULK_WINDOW (2m).
BOT_SETTINGS = {"bulk_window": "0s", "prompt_anytime": True, "scheduler_tick": "1s"}


# --- servers, each in its own process --------------------------------------------------------


def run_bare_bolt(pipe: Any, slack_url: str) -> None:
    """The baseline: Bolt's request verification and routing, and listeners that only ack."""
    from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
    from slack_bolt.async_app import AsyncAck, AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    bolt_app = AsyncApp(client=AsyncWebClient(token=BOT_TOKEN, base_url=slack_url), signing_secret=SIGNING_SECRET)

    async def only_ack(ack: AsyncAck) -> None:
        await ack()

    bolt_app.action(ids.LOG_REASON)(only_ack)
    bolt_app.view(ids.REASON_MODAL)(only_ack)

    async def slack_events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt_app.async_dispatch(await to_bolt_request(request)))

    app = web.Application()
    app.router.add_post("/slack/events", slack_events)
    serve(app, pipe)


@dataclass
class LossRef:
    """A loss as a click or a submission names it; `revision` is the one a modal would open on."""

    id: int
    owner: str
    channel: str
    ts: str
    revision: int = 0


def stand_in_losses(count: int) -> list[LossRef]:
    """For the bare app, which reads nothing from the payload."""
    return [
        LossRef(number, f"U{number % 50:08d}", f"D{number % 50:08d}", f"{number}.000100") for number in range(count)
    ]


async def seed_losses(bot_url: str, database_url: str, count: int) -> list[LossRef]:
    """Posts `count` closed-lost deals and waits until the bot has sent each its DM. Deal ids carry
    the run's start time, so that a reused PostgreSQL database does not count them as duplicates."""
    prefix = f"bench-ack-{int(time.time())}-"
    deals = [
        {
            "deal_id": f"{prefix}{number}",
            "name": f"Deal {number}",
            "stage": "closed_lost",
            "amount": 1000 + number,
            "currency": "USD",
            "owner_slack_id": f"U{number % 50:08d}",
        }
        for number in range(count)
    ]
    async with aiohttp.ClientSession() as http:
        for start in range(0, count, 100):
            body = json.dumps(deals[start : start + 100]).encode()
            async with http.post(f"{bot_url}/webhooks/deals", data=body, headers=sign_deals(body)) as response:
                if response.status != 202:
                    raise SystemExit(f"/webhooks/deals answered {response.status}: {await response.text()}")
    return await wait_for_prompts(database_url, prefix, count)


async def wait_for_prompts(database_url: str, prefix: str, count: int) -> list[LossRef]:
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import create_async_engine

    from storage.models import Deal, Loss, Message

    query = (
        select(Loss.id, Deal.owner_slack_id, Message.channel, Message.ts)
        .join(Deal, Deal.id == Loss.deal_id)
        .join(Message, Message.id == Loss.prompt_message_id)
        .where(Deal.external_id.startswith(prefix), Message.ts.is_not(None))
        .order_by(Loss.id)
    )
    engine = create_async_engine(database_url)
    deadline = time.monotonic() + PROMPTS_WAIT_SECONDS
    try:
        while True:
            async with engine.connect() as connection:
                rows = (await connection.execute(query)).all()
            if len(rows) == count:
                return [LossRef(*row) for row in rows]
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(rows)} of {count} prompts were sent after {PROMPTS_WAIT_SECONDS:.0f} s")
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


# --- Slack's requests ------------------------------------------------------------------------


def signed_form(payload: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """An interactivity request as Slack sends it: `payload=` + URL-encoded JSON, signed."""
    body = "payload=" + quote(json.dumps(payload))
    ts = str(int(time.time()))
    headers = {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=ts, body=body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return body, headers


def click(loss: LossRef) -> dict[str, Any]:
    """The deal's owner clicks Log reason on the DM the bot sent."""
    return {
        "type": "block_actions",
        "user": {"id": loss.owner, "username": "rep", "name": "rep", "team_id": "T1"},
        "api_app_id": "A1",
        "token": "legacy",
        "container": {"type": "message", "message_ts": loss.ts, "channel_id": loss.channel, "is_ephemeral": False},
        "trigger_id": "1234.5678.trigger",
        "team": {"id": "T1", "domain": "bench"},
        "channel": {"id": loss.channel, "name": "directmessage"},
        "message": {"type": "message", "ts": loss.ts, "text": "", "blocks": []},
        "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/T1/1/abc",
        "actions": [
            {"action_id": ids.LOG_REASON, "block_id": "b", "value": str(loss.id), "type": "button", "action_ts": "1.2"}
        ],
    }


def submission(loss: LossRef, explanation: str) -> dict[str, Any]:
    """The owner submits the reason modal, opened on the loss's current revision, with reason Timing."""
    revisit = (datetime.now(UTC).date() + timedelta(days=90)).isoformat()
    values = {
        ids.REASON_BLOCK: {
            ids.REASON_SELECT: {
                "type": "static_select",
                "selected_option": {"text": {"type": "plain_text", "text": "Bad timing"}, "value": "timing"},
            }
        },
        ids.EXPLANATION_BLOCK: {ids.EXPLANATION_INPUT: {"type": "plain_text_input", "value": explanation}},
        f"{ids.REVISIT_BLOCK_PREFIX}_timing": {ids.REVISIT_INPUT: {"type": "datepicker", "selected_date": revisit}},
    }
    view = {
        "id": f"VBENCH{loss.id}R{loss.revision}",
        "hash": "h",
        "type": "modal",
        "callback_id": ids.REASON_MODAL,
        "private_metadata": json.dumps({"loss_id": loss.id, "revision": loss.revision}),
        "blocks": [],
        "state": {"values": values},
    }
    return {
        "type": "view_submission",
        "team": {"id": "T1", "domain": "bench"},
        "user": {"id": loss.owner, "username": "rep", "name": "rep", "team_id": "T1"},
        "api_app_id": "A1",
        "token": "legacy",
        "trigger_id": "1234.5678.trigger",
        "view": view,
        "response_urls": [],
        "is_enterprise_install": False,
    }


@dataclass(frozen=True)
class Case:
    name: str
    payload: Callable[[LossRef], dict[str, Any]]
    answer: str
    """What every request of the case must be answered (see `describe_answer`)."""


CASES = [
    Case("button click (log_reason)", click, "ack"),
    Case("modal submit, valid", lambda loss: submission(loss, GOOD_EXPLANATION), "ack"),
    Case("modal submit, invalid", lambda loss: submission(loss, VAGUE_EXPLANATION), "response_action errors"),
]


# --- load -------------------------------------------------------------------------------------


@dataclass
class Result:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    drained_after: float = 0.0
    """Seconds the server went on calling Slack after its last answer (work done after the ack)."""
    cpu_seconds: float = 0.0
    """The server process's CPU time over the run and the work it left behind."""

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(int(len(ordered) * fraction) - 1, 0)] * 1000

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_seconds / len(self.latencies) * 1000


async def measure(url: str, case: Case, losses: list[LossRef], count: int, concurrency: int) -> Result:
    """Sends `count` requests from `concurrency` workers. Each worker owns every `concurrency`th loss,
    so no two requests for one loss are ever in flight together; a stored reason moves its loss to the
    next revision, so that the next valid submission for it is a new answer, not a duplicate."""
    result = Result(seconds=0.0)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def worker(number: int) -> None:
            mine = losses[number::concurrency]
            for turn in range(len(range(number, count, concurrency))):
                loss = mine[turn % len(mine)]
                payload = case.payload(loss)
                body, headers = signed_form(payload)
                started = time.perf_counter()
                async with http.post(f"{url}/slack/events", data=body, headers=headers) as response:
                    answer = describe_answer(response.status, await response.text())
                result.latencies.append(time.perf_counter() - started)
                result.answers[answer] += 1
                if answer == "ack" and payload["type"] == "view_submission":
                    loss.revision += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(number) for number in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


def describe_answer(status: int, text: str) -> str:
    """Names an answer: "ack" for an empty 200, the `response_action` of a 200 that has one, else the status."""
    if status != 200:
        return f"HTTP {status}"
    if not text:
        return "ack"
    action = json.loads(text).get("response_action", "a body")
    return "response_action update (already saved)" if action == "update" else f"response_action {action}"


def measure_all(
    server: Server, slack: Server, losses: list[LossRef], runs: dict[int, int]
) -> dict[tuple[str, int], Result]:
    """Each case in turn, once the work left over from the one before (modals to open, DMs to
    update) is done, so that a case is not measured against another's backlog."""
    results = {}
    for concurrency, count in runs.items():
        for case in CASES:
            cpu_before = server.ask("cpu")
            result = asyncio.run(measure(server.url, case, losses, count, concurrency))
            result.drained_after = wait_until_quiet(slack)
            result.cpu_seconds = server.ask("cpu") - cpu_before
            results[case.name, concurrency] = result
    return results


def wait_until_quiet(slack: Server, quiet: float = 0.5, timeout: float = 120.0) -> float:
    """Waits until the fake Slack has had no call for `quiet` seconds; returns how long that took,
    less the quiet time itself: how long the server went on calling Slack after its last answer."""
    started = time.monotonic()
    last_change = started
    calls = slack.ask("calls")
    while time.monotonic() - last_change < quiet and time.monotonic() - started < timeout:
        time.sleep(0.05)
        now = slack.ask("calls")
        if now != calls:
            calls, last_change = now, time.monotonic()
    return last_change - started


# --- report -----------------------------------------------------------------------------------


def print_case(name: str, concurrency: int, bare: Result, bot: Result) -> None:
    at_once = "one at a time" if concurrency == 1 else f"{concurrency} at once"
    print(f"{name}, {at_once}")
    for label, result in (("bare Bolt ack()", bare), ("closedlost", bot)):
        answers = ", ".join(f"{n} {answer}" for answer, n in result.answers.most_common())
        print(
            f"  {label:<16} {result.rate:7.0f} req/s   p50 {result.percentile(0.5):6.1f} ms"
            f"   p99 {result.percentile(0.99):6.1f} ms   ({answers})"
        )
    work = f"  server CPU per request: bare {bare.cpu_ms_per_request:.1f} ms, bot {bot.cpu_ms_per_request:.1f} ms"
    if bot.drained_after >= 0.1:
        work += f"; the bot went on calling Slack {bot.drained_after:.1f} s after its last answer"
    print(work)
    ratio = bot.percentile(0.99) / bare.percentile(0.99)
    verdict = "within" if ratio <= 2 else "OVER"
    margin = SLACK_DEADLINE_MS / bot.percentile(0.99)
    print(
        f"  p99 ratio {ratio:.2f}x, {verdict} the 2x budget; the bot's p99 is {margin:.0f}x under Slack's 3 s"
        f" ({'far under' if margin >= 10 else 'NOT far under'})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per case and server, sent concurrently")
    parser.add_argument(
        "--sequential-requests", type=int, default=500, help="requests per case and server, sent one at a time"
    )
    parser.add_argument("--deals", type=int, default=200, help="closed-lost deals posted before measuring the bot")
    parser.add_argument("--concurrency", type=int, default=10, help="requests in flight in the concurrent runs")
    parser.add_argument("--database-url", help="defaults to a SQLite file in a temporary folder")
    arguments = parse_arguments(parser, smoke={"requests": 20, "sequential_requests": 10, "deals": 10})
    # One at a time, Bolt answers at most ~80 requests/s (see the docstring), so fewer are sent.
    runs = {1: arguments.sequential_requests, arguments.concurrency: arguments.requests}

    with tempfile.TemporaryDirectory() as folder:
        database_url = arguments.database_url or f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        print(
            f"ack latency, {arguments.sequential_requests} requests a case one at a time and {arguments.requests}"
            f" {arguments.concurrency} at once, {arguments.deals} deals,"
            f" database {database_url.split(':')[0]}"
        )
        slack = Server(run_fake_slack)
        bare = Server(run_bare_bolt, f"{slack.url}/api/")
        bare_results = measure_all(bare, slack, stand_in_losses(arguments.deals), runs)
        bare.stop()

        bot = Server(run_bot, database_url, f"{slack.url}/api/", BOT_SETTINGS)
        losses = asyncio.run(seed_losses(bot.url, database_url, arguments.deals))
        wait_until_quiet(slack)
        bot_results = measure_all(bot, slack, losses, runs)
        print()
        for concurrency in runs:
            for case in CASES:
                key = (case.name, concurrency)
                print_case(case.name, concurrency, bare_results[key], bot_results[key])
        # The bare app acks everything; the bot must answer each case as it does for Slack.
        wrong = [
            f"{case.name}, {concurrency} at once: {dict(bot_results[case.name, concurrency].answers)}"
            for concurrency in runs
            for case in CASES
            if set(bot_results[case.name, concurrency].answers) != {case.answer}
        ]
        print(f"closedlost peak RSS: {bot.ask('rss')} MiB (budget < 150 MiB under a burst)")
        calls = ", ".join(f"{method} {n}" for method, n in sorted(slack.ask("calls").items()))
        print(f"fake Slack calls (both servers): {calls}")
        bot.stop()
        slack.stop()
    for line in wrong:
        print(f"ack: closedlost answered other than expected: {line}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
