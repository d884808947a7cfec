"""`/closedlost stats` and App Home on 1,000,000 closed deals, each beside the same aggregate run as
raw SQL on the same database in the same run (README.md, "Benchmarks and their budgets").

    .venv/bin/python bench/stats.py [--deals 1000000] [--reps 200] [--repeat 15]
                                    [--database-url postgresql+asyncpg://…] [--smoke]

Fills the database (an empty one, or one this script filled before with the same --deals and
--reps, which is then reused; one filled before revisits were stored is filled again) with closed
deals spread over five years: 70% lost, 30% won, amounts in USD, EUR and GBP, most losses with a
reason (some edited once, half of those re-coded by a manager; a few picks kept over a suggestion),
revisit dates on half of those whose reason has a revisit delay. Each such date makes a revisit as
storing the reason does: due while its date is ahead, answered once it has passed (mostly dropped,
some snoozed, some won back). Losses still awaiting a reason are due for escalation three days
after their prompt; a few prompts could not be delivered. It prints the fill's rows/s. Then the bot
runs in its own process, as `closedlost serve` builds it, and this process sends it signed requests
over HTTP, one at a time:

- `/closedlost stats 30d`, `stats all`, `stats 90d @user`: from sending the command to its
  ephemeral answer reaching the command's response_url (the fake Slack, in this process);
- App Home: from sending `app_home_opened` to the `views.publish` call reaching the fake Slack Web
  API, which runs in this process;
- the digest build: `build_digest` for the last full week and its Block Kit message, called in this
  process as the scheduler calls it (no HTTP request leads to it), on the bot's own engine settings;
- the digest with its chart (the twelve weeks' counts, then the PNG drawn as posting draws it),
  beside the digest alone, both in this process; and the bot's idle RSS before and after it draws
  a chart (of the last full week, on its database).

Before each request the same SQL runs here straight on the database driver (sqlite3 or asyncpg),
without SQLAlchemy, HTTP or Slack: the baseline. For App Home that is its four statements in a
row, for the digest its twelve. Prints p50 and the fastest of --repeat runs for both, their ratio
(budget 2x), what the chart adds to the digest (budget < 1 s), and the bot's RSS (budget < 150 MiB,
idle after a chart is drawn too). Other work on the machine shows up in these figures: run it
more than once.
"""

import argparse
import asyncio
import concurrent.futures
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
from aiohttp import web
from harness import BOT_TOKEN, DEALS_SECRET, SIGNING_SECRET, Server, parse_arguments, serve
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import create_app
from bot.periods import Week, last_full_week
from bot.reasons import DEFAULT_REASONS, Catalogue
from bot.services.digest import REVISITS_AHEAD, REVISITS_LISTED, WIN_BACKS_LISTED, build_digest
from bot.services.digest_chart import loss_trend
from bot.services.home import REVISITS_SHOWN
from bot.services.revisits import SNOOZE, first_moment
from bot.settings import Settings
from bot.views.chart import draw_loss_chart
from bot.views.digest import build_digest_message
from storage.engine import create_engine, create_session_factory
from storage.migrate import upgrade_to_head
from storage.models import ClosedSummaryChange, Deal, Loss, ReasonEntry, Revisit, RevisitState

YEARS = 5
TZ = ZoneInfo("UTC")  # the TIMEZONE setting's default, which the bot below runs with
CHUNK = 20_000
REP = "U00000007"
CURRENCIES = (("USD", 0.7), ("EUR", 0.2), ("GBP", 0.1))
REASON_WEIGHTS = {
    "price": 25,
    "competitor": 20,
    "timing": 12,
    "no_decision": 15,
    "missing_feature": 10,
    "no_need": 6,
    "poor_fit": 4,
    "no_champion": 4,
    "terms": 2,
    "other": 2,
}
REVISIT_DAYS = {reason.code: reason.revisit_after_days for reason in DEFAULT_REASONS}
ESCALATED_AFTER = timedelta(days=3)
NUDGE_HOUR = 9  # the start of working hours, in the TIMEZONE (UTC) the bot below runs with
ANSWERS = (RevisitState.DROPPED, RevisitState.REOPENED, RevisitState.SNOOZED)
ANSWER_WEIGHTS = (60, 15, 25)
TABLES = ("deal", "loss", "reason_entry", "revisit")
SUMMARY_TABLES = ("closed_summary", "closed_summary_change")
SUMMARY_WAIT = timedelta(minutes=30)

