"""The weekly digest: its content computed from a seeded week (exact figures), an empty week, a
200-rep team within Block Kit's limits, and `closedlost digest --dry-run`. Posting it:
tests/test_digest_posting.py."""

import asyncio
import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.periods import week_of
from bot.reasons import DEFAULT_REASONS, Catalogue, Reason
from bot.services.digest import build_digest
from bot.views.data import ClosedStats, Digest, Quote, ReasonFigures, RepLine, UpcomingRevisit, WonBackDeal
from bot.views.digest import build_digest_message, render_text
from storage.models import Loss, LossState, Rep, Revisit, RevisitState, WebhookMiss
from tests.seed import DANA, SAM, Seed, utc

PARIS = ZoneInfo("Europe/Paris")
CATALOGUE = Catalogue(DEFAULT_REASONS)
# The digest of the week of Monday Nov 9, 2026 in Paris, built on Wednesday Nov 18.
NOW = utc(2026, 11, 18, 10, 0)
WEEK = week_of(date(2026, 11, 11), tz=PARIS, today=date(2026, 11, 18))
REPOSITORY = Path(__file__).resolve().parent.parent
MAX_MESSAGE_BLOCKS = 50
MAX_SECTION_TEXT = 3000


async def seed_two_weeks(session_factory: async_sessionmaker[AsyncSession]) -> dict[str, Loss]:
    """Returns some of the losses, by what they are."""
    seed = Seed()
    # 00:30 on Monday in Paris is still Sunday in UTC: in the week all the same.
    first = seed.loss(owner=DANA, lost_at=utc(2026, 11, 8, 23, 30), amount="40000", name="Acme <!here>")
    seed.reason(
        first,
        "competitor",
        logged_at=utc(2026, 11, 9, 1, 30),
        detail="Initech",
        explanation="Initech bundled onboarding <!channel> for free & we could not match it.",
        revisit_on=date(2026, 11, 25),
    )
    second = seed.loss(owner=DANA, lost_at=utc(2026, 11, 10, 10), amount="10000")
    seed.reason(second, "competitor", logged_at=utc(2026, 11, 10, 14), detail=" initech ")
    gap = seed.loss(owner=SAM, lost_at=utc(2026, 11, 11, 10), amount="25000", currency="EUR")
    seed.reason(gap, "missing_feature", logged_at=utc(2026, 11, 11, 16), detail="SSO", revisit_on=date(2026, 12, 5))
    dark = seed.loss(owner=SAM, lost_at=utc(2026, 11, 12, 10), amount="5000")
    seed.reason(dark, "no_decision", logged_at=utc(2026, 11, 12, 20))
    late = seed.loss(owner=SAM, lost_at=utc(2026, 11, 13, 10), amount="8000", state=LossState.AWAITING)
    late.escalation_due_at = utc(2026, 11, 14, 10)
    seed.loss(owner=SAM, lost_at=utc(2026, 11, 13, 11), amount="70000", state=LossState.CANCELLED)
    seed.deal(owner=DANA, stage="closed_won", changed_at=utc(2026, 11, 12, 9), amount="20000")
    # 00:30 on the next Monday in Paris: the week after.
    recent = seed.loss(owner=DANA, lost_at=utc(2026, 11, 15, 23, 30), amount="90000", state=LossState.AWAITING)
    recent.escalation_due_at = utc(2026, 11, 18, 11)  # an hour after NOW: not overdue yet

    # The week before.
    before = seed.loss(owner=DANA, lost_at=utc(2026, 11, 3, 10), amount="15000")
    seed.reason(before, "price", logged_at=utc(2026, 11, 3, 12), revisit_on=date(2026, 11, 20))
    never_asked = seed.loss(owner=SAM, lost_at=utc(2026, 11, 4, 10), amount="3000", state=LossState.AWAITING)
    never_asked.delivery_error = "prompt not delivered: Slack answered account_inactive"
    seed.deal(owner=SAM, stage="closed_won", changed_at=utc(2026, 11, 5, 10), amount="10000", currency="EUR")
    await seed.save(session_factory)
    return {"first": first, "gap": gap, "dark": dark, "before": before}


