"""`closedlost import` as an admin runs it (`python -m bot import ...`, a process of its own) against
the fake CRMs' list and search APIs over real HTTP, then the bot's own server on the same database:
history is counted in the figures and asked about only from --prompt-since on; a second run stores
nothing; a run cut short by the CRM is resumed without duplicates."""

import asyncio
import csv
import io
import json
import signal
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.periods import week_of
from bot.reasons import DEFAULT_REASONS, Catalogue
from bot.services.deal_events import IMPORTED_HISTORY
from bot.services.digest import build_digest
from bot.services.export import Bounds, write_losses_csv
from bot.views.data import RepLine
from bot.views.digest import build_digest_message, render_text
from storage.models import Deal, DealEventRecord, Loss, LossState, ReasonEntry, ReasonSource
from tests.bot_client import eventually, rows, snapshot_of
from tests.bot_process import REPOSITORY, bot_environment, free_port
from tests.conftest import make_settings, serve
from tests.fake_crm import FakeCrm, hubspot_deal, hubspot_time, opportunity, pipedrive_deal
from tests.fake_slack import Failure, FakeSlack

DANA_OWNER, SAM_OWNER = "61829374", "61829375"
ALIASES = {"Went with a cheaper competitor (Initech)": "competitor", "Too pricey": "price"}
HUBSPOT = {"HUBSPOT_TOKEN": "pat-na1-test-token", "REASON_ALIASES": json.dumps(ALIASES)}


@dataclass(frozen=True)
class Run:
    status: int
    out: str
    err: str


async def closedlost_import(database_url: str, fake_slack: FakeSlack, *arguments: str, **settings: str) -> Run:
    """`python -m bot import ARGUMENTS` with the bot's environment and `settings` added."""
    env = bot_environment(database_url, fake_slack.url, free_port(), **settings)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "import",
        *arguments,
        cwd=REPOSITORY,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def days_ago(days: int) -> datetime:
    return (datetime.now(UTC) - timedelta(days=days)).replace(microsecond=0)


def day_of(moment: datetime) -> str:
    return moment.date().isoformat()


def hubspot_history(fake_crm: FakeCrm) -> None:
    """Seven deals closed 20 to 40 days ago (5 lost, 2 won), one lost before the import's window
    but modified in it, and one open deal."""
    fake_crm.hubspot_owners.update({DANA_OWNER: "dana@example.com", SAM_OWNER: "sam@example.com"})
    reasons = ["Went with a cheaper competitor (Initech)", "price", "budget  FREEZE", "Budget freeze", ""]
    for number, reason in enumerate(reasons, start=1):
        closed = days_ago(20 + number)
        fake_crm.hubspot_deals[str(number)] = hubspot_deal(
            closed + timedelta(seconds=2), closed_lost_reason=reason, amount="1000", dealname=f"Lost {number}"
        )
    for number in (6, 7):
        closed = days_ago(30 + number)
        fake_crm.hubspot_deals[str(number)] = hubspot_deal(
            closed + timedelta(seconds=2), stage="closedwon", owner=SAM_OWNER, amount="4000", closed_lost_reason=""
        )
    fake_crm.hubspot_deals["8"] = hubspot_deal(days_ago(1), closedate=hubspot_time(days_ago(400)))
    fake_crm.hubspot_deals["9"] = hubspot_deal(days_ago(1), stage="contractsent")


def sections(reply: dict[str, Any], kind: str = "section") -> list[str]:
    if kind == "context":
        return [element["text"] for block in reply["blocks"] if block["type"] == kind for element in block["elements"]]
    return [block["text"]["text"] for block in reply["blocks"] if block["type"] == kind]