# --- the same aggregates as raw SQL ------------------------------------------------------------
# What storage/stats.py asks SQLAlchemy to run, written out by hand; `?` marks a parameter.

CLOSED_GROUPS = """
SELECT 'lost', l.state, re.reason_code, d.currency, count(*), sum(d.amount)
FROM loss l JOIN deal d ON d.id = l.deal_id LEFT OUTER JOIN reason_entry re ON re.loss_id = l.id
WHERE l.state != 'cancelled' AND {lost}
  AND NOT EXISTS (SELECT 1 FROM reason_entry later WHERE later.loss_id = re.loss_id AND later.revision > re.revision)
GROUP BY l.state, re.reason_code, d.currency
UNION ALL
SELECT 'won', NULL, NULL, d.currency, count(*), sum(d.amount)
FROM deal d WHERE d.stage = 'closed_won' AND {won}
GROUP BY d.currency
"""
QUALITY = """
SELECT d.owner_slack_id, count(DISTINCT CASE WHEN re.confirmed_over IS NOT NULL THEN re.loss_id END),
  count(DISTINCT CASE WHEN re.recoded THEN re.loss_id END)
FROM reason_entry re JOIN loss l ON l.id = re.loss_id JOIN deal d ON d.id = l.deal_id
WHERE (re.recoded OR re.confirmed_over IS NOT NULL) AND l.state != 'cancelled' AND {lost}
GROUP BY d.owner_slack_id
"""
AWAITING = """
WITH mine AS MATERIALIZED (
  SELECT l.id, l.deal_id, l.lost_at FROM loss l JOIN deal d ON d.id = l.deal_id
  WHERE d.owner_slack_id = ? AND l.state = 'awaiting'
)
SELECT mine.id, d.name, d.account, d.amount, d.currency, mine.lost_at, (SELECT count(*) FROM mine)
FROM mine JOIN deal d ON d.id = mine.deal_id ORDER BY mine.lost_at DESC, mine.id DESC LIMIT 20
"""
REVISITS = """
SELECT l.id, r.due_on, d.name, d.amount, d.currency, d.owner_slack_id, re.reason_code, count(*) OVER ()
FROM revisit r JOIN loss l ON l.id = r.loss_id JOIN deal d ON d.id = l.deal_id JOIN reason_entry re ON re.loss_id = l.id
WHERE r.state IN ('due', 'snoozed') AND r.due_on >= ? AND {narrower}
  AND NOT EXISTS (SELECT 1 FROM reason_entry later WHERE later.loss_id = re.loss_id AND later.revision > re.revision)
"""
CURRENT_ANSWERS = """
FROM loss l JOIN deal d ON d.id = l.deal_id JOIN reason_entry re ON re.loss_id = l.id
WHERE l.state = 'logged' AND l.lost_at >= ? AND l.lost_at < ?
  AND NOT EXISTS (SELECT 1 FROM reason_entry later WHERE later.loss_id = re.loss_id AND later.revision > re.revision)
"""
DETAILS = f"""
SELECT re.detail_key, trim(re.detail), count(*) {CURRENT_ANSWERS} AND re.reason_code = ? AND re.detail_key IS NOT NULL
GROUP BY re.detail_key, trim(re.detail)
"""
DELAYS = """
SELECT coalesce(prompted_at, lost_at), logged_at FROM loss WHERE state = 'logged' AND lost_at >= ? AND lost_at < ?
"""
OVERDUE = """
SELECT d.owner_slack_id, count(*) FROM loss l JOIN deal d ON d.id = l.deal_id
WHERE l.state = 'awaiting' AND (l.escalation_due_at <= ? OR l.delivery_error IS NOT NULL)
GROUP BY d.owner_slack_id ORDER BY count(*) DESC, d.owner_slack_id
"""
REP_GROUPS = """
SELECT d.owner_slack_id, re.reason_code, count(*)
FROM loss l JOIN deal d ON d.id = l.deal_id LEFT OUTER JOIN reason_entry re ON re.loss_id = l.id
WHERE l.state != 'cancelled' AND l.lost_at >= ? AND l.lost_at < ?
  AND NOT EXISTS (SELECT 1 FROM reason_entry later WHERE later.loss_id = re.loss_id AND later.revision > re.revision)
GROUP BY d.owner_slack_id, re.reason_code
"""
WIN_BACKS = """
SELECT d.name, d.amount, d.currency, d.owner_slack_id, r.closed_at, count(*) OVER ()
FROM revisit r JOIN loss l ON l.id = r.loss_id JOIN deal d ON d.id = l.deal_id
WHERE r.state = 'reopened' AND r.closed_at >= ? AND r.closed_at < ?
"""
LARGEST = f"""
SELECT d.name, d.amount, d.currency, re.logged_by, re.reason_code, re.explanation {CURRENT_ANSWERS}
  AND d.amount IS NOT NULL ORDER BY d.amount DESC, l.id LIMIT 3
"""