async def close_revisit(
    session_factory: async_sessionmaker[AsyncSession], loss: Loss, state: RevisitState, closed_at: datetime
) -> None:
    """Closes the loss's revisit (seeded with its revisit date, or made here for a loss without one)."""
    async with session_factory() as session, session.begin():
        revisit = await session.scalar(select(Revisit).where(Revisit.loss_id == loss.id))
        if revisit is None:
            revisit = Revisit(loss_id=loss.id, due_on=closed_at.date(), snoozes=0, created_at=closed_at)
            session.add(revisit)
        revisit.state = state
        revisit.nudge_at = None
        revisit.closed_at = closed_at
        revisit.closed_by = "U0SAM0001"


async def test_the_digest_of_a_seeded_week(session_factory: async_sessionmaker[AsyncSession]) -> None:
    losses = await seed_two_weeks(session_factory)
    # Win-backs: revisits reopened during the week. Not one reopened the week after, nor one dropped.
    await close_revisit(session_factory, losses["before"], RevisitState.REOPENED, utc(2026, 11, 12, 15))
    await close_revisit(session_factory, losses["gap"], RevisitState.REOPENED, utc(2026, 11, 15, 23, 30))
    await close_revisit(session_factory, losses["dark"], RevisitState.DROPPED, utc(2026, 11, 12, 16))
    async with session_factory() as session, session.begin():
        session.add(Rep(slack_id=DANA, tz=None, name="Dana Scully", looked_up_at=NOW))

    digest = await build_digest(
        session_factory=session_factory, catalogue=CATALOGUE, week=WEEK, now=NOW, tz=PARIS, currency="USD"
    )

    assert (WEEK.period.since, WEEK.period.until, WEEK.so_far) == (utc(2026, 11, 8, 23), utc(2026, 11, 15, 23), False)
    assert digest.current == ClosedStats(
        lost=5,
        lost_value={"EUR": Decimal("25000"), "USD": Decimal("63000")},
        logged=4,
        reasons=[
            ReasonFigures("competitor", 2, {"USD": Decimal("50000")}),
            ReasonFigures("missing_feature", 1, {"EUR": Decimal("25000")}),
            ReasonFigures("no_decision", 1, {"USD": Decimal("5000")}),
        ],
        no_decision=1,
        won=1,
        won_value={"USD": Decimal("20000")},
    )
    assert digest.previous == ClosedStats(
        lost=2,
        lost_value={"USD": Decimal("18000")},
        logged=1,
        reasons=[ReasonFigures("price", 1, {"USD": Decimal("15000")})],
        no_decision=0,
        won=1,
        won_value={"EUR": Decimal("10000")},
    )
    assert digest.competitors == [("Initech", 2)]
    assert digest.product_gaps == [("SSO", 1)]
    assert digest.median_time_to_reason == timedelta(hours=5)
    assert digest.overdue == [(SAM, 2)]
    assert digest.reps == [RepLine(SAM, 3, 2, "missing_feature"), RepLine(DANA, 2, 2, "competitor")]
    assert [(r.revisit_on, r.deal_name) for r in digest.revisits] == [
        (date(2026, 11, 25), "Acme <!here>"),
    ]
    assert digest.revisits_total == 1  # Deal 9 was won back: no longer to revisit
    assert digest.win_backs == [WonBackDeal("Deal 9", Decimal("15000"), "USD", DANA, utc(2026, 11, 12, 15))]
    assert digest.win_backs_total == 1
    # Ranked within CURRENCY: 25,000 EUR does not outrank 10,000 USD; it is listed apart.
    assert [(quote.deal_name, quote.amount, quote.logged_by) for quote in digest.quotes] == [
        ("Acme <!here>", Decimal("40000"), DANA),
        ("Deal 2", Decimal("10000"), DANA),
        ("Deal 4", Decimal("5000"), SAM),
    ]
    assert [(quote.deal_name, quote.amount, quote.currency) for quote in digest.quotes_elsewhere] == [
        ("Deal 3", Decimal("25000"), "EUR")
    ]

    # The digest names people and pings nobody: Sam, whose name Slack never gave, is not mentioned either.
    assert digest.names == {DANA: "Dana Scully"}
    message = build_digest_message(digest, CATALOGUE)
    assert "<@" not in json.dumps(message.as_kwargs())
    assert message.text == (
        "Closed-lost digest, the week of Nov 9, 2026: 5 lost (25,000 EUR · 63,000 USD), 1 won (20,000 USD),"
        " win rate 17%. Top reason: Lost to a competitor, 2 of 4 losses with a reason, most often Initech."
        " Discipline: 80% logged, 5 h to a reason at the median; 2 losses overdue."
    )
    text = render_text(message).split("\n\n")
    assert text[0] == "Closed-lost digest, the week of Nov 9, 2026"
    assert text[1] == (
        "*5 lost* (25,000 EUR · 63,000 USD), *1 won* (20,000 USD), win rate 17%\n"
        "*Top reason:* Lost to a competitor, 2 of 4 losses with a reason, most often Initech\n"
        "*Discipline:* 80% logged, 5 h to a reason at the median; 2 losses overdue"
    )
    assert text[3] == (
        "*Against the week before:* lost 5 (+3), won 1 (±0), win rate 17% (was 33%)\n"
        "*Win rate by value:* EUR 0%, USD 24%"
    )
    assert text[4] == (
        "*Why we lost* (real losses: deals, share of losses with a reason, value)\n"
        "• Lost to a competitor — *2* (50%, +2 on the week before) · 50,000 USD\n"
        "• Missing feature — *1* (25%, +1 on the week before) · 25,000 EUR"
    )
    assert (
        text[5]
        == "*No decision / went dark* (kept apart from real losses) 1 (+1) · 25% of losses with a reason · 5,000 USD"
    )
    assert text[6] == "*Competitors*\nInitech (2)"
    assert text[7] == "*Product gaps*\nSSO (1)"
    assert text[8] == (
        "*Discipline* 80% of losses have a reason _(week before 50%)_ · median time to reason 5 h\n"
        "Reason quality: 0 picks kept over a suggestion (0% of logged losses) · 0 reasons re-coded by a manager.\n"
        "Overdue (past their escalation, or the rep could not be asked): a Slack user with no name (2)"
    )
    assert text[9] == (
        "*By rep*\n"
        "• a Slack user with no name — 3 lost · 67% logged · top: Missing feature\n"
        "• Dana Scully — 2 lost · 100% logged · top: Lost to a competitor"
    )
    assert text[10] == (
        "*Revisits in the next two weeks* (1)\n"
        "• Nov 25, 2026 — *Acme &lt;!here&gt;* (40,000 USD) · Dana Scully · Lost to a competitor"
    )
    assert text[11] == "*Win-backs: revisited deals reopened* (1)\n• *Deal 9* (15,000 USD) · Dana Scully"
    assert text[12] == "*In their words:* the largest losses"
    assert text[13] == (
        ">Initech bundled onboarding &lt;!channel&gt; for free &amp; we could not match it.\n"
        "— Dana Scully, *Acme &lt;!here&gt;* (40,000 USD), Lost to a competitor"
    )
    assert text[14].endswith("— Dana Scully, *Deal 2* (10,000 USD), Lost to a competitor")
    assert text[15].endswith("— a Slack user with no name, *Deal 4* (5,000 USD), No decision / went dark")
    # The largest loss in another currency comes after those in CURRENCY, never ranked among them.
    assert text[16].endswith("— a Slack user with no name, *Deal 3* (25,000 EUR), Missing feature")
    assert len(text) == 17