async def test_a_hubspot_import_stores_history_with_the_crm_reasons_and_asks_no_one(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    hubspot_history(fake_crm)

    run = await closedlost_import(
        database_url, fake_slack, "--crm", "hubspot", "--since", day_of(days_ago(60)),
        HUBSPOT_API_URL=fake_crm.url, **HUBSPOT,
    )  # fmt: skip

    assert run.status == 0, run.err
    assert run.out.splitlines() == [
        "closedlost: read 7 deals from HubSpot: 5 lost, 2 won, 0 open",
        "  reasons mapped: 2 of 5 losses",
        "  CRM reasons that map to no reason code (1 value; add them to REASON_ALIASES and run the import again):",
        "         2  Budget freeze",
        "  stored 7 deals",
    ]
    losses = await rows(session_factory, Loss)
    assert len(losses) == 5
    assert {(loss.state, loss.excluded_because) for loss in losses} == {(LossState.EXCLUDED, IMPORTED_HISTORY)}
    deals = {deal.id: deal for deal in await rows(session_factory, Deal)}
    assert sorted(deal.external_id for deal in deals.values()) == [str(number) for number in range(1, 8)]
    # Each loss and win is dated by its close, not by the deal's last change.
    for loss in losses:
        assert hubspot_time(loss.lost_at) == fake_crm.hubspot_deals[deals[loss.deal_id].external_id]["closedate"]
    deal_of_loss = {loss.id: deals[loss.deal_id].external_id for loss in losses}
    entries = {deal_of_loss[entry.loss_id]: entry for entry in await rows(session_factory, ReasonEntry)}
    assert {number: entry.reason_code for number, entry in entries.items()} == {"1": "competitor", "2": "price"}
    assert {(entry.source, entry.logged_by) for entry in entries.values()} == {(ReasonSource.CRM, "hubspot")}
    assert {event.via for event in await rows(session_factory, DealEventRecord)} == {"import"}

    settings = make_settings(database_url, fake_slack.url)
    async with serve(settings, fake_slack, session_factory) as bot:
        # Losses reported now are prompted: the scheduler runs, and asks about these only.
        answer = await bot.post_deals(
            [
                {"deal_id": f"W-{n}", "name": "Fresh loss", "stage": "closed_lost", "owner_email": "dana@example.com"}
                for n in (1, 2)
            ]
        )
        assert answer.status == 202
        await fake_slack.wait_for("chat.postMessage", 1)
        await asyncio.sleep(1.5)  # a scheduler tick more
        (prompt,) = fake_slack.calls_to("chat.postMessage")
        assert "Fresh loss" in json.dumps(prompt["blocks"])
        assert "Lost 1" not in json.dumps(prompt["blocks"])

        stats = await bot.command("stats all", user_id="U0DANA001")

    summary = sections(stats.body)[1].splitlines()
    assert summary[:4] == [
        "*7* lost · 5,000 USD",
        "*2* won · 8,000 USD",
        "*Win rate* 22% by count · by value: USD 62%",
        "*Logged* 0% (0 of 2 losses have a reason; 5 more need none)",
    ]
    assert sections(stats.body)[2].splitlines() == [
        "*Reasons* (by deals, share of losses with a reason, value)",
        "• Lost to a competitor — *1* (50%) · 1,000 USD",
        "• Price / budget — *1* (50%) · 1,000 USD",
    ]
    assert sections(stats.body, "context")[-1] == (
        "Includes 2 reasons imported from HubSpot: counted in the reasons, not in the share logged, "
        "as no rep was asked."
    )


async def test_a_second_run_stores_nothing_and_says_so_and_a_dry_run_stores_nothing(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    hubspot_history(fake_crm)
    arguments = ("--crm", "hubspot", "--since", day_of(days_ago(60)))

    dry = await closedlost_import(
        database_url, fake_slack, *arguments, "--dry-run", HUBSPOT_API_URL=fake_crm.url, **HUBSPOT
    )

    assert dry.status == 0, dry.err
    assert dry.out.splitlines()[0] == "closedlost: read 7 deals from HubSpot: 5 lost, 2 won, 0 open"
    assert dry.out.splitlines()[-1] == "  dry run: nothing was stored"
    assert all(not table for table in (await snapshot_of(session_factory)).values())

    first = await closedlost_import(database_url, fake_slack, *arguments, HUBSPOT_API_URL=fake_crm.url, **HUBSPOT)
    assert first.out.splitlines()[-1] == "  stored 7 deals"
    stored = await snapshot_of(session_factory)

    again = await closedlost_import(database_url, fake_slack, *arguments, HUBSPOT_API_URL=fake_crm.url, **HUBSPOT)

    assert again.status == 0, again.err
    assert again.out.splitlines()[0] == "closedlost: read 7 deals from HubSpot: 5 lost, 2 won, 0 open"
    assert again.out.splitlines()[-1] == "  nothing new to store: every deal read was already stored"
    assert await snapshot_of(session_factory) == stored


async def test_an_import_run_again_with_more_reason_aliases_gives_their_reasons_to_the_losses_without_one(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    hubspot_history(fake_crm)
    arguments = ("--crm", "hubspot", "--since", day_of(days_ago(60)))
    await closedlost_import(database_url, fake_slack, *arguments, HUBSPOT_API_URL=fake_crm.url, **HUBSPOT)
    more_aliases = json.dumps({**ALIASES, "Budget freeze": "timing"})

    again = await closedlost_import(
        database_url, fake_slack, *arguments, HUBSPOT_API_URL=fake_crm.url, HUBSPOT_TOKEN="token",
        REASON_ALIASES=more_aliases,
    )  # fmt: skip

    assert again.status == 0, again.err
    assert again.out.splitlines() == [
        "closedlost: read 7 deals from HubSpot: 5 lost, 2 won, 0 open",
        "  reasons mapped: 4 of 5 losses",
        "  reasons given to 2 losses imported before without one",
    ]
    deals = {deal.id: deal.external_id for deal in await rows(session_factory, Deal)}
    losses = {loss.id: deals[loss.deal_id] for loss in await rows(session_factory, Loss)}
    entries = sorted(
        (losses[entry.loss_id], entry.reason_code, entry.source) for entry in await rows(session_factory, ReasonEntry)
    )
    assert entries == [
        ("1", "competitor", ReasonSource.CRM),
        ("2", "price", ReasonSource.CRM),
        ("3", "timing", ReasonSource.CRM),
        ("4", "timing", ReasonSource.CRM),
    ]
    third = await closedlost_import(
        database_url, fake_slack, *arguments, HUBSPOT_API_URL=fake_crm.url, HUBSPOT_TOKEN="token",
        REASON_ALIASES=more_aliases,
    )  # fmt: skip
    assert third.out.splitlines()[-1] == "  nothing new to store: every deal read was already stored"
    assert len(await rows(session_factory, ReasonEntry)) == 4


async def test_an_import_cut_short_by_the_crm_is_resumed_without_duplicates(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_crm.hubspot_owners[DANA_OWNER] = "dana@example.com"
    start = days_ago(50)
    for number in range(1, 451):
        closed = start + timedelta(minutes=number)
        fake_crm.hubspot_deals[str(number)] = hubspot_deal(
            closed + timedelta(seconds=2), stage="closedlost" if number % 3 else "closedwon"
        )
    # Two pages of 200 are read, then HubSpot fails: a 429 is waited out, the 500s are not.
    fake_crm.fail("hubspot.search", Failure(status=429, retry_after=1), Failure(status=500), after=2)
    arguments = ("--crm", "hubspot", "--since", day_of(days_ago(60)))

    cut = await closedlost_import(database_url, fake_slack, *arguments, HUBSPOT_API_URL=fake_crm.url, **HUBSPOT)

    assert cut.status == 1
    assert "the import stopped: HubSpot answered 500" in cut.err
    assert "run the same command again to read on (nothing is stored twice)" in cut.err
    assert cut.out.splitlines()[0] == "closedlost: read 400 deals from HubSpot: 267 lost, 133 won, 0 open"
    assert len(await rows(session_factory, Deal)) == 400

    resumed = await closedlost_import(database_url, fake_slack, *arguments, HUBSPOT_API_URL=fake_crm.url, **HUBSPOT)

    assert resumed.status == 0, resumed.err
    assert resumed.out.splitlines()[-1] == "  stored 50 deals; 400 were already stored"
    deals = await rows(session_factory, Deal)
    assert sorted(int(deal.external_id) for deal in deals) == list(range(1, 451))
    assert len(await rows(session_factory, Loss)) == 300
    assert len(await rows(session_factory, DealEventRecord)) == 450


async def test_prompt_since_asks_each_rep_once_about_their_recent_losses_without_a_reason(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_crm.hubspot_owners.update({DANA_OWNER: "dana@example.com", SAM_OWNER: "sam@example.com"})
    closings = {
        "1": (days_ago(30), DANA_OWNER, ""),  # before --prompt-since: history
        "2": (days_ago(5), DANA_OWNER, ""),
        "3": (days_ago(4), DANA_OWNER, ""),
        "4": (days_ago(3), DANA_OWNER, "price"),  # has its reason: not asked
        "5": (days_ago(5), SAM_OWNER, "Budget freeze"),  # a reason that maps to nothing: asked
        "6": (days_ago(2), SAM_OWNER, ""),
    }
    for number, (closed, owner, reason) in closings.items():
        fake_crm.hubspot_deals[number] = hubspot_deal(
            closed + timedelta(seconds=2), owner=owner, closed_lost_reason=reason, dealname=f"Deal {number}"
        )

    run = await closedlost_import(
        database_url, fake_slack, "--crm", "hubspot", "--since", day_of(days_ago(60)),
        "--prompt-since", day_of(days_ago(10)), HUBSPOT_API_URL=fake_crm.url, **HUBSPOT,
    )  # fmt: skip

    assert run.status == 0, run.err
    assert "  losses without a reason since --prompt-since, whose reps are asked: 4" in run.out.splitlines()
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory):
        await fake_slack.wait_for("chat.postMessage", 2)
        await asyncio.sleep(1.5)  # a scheduler tick more: no other DM
    prompts = {call["channel"]: json.dumps(call["blocks"]) for call in fake_slack.calls_to("chat.postMessage")}
    assert set(prompts) == {"U0DANA001", "U0SAM0001"}
    assert [name for name in ("Deal 1", "Deal 2", "Deal 3", "Deal 4") if name in prompts["U0DANA001"]] == [
        "Deal 2",
        "Deal 3",
    ]
    assert [name for name in ("Deal 5", "Deal 6") if name in prompts["U0SAM0001"]] == ["Deal 5", "Deal 6"]


async def test_pipedrive_and_salesforce_imports_read_lost_and_won_deals_with_their_loss_reasons(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_crm.pipedrive_users[120045] = "dana@example.com"
    fake_crm.pipedrive_deals[1] = pipedrive_deal(1, days_ago(20))  # "Chose a competitor on price"
    fake_crm.pipedrive_deals[2] = {**pipedrive_deal(2, days_ago(19)), "lost_reason": "Too pricey"}
    fake_crm.pipedrive_deals[3] = pipedrive_deal(3, days_ago(18), status="won")
    fake_crm.pipedrive_deals[4] = pipedrive_deal(4, days_ago(17), status="open")
    fake_crm.pipedrive_archived_deals[5] = pipedrive_deal(5, days_ago(16))
    fake_crm.salesforce_opportunities["1"] = opportunity(1, days_ago(20))  # Loss_Reason__c "Price"
    fake_crm.salesforce_opportunities["2"] = opportunity(2, days_ago(19), won=True)
    fake_crm.salesforce_opportunities["3"] = opportunity(3, days_ago(18), closed=False)
    since = ("--since", day_of(days_ago(60)))

    pipedrive = await closedlost_import(
        database_url, fake_slack, "--crm", "pipedrive", *since, PIPEDRIVE_API_TOKEN="pipedrive-token",
        PIPEDRIVE_API_URL=fake_crm.url, REASON_ALIASES=json.dumps(ALIASES),
    )  # fmt: skip
    salesforce = await closedlost_import(
        database_url, fake_slack, "--crm", "salesforce", *since, SALESFORCE_INSTANCE_URL=fake_crm.url,
        SALESFORCE_CLIENT_ID="client-id", SALESFORCE_CLIENT_SECRET="client-secret",
        SALESFORCE_REASON_FIELD="Loss_Reason__c",
    )  # fmt: skip

    assert pipedrive.status == 0, pipedrive.err
    assert pipedrive.out.splitlines()[:2] == [
        "closedlost: read 4 deals from Pipedrive: 3 lost, 1 won, 0 open",
        "  reasons mapped: 1 of 3 losses",
    ]
    assert "         2  Chose a competitor on price" in pipedrive.out.splitlines()
    assert salesforce.status == 0, salesforce.err
    assert salesforce.out.splitlines()[:2] == [
        "closedlost: read 2 deals from Salesforce: 1 lost, 1 won, 0 open",
        "  reasons mapped: 1 of 1 loss",
    ]
    deals = {deal.id: deal for deal in await rows(session_factory, Deal)}
    codes = {
        (deals[loss.deal_id].source, deals[loss.deal_id].external_id): entry.reason_code
        for loss in await rows(session_factory, Loss)
        for entry in await rows(session_factory, ReasonEntry)
        if entry.loss_id == loss.id
    }
    assert codes == {("pipedrive", "2"): "price", ("salesforce", "006RO00000Q0000001"): "price"}
    # Salesforce gives the day an Opportunity closed: the loss is dated by it.
    (salesforce_loss,) = [
        loss for loss in await rows(session_factory, Loss) if deals[loss.deal_id].source == "salesforce"
    ]
    assert salesforce_loss.lost_at == datetime.combine(days_ago(20).date(), datetime.min.time(), UTC)


async def test_an_import_from_a_crm_whose_api_is_not_configured_is_refused(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    run = await closedlost_import(database_url, fake_slack, "--crm", "pipedrive", "--since", "2026-01-01")

    assert run.status == 2
    assert run.err.strip() == "closedlost: Pipedrive's API is not configured: set PIPEDRIVE_API_TOKEN to import from it"
    assert all(not table for table in (await snapshot_of(session_factory)).values())


async def test_since_goes_with_crm_only(database_url: str, fake_slack: FakeSlack, tmp_path: Any) -> None:
    without = await closedlost_import(database_url, fake_slack, "--crm", "hubspot")
    with_csv = await closedlost_import(
        database_url, fake_slack, "--csv", str(tmp_path / "x.csv"), "--since", "2026-01-01"
    )
    bad_day = await closedlost_import(database_url, fake_slack, "--crm", "hubspot", "--since", "01/02/2026")

    assert without.status == with_csv.status == 2
    assert "--since DATE goes with --crm, and only with it" in without.err
    assert "--since DATE goes with --crm, and only with it" in with_csv.err
    assert bad_day.status == 2
    assert "--since '01/02/2026' is not a date: expected YYYY-MM-DD" in bad_day.err


# --- A CSV file ------------------------------------------------------------------------------------


def write_csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "history.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


async def test_a_csv_file_with_bad_rows_is_refused_whole_with_every_problem_by_line_and_field(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    closed = "2026-03-02T15:04:05Z"
    path = write_csv(
        tmp_path,
        "deal_id,name,stage,owner_email,amount,changed_at,reason,competitor,explanation\n"
        f"D-1,Acme,closed_lost,dana@example.com,1000,{closed},price,,Too expensive\n"
        f"D-2,Beta,closed_lost,not-an-email,abc,{closed},,,\n"
        f"D-3,Gamma,closed_lost,dana@example.com,,{closed},Budget freeze,,\n"
        f"D-4,Delta,closed_won,dana@example.com,,{closed},price,,\n"
        'D-5,"Epsilon,\nsecond line",closed_lost,dana@example.com,,,competitor,Initech,\n'
        f"D-6,Zeta,closed_lost,dana@example.com,,{closed},price,Initech,\n"
        f"D-7,Eta,closed_lost,dana@example.com,,{closed},,,No reason given\n",
    )

    run = await closedlost_import(database_url, fake_slack, "--csv", path, REASON_ALIASES=json.dumps(ALIASES))

    assert run.status == 2
    assert [line for line in run.err.splitlines() if line.startswith("closedlost:")] == [
        f"closedlost: {path}: line 3, owner_email: not an email address: 'not-an-email'",
        f'closedlost: {path}: line 3, amount: must be a number of 0 or more, such as 48000 or "48000.50"',
        f"closedlost: {path}: line 4, reason: 'Budget freeze' is not a reason code, label or REASON_ALIASES value "
        "of an active reason",
        f"closedlost: {path}: line 5, reason: only a closed_lost row can have a reason (this one is 'closed_won')",
        f"closedlost: {path}: line 6, changed_at: required: when the deal reached this stage",
        f"closedlost: {path}: line 8, competitor: the reason 'price' names no competitor",
        f"closedlost: {path}: line 9, explanation: needs a reason on the same row",
        "closedlost: 7 problems found: nothing was imported",
    ]
    assert all(not table for table in (await snapshot_of(session_factory)).values())


async def test_a_csv_header_with_unknown_or_missing_columns_is_refused(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = write_csv(tmp_path, "deal_id,name,stgae,owner_email,changed_at\nD-1,Acme,closed_lost,dana@example.com,x\n")

    run = await closedlost_import(database_url, fake_slack, "--csv", path)

    assert run.status == 2
    assert [line for line in run.err.splitlines() if line.startswith("closedlost:")] == [
        f"closedlost: {path}: line 1, stgae: is not a field the import knows (known: deal_id, name, stage, "
        "owner_email, owner_slack_id, amount, currency, account, url, changed_at, event_id, prompt, reason, "
        "explanation, competitor, feature)",
        f"closedlost: {path}: line 1, stage: is a required column",
        "closedlost: 2 problems found: nothing was imported",
    ]
    assert all(not table for table in (await snapshot_of(session_factory)).values())


async def test_a_csv_import_stores_reasons_details_and_wins_and_prompts_only_from_prompt_since(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    old, recent = days_ago(40).isoformat(), days_ago(3).isoformat()
    path = write_csv(
        tmp_path,
        "\ufeffdeal_id,name,stage,owner_email,amount,currency,changed_at,reason,competitor,feature,explanation\n"
        f"D-1,Acme,Closed Lost,dana@example.com,1000,usd,{old},Lost to a competitor,Initech Inc.,,Cheaper\n"
        f"D-2,Beta,closed_lost,dana@example.com,2000,USD,{old},Too pricey,,,\n"
        f"D-3,Gamma,closed_lost,dana@example.com,,,{old},missing_feature,,SSO,\n"
        f"D-4,Delta,closed_won,sam@example.com,5000,USD,{old},,,,\n"
        f"D-5,Eps,closed_lost,sam@example.com,,,{old},,,,\n"
        f"D-6,Zeta,closed_lost,sam@example.com,,,{recent},,,,\n",
    )

    run = await closedlost_import(
        database_url, fake_slack, "--csv", path, "--prompt-since", day_of(days_ago(10)),
        REASON_ALIASES=json.dumps(ALIASES),
    )  # fmt: skip

    assert run.status == 0, run.err
    assert run.out.splitlines() == [
        f"closedlost: read 6 deals from {path}: 5 lost, 1 won, 0 open",
        "  reasons mapped: 3 of 5 losses",
        "  losses without a reason since --prompt-since, whose reps are asked: 1",
        "  stored 6 deals",
    ]
    deals = {deal.id: deal.external_id for deal in await rows(session_factory, Deal)}
    losses = {deals[loss.deal_id]: loss for loss in await rows(session_factory, Loss)}
    assert {name: loss.state for name, loss in losses.items()} == {
        "D-1": LossState.EXCLUDED,
        "D-2": LossState.EXCLUDED,
        "D-3": LossState.EXCLUDED,
        "D-5": LossState.EXCLUDED,
        "D-6": LossState.AWAITING,
    }
    loss_names = {loss.id: name for name, loss in losses.items()}
    entries = {
        loss_names[entry.loss_id]: (entry.reason_code, entry.detail, entry.detail_key, entry.explanation, entry.source)
        for entry in await rows(session_factory, ReasonEntry)
    }
    assert entries == {
        "D-1": ("competitor", "Initech Inc.", "initech", "Cheaper", ReasonSource.CRM),
        "D-2": ("price", None, None, "", ReasonSource.CRM),
        "D-3": ("missing_feature", "SSO", "sso", "", ReasonSource.CRM),
    }


async def test_a_csv_import_and_the_webhook_share_their_dedup(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    closed = days_ago(2).isoformat()
    async with serve(make_settings(database_url, fake_slack.url), fake_slack, session_factory) as bot:
        answer = await bot.post_deals(
            [
                {"deal_id": "D-9", "name": "Nine", "stage": "closed_lost", "owner_email": "dana@example.com",
                 "event_id": "evt-9", "changed_at": closed},
                {"deal_id": "D-10", "name": "Ten", "stage": "closed_lost", "owner_email": "dana@example.com",
                 "changed_at": closed},
            ]
        )  # fmt: skip
        assert answer.status == 202
    path = write_csv(
        tmp_path,
        "event_id,deal_id,name,stage,owner_email,changed_at\n"
        f"evt-9,D-9,Nine,closed_lost,dana@example.com,{days_ago(30).isoformat()}\n"
        f",D-10,Ten,closed_lost,dana@example.com,{closed}\n"
        f",D-11,Eleven,closed_lost,dana@example.com,{closed}\n",
    )

    run = await closedlost_import(database_url, fake_slack, "--csv", path)

    assert run.status == 0, run.err
    assert run.out.splitlines()[-1] == "  stored 1 deal; 2 were already stored"
    deals = {deal.id: deal.external_id for deal in await rows(session_factory, Deal)}
    losses = await rows(session_factory, Loss)
    assert sorted((deals[loss.deal_id], loss.state) for loss in losses) == [
        ("D-10", LossState.AWAITING),
        ("D-11", LossState.EXCLUDED),
        ("D-9", LossState.AWAITING),
    ]
    assert len(await rows(session_factory, DealEventRecord)) == 3
    exported = io.StringIO(newline="")
    await write_losses_csv(
        exported, session_factory=session_factory, catalogue=Catalogue(DEFAULT_REASONS), bounds=Bounds(None, None)
    )
    assert sorted((row["deal_id"], row["imported"]) for row in csv.DictReader(io.StringIO(exported.getvalue()))) == [
        ("D-10", "no"),
        ("D-11", "yes"),
        ("D-9", "no"),
    ]


async def test_the_digest_of_a_past_week_counts_imported_deals_but_not_in_its_discipline(
    database_url: str, fake_slack: FakeSlack, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    week = week_of(days_ago(21).date(), tz=UTC, today=datetime.now(UTC).date())
    monday = datetime.combine(week.monday, datetime.min.time(), UTC) + timedelta(hours=10)
    path = write_csv(
        tmp_path,
        "deal_id,name,stage,owner_slack_id,amount,currency,changed_at,reason,competitor,explanation\n"
        f"D-1,Acme,closed_lost,U0DANA001,9000,USD,{monday.isoformat()},competitor,Initech,They were cheaper\n"
        f"D-2,Beta,closed_lost,U0DANA001,1000,USD,{(monday + timedelta(days=1)).isoformat()},price,,\n"
        f"D-3,Gamma,closed_lost,U0DANA001,1000,USD,{(monday + timedelta(days=2)).isoformat()},,,\n"
        f"D-4,Delta,closed_won,U0DANA001,5000,USD,{(monday + timedelta(days=3)).isoformat()},,,\n",
    )
    run = await closedlost_import(database_url, fake_slack, "--csv", path)
    assert run.status == 0, run.err

    digest = await build_digest(
        session_factory=session_factory,
        catalogue=Catalogue(DEFAULT_REASONS),
        week=week,
        now=datetime.now(UTC),
        tz=UTC,
        currency="USD",
    )

    current = digest.current
    assert (current.lost, current.won, current.win_rate) == (3, 1, 0.25)
    assert (current.logged, current.excluded, current.logged_share) == (0, 3, None)
    assert [(figures.code, figures.deals) for figures in current.reasons] == [("competitor", 1), ("price", 1)]
    assert current.imported == [("a CSV file", 2)]
    assert digest.competitors == [("Initech", 1)]
    assert (digest.median_time_to_reason, digest.overdue, digest.quotes) == (None, [], [])
    assert digest.reps == [RepLine("U0DANA001", 3, 0, "competitor", not_asked=3)]
    text = render_text(build_digest_message(digest, Catalogue(DEFAULT_REASONS)))
    assert "a Slack user with no name — 3 lost · — logged · top: Lost to a competitor" in text


async def test_an_import_stopped_with_ctrl_c_sums_up_what_it_stored_and_is_resumed(
    database_url: str, fake_slack: FakeSlack, fake_crm: FakeCrm, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    fake_crm.hubspot_owners[DANA_OWNER] = "dana@example.com"
    start = days_ago(50)
    for number in range(1, 301):
        closed = start + timedelta(minutes=number)
        fake_crm.hubspot_deals[str(number)] = hubspot_deal(closed + timedelta(seconds=2))
    second_page = fake_crm.hold("hubspot.search", after=1)
    arguments = ("import", "--crm", "hubspot", "--since", day_of(days_ago(60)))
    env = bot_environment(database_url, fake_slack.url, free_port(), HUBSPOT_API_URL=fake_crm.url, **HUBSPOT)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *arguments, cwd=REPOSITORY, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await eventually(lambda: len(fake_crm.calls_to("hubspot.search")) == 2, what="the second page to be asked for")

    process.send_signal(signal.SIGINT)
    out, err = await process.communicate()
    second_page.set_result(None)

    assert process.returncode == 1, err.decode()
    assert out.decode().splitlines()[0] == "closedlost: read 200 deals from HubSpot: 200 lost, 0 won, 0 open"
    assert "closedlost: the import stopped: interrupted. What it stored stays" in err.decode()
    assert len(await rows(session_factory, Deal)) == 200

    resumed = await closedlost_import(database_url, fake_slack, *arguments[1:], HUBSPOT_API_URL=fake_crm.url, **HUBSPOT)

    assert resumed.out.splitlines()[-1] == "  stored 100 deals; 200 were already stored"
    assert len(await rows(session_factory, Loss)) == 300