class RawDatabase:
    """The database through its plain driver, with parameters spelled for it."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self.postgresql = url.get_backend_name() == "postgresql"
        self._url = url
        self._sqlite: sqlite3.Connection | None = None
        self._pg: asyncpg.Connection | None = None

    async def open(self) -> None:
        if self.postgresql:
            url = self._url
            # No statement cache: each statement is planned for its values, as the bot's are
            # (storage/engine.py), rather than switching to a generic plan after five runs.
            self._pg = await asyncpg.connect(
                host=url.host,
                port=url.port,
                user=url.username,
                password=url.password,
                database=url.database,
                statement_cache_size=0,
            )
        else:
            self._sqlite = sqlite3.connect(self._url.database or "")

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
        if self._sqlite is not None:
            self._sqlite.close()

    async def rows(self, sql: str, params: list[Any]) -> list[Any]:
        if self._pg is not None:
            parts = sql.split("?")
            numbered = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))
            return list(await self._pg.fetch(numbered, *params))
        assert self._sqlite is not None
        # SQLAlchemy stores SQLite datetimes as naive UTC text; compare in that form.
        values = [
            value.astimezone(UTC).replace(tzinfo=None).isoformat(" ") if isinstance(value, datetime) else value
            for value in params
        ]
        return self._sqlite.execute(sql, values).fetchall()

    async def closed_groups(self, since: datetime | None, until: datetime, owner: str | None) -> list[Any]:
        """The closed deals' groups, then the quality figures (bot.services.stats.read_closed_stats)."""
        lost, won, params = ["l.lost_at < ?"], ["d.stage_changed_at < ?"], [until]
        if since is not None:
            lost.append("l.lost_at >= ?")
            won.append("d.stage_changed_at >= ?")
            params.append(since)
        if owner is not None:
            lost.append("d.owner_slack_id = ?")
            won.append("d.owner_slack_id = ?")
            params.append(owner)
        sql = CLOSED_GROUPS.format(lost=" AND ".join(lost), won=" AND ".join(won))
        groups = await self.rows(sql, params + params)
        await self.rows(QUALITY.format(lost=" AND ".join(lost)), params)
        return groups

    async def home(self, owner: str, today: date, now: datetime) -> None:
        await self.rows(AWAITING, [owner])
        revisits = REVISITS.format(narrower="d.owner_slack_id = ?")
        await self.rows(revisits + f" ORDER BY r.due_on, l.id LIMIT {REVISITS_SHOWN}", [today, owner])
        await self.closed_groups(now - timedelta(days=90), now, owner)

    async def digest(self, week: Week, now: datetime, tz: ZoneInfo) -> None:
        """bot.services.digest.build_digest's statements, in its order."""
        since, until = week.period.since, week.period.until
        previous = week.before(tz).period
        today = now.astimezone(tz).date()
        await self.closed_groups(since, until, None)
        await self.closed_groups(previous.since, previous.until, None)
        await self.rows(DETAILS, [since, until, "competitor"])
        await self.rows(DETAILS, [since, until, "missing_feature"])
        await self.rows(DELAYS, [since, until])
        await self.rows(OVERDUE, [now])
        await self.rows(REP_GROUPS, [since, until])
        await self.rows(QUALITY.format(lost="l.lost_at < ? AND l.lost_at >= ?"), [until, since])
        revisits = REVISITS.format(narrower="r.due_on < ?")
        ahead = [today, today + REVISITS_AHEAD]
        await self.rows(revisits + f" ORDER BY r.due_on, l.id LIMIT {REVISITS_LISTED}", ahead)
        await self.rows(WIN_BACKS + f" ORDER BY r.closed_at, r.id LIMIT {WIN_BACKS_LISTED}", [since, until])
        await self.rows(LARGEST, [since, until])