async def test_the_discipline_part_names_each_crm_whose_webhook_missed_changes_that_week(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    await seed_two_weeks(session_factory)
    async with session_factory() as session, session.begin():
        for source, found_at, count in [
            ("pipedrive", utc(2026, 11, 9, 8), 1),
            ("hubspot", utc(2026, 11, 10, 8), 7),
            ("hubspot", utc(2026, 11, 15, 22, 59), 5),
            ("hubspot", utc(2026, 11, 15, 23), 100),  # 00:00 on the next Monday in Paris: not this week
            ("salesforce", utc(2026, 11, 8, 22, 59), 100),  # the week before
        ]:
            session.add(WebhookMiss(source=source, found_at=found_at, stage_changes=count))

    digest = await build_digest(
        session_factory=session_factory, catalogue=CATALOGUE, week=WEEK, now=NOW, tz=PARIS, currency="USD"
    )

    assert digest.webhook_misses == [("HubSpot", 12), ("Pipedrive", 1)]
    discipline = render_text(build_digest_message(digest, CATALOGUE)).split("\n\n")[8]
    assert discipline.splitlines()[3:] == [
        "HubSpot: 12 stage changes reached us only through the sweep: check its webhook.",
        "Pipedrive: 1 stage change reached us only through the sweep: check its webhook.",
    ]


async def test_the_spellings_of_one_competitor_count_as_one_shown_in_the_most_used(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    seed = Seed()
    named = [
        ("competitor", "Initech"),
        ("competitor", "initech inc."),
        ("competitor", "INITECH, Inc"),
        ("competitor", "Initech"),
        ("competitor", "Globex Corp."),
        ("missing_feature", "SSO / SAML"),
        ("missing_feature", "sso-saml"),
    ]
    for hour, (code, detail) in enumerate(named):
        loss = seed.loss(owner=DANA, lost_at=utc(2026, 11, 10, hour), amount="1000")
        seed.reason(loss, code, logged_at=utc(2026, 11, 10, 20), detail=detail)
    await seed.save(session_factory)

    digest = await build_digest(
        session_factory=session_factory, catalogue=CATALOGUE, week=WEEK, now=NOW, tz=PARIS, currency="USD"
    )

    assert digest.competitors == [("Initech", 4), ("Globex Corp.", 1)]
    assert digest.product_gaps == [("SSO / SAML", 2)]


async def test_an_empty_week_is_a_short_note(session_factory: async_sessionmaker[AsyncSession]) -> None:
    digest = await build_digest(
        session_factory=session_factory, catalogue=CATALOGUE, week=WEEK, now=NOW, tz=PARIS, currency="USD"
    )

    message = build_digest_message(digest, CATALOGUE)
    assert message.text == "Closed-lost digest, the week of Nov 9, 2026: no closed-lost deals."
    assert (
        render_text(message)
        == "Closed-lost digest, the week of Nov 9, 2026\n\nNo closed-lost deals in the week of Nov 9, 2026."
    )


def test_a_200_rep_team_stays_within_block_kit_limits() -> None:
    catalogue = Catalogue(Reason(f"r{n:03d}", "L" * 75) for n in range(100))
    currencies = {f"C{n:02d}": Decimal("123456789.12") for n in range(20)}
    stats = ClosedStats(
        lost=10_000,
        lost_value=currencies,
        logged=9_000,
        reasons=[ReasonFigures(f"r{n:03d}", 90, currencies) for n in range(100)],
        no_decision=0,
        won=500,
        won_value=currencies,
    )
    names = [("<b>" + "n" * 150, 3) for _ in range(200)]
    digest = Digest(
        week=WEEK,
        current=stats,
        previous=stats,
        competitors=names,
        product_gaps=names,
        median_time_to_reason=timedelta(days=3, hours=4),
        overdue=[(f"U{n:08d}", 4) for n in range(200)],
        reps=[RepLine(f"U{n:08d}", 50, 40, "r001") for n in range(200)],
        revisits=[
            UpcomingRevisit(n, date(2026, 11, 20), "d" * 500, Decimal(1), "USD", "U1", "r001") for n in range(15)
        ],
        revisits_total=480,
        win_backs=[WonBackDeal("w" * 500, Decimal(1), "USD", "U1", NOW) for _ in range(15)],
        win_backs_total=300,
        quotes=[Quote("q" * 500, Decimal(10), "USD", "U1", "r001", "x" * 2000) for _ in range(3)],
        quotes_elsewhere=[Quote("q" * 500, Decimal(10), f"C{n:02d}", "U1", "r001", "x" * 2000) for n in range(3)],
        names={f"U{n:08d}": f"Rep {n}" for n in range(200)},
    )

    message = build_digest_message(digest, catalogue).as_kwargs()

    assert len(message["blocks"]) <= MAX_MESSAGE_BLOCKS
    sections = [block["text"]["text"] for block in message["blocks"] if block["type"] == "section"]
    assert all(len(text) <= MAX_SECTION_TEXT for text in sections)
    # Each long list is cut between items, and says how many it left out.
    by_rep = next(text for text in sections if text.startswith("*By rep*"))
    shown = by_rep.count("• Rep ")
    assert 0 < shown <= 30 and by_rep.endswith(f"\nand {200 - shown} more")
    competitors = next(text for text in sections if text.startswith("*Competitors*"))
    shown = competitors.count("&lt;b&gt;")
    assert 0 < shown <= 10 and competitors.endswith(f" · and {200 - shown} more")
    assert next(text for text in sections if text.startswith("*Discipline*")).endswith(", and 190 more")
    revisits = next(text for text in sections if text.startswith("*Revisits"))
    shown = revisits.count("• Nov 20, 2026")
    assert 0 < shown <= 15 and revisits.endswith(f"\nand {480 - shown} more")
    win_backs = next(text for text in sections if text.startswith("*Win-backs"))
    shown = win_backs.count("• *www")
    assert 0 < shown <= 15 and win_backs.endswith(f"\nand {300 - shown} more")


def closedlost(tmp_path: Path, *arguments: str, database_url: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """The CLI of this checkout in a fresh process, with only the environment given (and `settings`,
    named as environment variables) and no .env around."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPOSITORY),
        "HOME": str(tmp_path),
        "DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": "secret",
        "TIMEZONE": "Europe/Paris",
        **settings,
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", *arguments],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_dry_run_prints_the_text_then_the_block_kit_json(
    tmp_path: Path, database_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed_two_weeks(session_factory)

    result = await asyncio.to_thread(
        closedlost, tmp_path, "digest", "--dry-run", "--week", "2026-11-15", database_url=database_url
    )

    assert result.returncode == 0, result.stderr
    text, _, blocks = result.stdout.partition("\n\n{\n")
    paragraphs = text.split("\n\n")
    assert paragraphs[0] == "Closed-lost digest, the week of Nov 9, 2026"
    assert paragraphs[1].startswith("*5 lost* (25,000 EUR · 63,000 USD), *1 won* (20,000 USD), win rate 17%\n")
    message = json.loads("{\n" + blocks)
    assert message["text"].startswith(
        "Closed-lost digest, the week of Nov 9, 2026: 5 lost (25,000 EUR · 63,000 USD), 1 won"
    )
    assert [block["text"]["text"] for block in message["blocks"][:2]] == paragraphs[:2]


async def test_posting_without_a_channel_is_refused_in_one_line(tmp_path: Path) -> None:
    result = await asyncio.to_thread(closedlost, tmp_path, "digest", database_url="sqlite:///unused.db")

    assert result.returncode == 2
    assert result.stderr == "closedlost: no channel to post the digest to: set DIGEST_CHANNEL or MANAGER_CHANNEL\n"
    assert not (tmp_path / "unused.db").exists()