# --- filling the database ------------------------------------------------------------------------


def deal_rows(count: int, reps: int, now: datetime) -> Iterator[tuple[list[dict[str, Any]], ...]]:
    """Chunks of (deals, losses, reason entries, revisits), with ids given here so that no insert has
    to return them. Ids grow with the time of closing, as when the CRM reports each deal as it closes.
    Seeded: every run makes the same data."""
    rng = random.Random(2026)
    codes, weights = list(REASON_WEIGHTS), list(REASON_WEIGHTS.values())
    currencies, currency_weights = zip(*CURRENCIES, strict=True)
    step = timedelta(days=YEARS * 365) / count
    start_at = now - timedelta(days=YEARS * 365)
    loss_id = entry_id = revisit_id = 0
    for start in range(1, count + 1, CHUNK):
        deals, losses, entries, revisits = [], [], [], []
        for deal_id in range(start, min(start + CHUNK, count + 1)):
            changed_at = start_at + step * (deal_id - rng.random())
            lost = rng.random() < 0.7
            owner = f"U{rng.randrange(reps):08d}"
            deals.append(
                {
                    "id": deal_id,
                    "source": "bench",
                    "external_id": str(deal_id),
                    "name": f"Deal {deal_id}",
                    "account": f"Account {deal_id % 50_000}",
                    "amount": Decimal(rng.randrange(1_000, 250_000)),
                    "currency": rng.choices(currencies, currency_weights)[0],
                    "owner_email": None,
                    "owner_slack_id": owner,
                    "stage": "closed_lost" if lost else "closed_won",
                    "stage_changed_at": changed_at,
                    "url": None,
                    "created_at": changed_at,
                    "updated_at": changed_at,
                }
            )
            if not lost:
                continue
            loss_id += 1
            recent = now - changed_at < timedelta(days=14)
            awaiting = rng.random() < (0.4 if recent else 0.03)
            logged_at = min(changed_at + timedelta(hours=rng.randrange(1, 72)), now)
            losses.append(
                {
                    "id": loss_id,
                    "deal_id": deal_id,
                    "lost_at": changed_at,
                    "state": "awaiting" if awaiting else "logged",
                    "prompt_channel": None,
                    "prompt_ts": None,
                    "prompted_at": changed_at,
                    # A few reps could not be sent the prompt; the others are escalated after
                    # ESCALATE_AFTER's 24 working hours, about three days.
                    "delivery_error": "user_not_found" if awaiting and rng.random() < 0.02 else None,
                    "escalation_due_at": changed_at + ESCALATED_AFTER if awaiting else None,
                    "logged_at": None if awaiting else logged_at,
                    "cancelled_at": None,
                    "created_at": changed_at,
                }
            )
            if awaiting:
                continue
            dates: list[date | None] = []
            for revision in range(1, 3 if rng.random() < 0.05 else 2):
                entry_id += 1
                # Half of the edits are a manager's re-code; 3% of the picks were kept over a suggestion.
                recoded = revision == 2 and rng.random() < 0.5
                confirmed_over = "no_decision" if revision == 1 and rng.random() < 0.03 else None
                code = rng.choices(codes, weights)[0]
                days = REVISIT_DAYS.get(code)
                revisit_on = (changed_at + timedelta(days=days)).date() if days and rng.random() < 0.5 else None
                dates.append(revisit_on)
                detail = "Initech" if code == "competitor" else "SSO" if code == "missing_feature" else None
                entries.append(
                    {
                        "id": entry_id,
                        "loss_id": loss_id,
                        "revision": revision,
                        "reason_code": code,
                        "detail": detail,
                        "detail_key": detail.lower() if detail is not None else None,
                        "explanation": "The buyer froze spending until the reorganisation is done next year.",
                        "revisit_on": revisit_on,
                        "logged_by": "U0MANAGER" if recoded else owner,
                        "logged_at": logged_at + timedelta(days=revision - 1),
                        "view_id": None,
                        "recoded": recoded,
                        "confirmed_over": confirmed_over,
                    }
                )
            stored_at = logged_at + timedelta(days=len(dates) - 1)  # when the newest reason was stored
            revisit = revisit_row(rng, loss_id, owner, dates, stored_at, now)
            if revisit is not None:
                revisit_id += 1
                revisits.append({"id": revisit_id} | revisit)
        yield deals, losses, entries, revisits


def revisit_row(
    rng: random.Random, loss_id: int, owner: str, dates: list[date | None], stored_at: datetime, now: datetime
) -> dict[str, Any] | None:
    """The loss's revisit as `record_revisit_date` leaves it after each of its reasons (`dates` are
    their revisit dates, oldest first; the newest was stored at `stored_at`), and as the rep answered
    its nudge once the date has passed: most drop the deal, some snooze it, a few win it back."""
    due_on = dates[-1]
    if due_on is None:
        if not any(dates):
            return None
        return {  # the edit cleared the date
            "loss_id": loss_id,
            "due_on": next(day for day in dates if day),
            "state": RevisitState.DONE,
            "nudge_at": None,
            "snoozes": 0,
            "closed_at": stored_at,
            "closed_by": owner,
            "nudged_at": None,
            "created_at": stored_at,
        }
    revisit: dict[str, Any] = {
        "loss_id": loss_id,
        "due_on": due_on,
        "state": RevisitState.DUE,
        "nudge_at": first_moment(due_on),
        "snoozes": 0,
        "closed_at": None,
        "closed_by": None,
        "nudged_at": None,
        "created_at": stored_at,
    }
    nudged_at = nudge_moment(due_on)
    answered_at = nudged_at + timedelta(hours=rng.randrange(1, 120))
    if nudged_at > now:
        return revisit
    revisit |= {"nudge_at": None, "nudged_at": nudged_at}
    if answered_at > now:
        return revisit  # waiting for the rep's answer
    answer = rng.choices(ANSWERS, ANSWER_WEIGHTS)[0]
    if answer == RevisitState.SNOOZED:
        snoozed_to = answered_at.date() + SNOOZE
        revisit |= {"due_on": snoozed_to, "snoozes": 1}
        if nudge_moment(snoozed_to) > now:
            return revisit | {"state": RevisitState.SNOOZED, "nudge_at": first_moment(snoozed_to)}
        # Asked again 30 days later, the rep answered for good this time.
        answer = rng.choices(ANSWERS[:2], ANSWER_WEIGHTS[:2])[0]
        answered_at = min(answered_at + SNOOZE, now)
    return revisit | {"state": answer, "closed_at": answered_at, "closed_by": owner}


def nudge_moment(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, NUDGE_HOUR, tzinfo=UTC)


async def fill(engine: AsyncEngine, deals: int, reps: int, now: datetime) -> None:
    async with engine.connect() as connection:
        stored = await connection.scalar(select(func.count()).select_from(Deal))
        owners = await connection.scalar(select(func.count(func.distinct(Deal.owner_slack_id))))
        revisits = await connection.scalar(select(func.count()).select_from(Revisit))
    if stored == deals and owners == reps and revisits:
        print(f"  reusing the {deals:,} deals already stored (figures are relative to their fill time)")
        return
    if stored == deals and owners == reps:
        # A fill from before revisits and escalation times were stored: measuring it would time
        # App Home's and the digest's revisit statements on an empty table.
        print(f"  the {deals:,} deals stored have no revisits: filling again")
        await empty(engine)
    elif stored:
        raise SystemExit(f"the database holds {stored:,} deals of {owners} reps: give an empty one")
    started = time.perf_counter()
    tables = (Deal, Loss, ReasonEntry, Revisit)
    counts = [0] * len(tables)
    for chunk in deal_rows(deals, reps, now):
        async with engine.begin() as connection:
            for position, (table, rows) in enumerate(zip(tables, chunk, strict=True)):
                if rows:
                    await connection.execute(insert(table), rows)
                    counts[position] += len(rows)
    seconds = time.perf_counter() - started
    total = sum(counts)
    print(
        f"  fill: {counts[0]:,} deals, {counts[1]:,} losses, {counts[2]:,} reason entries, {counts[3]:,} revisits "
        f"= {total:,} rows in {seconds:.1f} s: {total / seconds:,.0f} rows/s"
    )
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            for name in TABLES:
                await connection.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), (SELECT max(id) FROM {name}))")
                )
    # Fresh planner statistics, as `PRAGMA optimize` (SQLite) or autovacuum (PostgreSQL) keep them;
    # autovacuum also marks the pages all-visible, which lets PostgreSQL answer from indexes alone.
    async with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM ANALYZE"))
        else:
            await connection.execute(text("ANALYZE"))
            await connection.commit()


async def empty(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # TRUNCATE fires no row triggers: the summary is emptied with the rows it counts.
            await connection.execute(text(f"TRUNCATE {', '.join(TABLES + SUMMARY_TABLES)} CASCADE"))
        else:
            for table in reversed(TABLES):
                await connection.execute(text(f"DELETE FROM {table}"))


async def wait_for_summary(database_url: str) -> float:
    """Seconds until no month is left marked changed: the bot's scheduler, which computes the monthly
    summary of stats (`closed_summary`) on its first tick, is done with the months just filled."""
    engine = create_engine(database_url)
    started = time.perf_counter()
    try:
        while True:
            async with engine.connect() as connection:
                left = await connection.scalar(select(func.count()).select_from(ClosedSummaryChange))
            if not left:
                return time.perf_counter() - started
            if time.perf_counter() - started > SUMMARY_WAIT.total_seconds():
                raise SystemExit(f"the bot left {left} months of the summary uncomputed for {SUMMARY_WAIT}")
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


# --- Slack's side ----------------------------------------------------------------------------------


class FakeSlack:
    """Answers the bot's Web API calls, noting when each views.publish and each answer to a slash
    command's response_url arrives."""

    def __init__(self) -> None:
        self.published: asyncio.Queue[float] = asyncio.Queue()
        self.responses: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.response_url = ""

    async def start(self) -> str:
        async def answer(request: web.Request) -> web.Response:
            method = request.match_info["method"]
            if method == "views.publish":
                await request.read()
                self.published.put_nowait(time.perf_counter())
            if method == "auth.test":
                return web.json_response({"ok": True, "user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1"})
            return web.json_response({"ok": True})

        async def response_url(request: web.Request) -> web.Response:
            self.responses.put_nowait((time.perf_counter(), await request.json()))
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_route("*", "/api/{method}", answer)
        app.router.add_post("/commands", response_url)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        self.response_url = f"{base}/commands"
        return f"{base}/api/"

    async def stop(self) -> None:
        await self._runner.cleanup()


def signed(body: str, content_type: str) -> dict[str, str]:
    ts = str(int(time.time()))
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=ts, body=body)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature, "Content-Type": content_type}


async def slash_command(http: aiohttp.ClientSession, url: str, slack: FakeSlack, command_text: str) -> float:
    """From sending the command to its answer reaching the response_url."""
    body = urlencode(
        {
            "token": "legacy",
            "team_id": "T1",
            "team_domain": "bench",
            "channel_id": "C1",
            "channel_name": "sales",
            "user_id": REP,
            "user_name": "rep",
            "command": "/closedlost",
            "text": command_text,
            "api_app_id": "A1",
            "is_enterprise_install": "false",
            "response_url": slack.response_url,
            "trigger_id": "1.2.3",
        }
    )
    headers = signed(body, "application/x-www-form-urlencoded")
    started = time.perf_counter()
    async with http.post(f"{url}/slack/events", data=body, headers=headers) as response:
        await response.read()
        if response.status != 200:
            raise SystemExit(f"/closedlost {command_text} was acknowledged with {response.status}")
    answered, answer = await asyncio.wait_for(slack.responses.get(), timeout=60)
    if answer.get("response_type") != "ephemeral" or "lost" not in answer.get("text", ""):
        raise SystemExit(f"/closedlost {command_text} answered {answer}")
    return answered - started


async def open_home(http: aiohttp.ClientSession, url: str, slack: FakeSlack) -> float:
    body = json.dumps(
        {
            "token": "legacy",
            "team_id": "T1",
            "api_app_id": "A1",
            "event": {"type": "app_home_opened", "user": REP, "channel": "D1", "tab": "home", "event_ts": "1.2"},
            "type": "event_callback",
            "event_id": f"Ev{time.monotonic_ns()}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": "T1", "user_id": "UBOT", "is_bot": True, "is_enterprise_install": False}],
        }
    )
    started = time.perf_counter()
    async with http.post(f"{url}/slack/events", data=body, headers=signed(body, "application/json")) as response:
        await response.read()
        if response.status != 200:
            raise SystemExit(f"app_home_opened answered {response.status}")
    published = await asyncio.wait_for(slack.published.get(), timeout=30)
    return published - started


# --- measuring -------------------------------------------------------------------------------------


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


def timer(call: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[float]]:
    return lambda: timed(call)


async def compare(
    name: str, repeat: int, raw: Callable[[], Awaitable[Any]], bot: Callable[[], Awaitable[float]], note: str = ""
) -> None:
    await raw()  # once to warm the caches of both, as a running bot's would be
    await bot()
    raw_times, bot_times = [], []
    for _ in range(repeat):
        raw_times.append(await timed(raw))
        bot_times.append(await bot())
    raw_p50, bot_p50 = statistics.median(raw_times) * 1000, statistics.median(bot_times) * 1000
    print(
        f"  {name:<18} raw SQL p50 {raw_p50:8.1f} ms (min {min(raw_times) * 1000:7.1f})   "
        f"closedlost p50 {bot_p50:8.1f} ms (min {min(bot_times) * 1000:7.1f})   "
        f"ratio {bot_p50 / raw_p50:5.2f}x{note}"
    )


def digest_builder(engine: AsyncEngine) -> Callable[[], Awaitable[Any]]:
    """The digest for the last full week as the scheduler builds it, and its message as posted."""
    session_factory = create_session_factory(engine)
    catalogue = Catalogue(DEFAULT_REASONS)

    async def build() -> Any:
        now = datetime.now(UTC)
        digest = await build_digest(
            session_factory=session_factory,
            catalogue=catalogue,
            week=last_full_week(now=now, tz=TZ),
            now=now,
            tz=TZ,
            currency="USD",
        )
        return build_digest_message(digest, catalogue).as_kwargs()

    return build


async def chart_cost(engine: AsyncEngine, repeat: int) -> None:
    """The digest with its chart beside the digest alone, as posting builds them (the drawing in a
    thread, as `bot.services.digest_chart` does it), in this process."""
    session_factory = create_session_factory(engine)
    catalogue = Catalogue(DEFAULT_REASONS)
    parts: dict[str, list[float]] = {"counts": [], "drawing": []}
    digest_alone = digest_builder(engine)

    async def with_chart() -> None:
        await digest_alone()
        week = last_full_week(now=datetime.now(UTC), tz=TZ)
        started = time.perf_counter()
        trend = await loss_trend(session_factory=session_factory, catalogue=catalogue, week=week, tz=TZ)
        counted = time.perf_counter()
        await asyncio.to_thread(draw_loss_chart, trend, catalogue)
        parts["counts"].append(counted - started)
        parts["drawing"].append(time.perf_counter() - counted)

    await digest_alone()
    first = await timed(with_chart)  # the first chart of a process also imports matplotlib
    first_drawing = parts["drawing"][0]
    alone, both = [], []
    for _ in range(repeat):
        alone.append(await timed(digest_alone))
        both.append(await timed(with_chart))
    alone_p50, both_p50 = statistics.median(alone) * 1000, statistics.median(both) * 1000
    print(
        f"  digest + chart     digest alone p50 {alone_p50:8.1f} ms   with its chart p50 {both_p50:8.1f} ms   "
        f"the chart adds {both_p50 - alone_p50:6.1f} ms (budget < 1 s): the twelve weeks' counts "
        f"{statistics.median(parts['counts'][1:]) * 1000:.1f} ms, drawing "
        f"{statistics.median(parts['drawing'][1:]) * 1000:.1f} ms; the first chart of a process "
        f"{first * 1000:.0f} ms, drawing {first_drawing * 1000:.0f} ms with matplotlib's import"
    )


def run_bot_that_draws(pipe: Any, database_url: str, slack_url: str) -> None:
    """The bot as `harness.run_bot` serves it, answering two more commands: "vmrss" (its resident
    memory now, MiB, where "rss" is the peak) and "chart" (draws the digest's chart of the last full
    week from its database, as posting the digest does, on a loop of its own; answers the seconds)."""
    upgrade_to_head(database_url)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack_url,
        database_url=database_url,
        deals_webhook_secret=DEALS_SECRET,
        log_level="WARNING",
    )

    async def draw() -> None:
        engine = create_engine(database_url)
        catalogue = Catalogue(DEFAULT_REASONS)
        try:
            week = last_full_week(now=datetime.now(UTC), tz=TZ)
            trend = await loss_trend(
                session_factory=create_session_factory(engine), catalogue=catalogue, week=week, tz=TZ
            )
            await asyncio.to_thread(draw_loss_chart, trend, catalogue)
        finally:
            await engine.dispose()

    def chart() -> float:
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, draw()).result()
        return time.perf_counter() - started

    def vmrss() -> int:
        status = Path("/proc/self/status").read_text()
        [kib] = [line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")]
        return int(kib) // 1024

    serve(create_app(settings), pipe, {"chart": chart, "vmrss": vmrss})


async def measure(database_url: str, repeat: int) -> None:
    slack = FakeSlack()
    slack_url = await slack.start()
    bot = await asyncio.to_thread(Server, run_bot_that_draws, database_url, slack_url)
    raw = RawDatabase(database_url)
    await raw.open()
    engine = create_engine(database_url)
    try:
        print(
            f"  the bot computed the monthly summary in {await wait_for_summary(database_url):.1f} s after it started"
        )
        async with aiohttp.ClientSession() as http:

            def closed(days: int | None, owner: str | None = None) -> Callable[[], Awaitable[Any]]:
                def run() -> Awaitable[Any]:
                    now = datetime.now(UTC)
                    return raw.closed_groups(now - timedelta(days=days) if days else None, now, owner)

                return run

            async def home_raw() -> None:
                now = datetime.now(UTC)
                await raw.home(REP, now.date(), now)

            await compare(
                "stats 30d",
                repeat,
                closed(30),
                lambda: slash_command(http, bot.url, slack, "stats 30d"),
                "  (budget 2x, and < 150 ms end to end)",
            )
            await compare(
                "stats all",
                max(3, repeat // 3),
                closed(None),
                lambda: slash_command(http, bot.url, slack, "stats all"),
                "  (budget 2x)",
            )
            await compare(
                "stats 90d @user",
                repeat,
                closed(90, REP),
                lambda: slash_command(http, bot.url, slack, f"stats 90d <@{REP}|rep>"),
                "  (budget 2x)",
            )
            await compare("App Home", repeat, home_raw, lambda: open_home(http, bot.url, slack), "  (budget 2x)")

            async def digest_raw() -> None:
                now = datetime.now(UTC)
                await raw.digest(last_full_week(now=now, tz=TZ), now, TZ)

            await compare(
                "digest build",
                repeat,
                digest_raw,
                timer(digest_builder(engine)),
                "  (budget 2x; built in this process, as the scheduler does, not over HTTP)",
            )
            await chart_cost(engine, repeat)
        print(f"  closedlost peak RSS: {await asyncio.to_thread(bot.ask, 'rss')} MiB (budget < 150 MiB)")
        idle = await asyncio.to_thread(bot.ask, "vmrss")
        seconds = await asyncio.to_thread(bot.ask, "chart")
        await asyncio.sleep(1)
        print(
            f"  closedlost idle RSS {idle} MiB before drawing a chart, {await asyncio.to_thread(bot.ask, 'vmrss')} MiB "
            f"after ({seconds * 1000:.0f} ms to draw the first, matplotlib's import included; budget < 150 MiB); "
            f"peak {await asyncio.to_thread(bot.ask, 'rss')} MiB"
        )
    finally:
        await engine.dispose()
        await raw.close()
        await asyncio.to_thread(bot.stop)
        await slack.stop()


async def prepare(database_url: str, deals: int, reps: int) -> None:
    await asyncio.to_thread(upgrade_to_head, database_url)
    engine = create_engine(database_url)
    try:
        await fill(engine, deals, reps, datetime.now(UTC))
    finally:
        await engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=1_000_000, help="closed deals to store")
    parser.add_argument("--reps", type=int, default=200, help="reps who own them")
    parser.add_argument("--repeat", type=int, default=15, help="timed runs of each case (a third of it for 'all')")
    parser.add_argument("--database-url", help="defaults to a SQLite file in a temporary folder")
    arguments = parse_arguments(parser, smoke={"deals": 2000, "reps": 10, "repeat": 3})

    with tempfile.TemporaryDirectory() as folder:
        database_url = arguments.database_url or f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        database = database_url.split(":")[0]
        print(f"/closedlost stats and App Home, {arguments.deals:,} deals, {arguments.reps} reps, {database}")
        asyncio.run(prepare(database_url, arguments.deals, arguments.reps))
        asyncio.run(measure(database_url, arguments.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
