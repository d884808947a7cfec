"""Each surface a rep or a manager reads, rendered to plain text (tests/plain_text.py) and compared
with a reviewed file in tests/fixtures/surfaces/: a change to what people read shows as a diff in
review. After a deliberate change, rewrite the files with `UPDATE_SURFACES=1` and read the diff."""

import os
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from slack_sdk.models.views import View

from bot.second_look import Sign, Suggestion
from bot.validation import ReasonForm
from bot.views.chasing import build_escalation, build_reminder
from bot.views.commands import build_pending_reply, build_reasons_reply, build_revisits_reply, build_stats_reply
from bot.views.data import (
    ClosedStats,
    MessageContent,
    NudgeStanding,
    NudgeState,
    Quality,
    Quote,
    ReasonFigures,
    RecodeNotice,
    RepLine,
    UpcomingRevisit,
    WonBackDeal,
)
from bot.views.debrief import build_debrief, build_route_post
from bot.views.digest import build_digest_message
from bot.views.home import build_home_view
from bot.views.prompt import build_bulk_prompt, build_single_prompt
from bot.views.reason_modal import Asked, ModalContext, build_reason_modal
from bot.views.recode import build_recode_notice
from bot.views.revisit import build_revisit_nudge
from storage.models import LossState
from tests.plain_text import plain_text
from tests.test_views import make_deal, make_entry, make_item
from tests.test_wording import CATALOGUE, NOW, PERIOD, REP, awaiting, digest, home

SURFACES = Path(__file__).parent / "fixtures" / "surfaces"

WAITING = make_item()
LOGGED = replace(make_item(make_deal(name="Globex renewal")), loss_id=8, entry=make_entry(), needs_reason=False)
REVISIT = UpcomingRevisit(1, date(2027, 1, 4), "Initech pilot", Decimal(12000), "EUR", REP, "price")
NUDGED = NOW + timedelta(days=300)
STATS = ClosedStats(
    lost=4,
    lost_value={"USD": Decimal(90000), "EUR": Decimal(12000)},
    logged=3,
    reasons=[
        ReasonFigures("competitor", 2, {"USD": Decimal(60000)}),
        ReasonFigures("price", 1, {"EUR": Decimal(12000)}),
    ],
    won=1,
    won_value={"USD": Decimal(30000)},
    quality=Quality(confirmed=1, recoded=1),
)
MANAGER = "U0BOSS"
RECODED = replace(LOGGED, entry=make_entry(reason_code="price", detail=None, logged_by=MANAGER, recoded=True))


def _second_look() -> View:
    """The reason modal answering a submission whose explanation names who won, while price was picked."""
    suggestion = Suggestion("competitor", "signed with Initech", Sign.CHOICE, "Initech")
    form = ReasonForm("price", None, "They signed with Initech after the CFO compared quotes.", date(2027, 5, 31))
    return build_reason_modal(
        deal=make_deal(crm_reason="Budget"),
        context=ModalContext(loss_id=1, revision=0, asked=Asked("competitor", "price", "Initech")),
        catalogue=CATALOGUE,
        chosen=form,
        today=date(2026, 12, 2),
        asking=suggestion,
    )


def _bulk() -> MessageContent:
    items = [replace(WAITING, loss_id=n, deal=make_deal(name=f"Deal {n}")) for n in range(1, 4)] + [LOGGED]
    return build_bulk_prompt(items, catalogue=CATALOGUE, message_id=1, page=0)


BUILDERS: dict[str, Callable[[], MessageContent | View]] = {
    "prompt_awaiting": lambda: build_single_prompt(WAITING, catalogue=CATALOGUE),
    "prompt_logged": lambda: build_single_prompt(LOGGED, catalogue=CATALOGUE),
    "prompt_won": lambda: build_single_prompt(
        make_item(make_deal(stage="closed_won"), LossState.CANCELLED), catalogue=CATALOGUE
    ),
    "prompt_bulk": _bulk,
    "reason_modal": lambda: build_reason_modal(
        deal=make_deal(crm_reason="Went with Initech"),
        context=ModalContext(loss_id=1, revision=0),
        catalogue=CATALOGUE,
        chosen=ReasonForm("competitor", "Initech", "", None),
        today=NOW.date(),
    ),
    "reason_modal_empty": lambda: build_reason_modal(
        deal=make_deal(),
        context=ModalContext(loss_id=1, revision=0),
        catalogue=CATALOGUE,
        chosen=None,
        today=NOW.date(),
    ),
    "revisit_nudge": lambda: build_revisit_nudge(
        LOGGED, nudge=NudgeState(12, NudgeStanding.WAITING, date(2027, 1, 4), False), catalogue=CATALOGUE, now=NUDGED
    ),
    "revisit_snoozed": lambda: build_revisit_nudge(
        LOGGED, nudge=NudgeState(12, NudgeStanding.SNOOZED, date(2027, 2, 3), False), catalogue=CATALOGUE, now=NUDGED
    ),
    "reminder": lambda: build_reminder([WAITING], catalogue=CATALOGUE, message_id=1),
    "escalation": lambda: build_escalation(
        [WAITING, LOGGED], rep_name="Dana", manager="boss@example.com", catalogue=CATALOGUE
    ),
    "pending": lambda: build_pending_reply(losses=[awaiting(1)], total=1),
    "pending_none": lambda: build_pending_reply(losses=[], total=0),
    "revisits": lambda: build_revisits_reply(revisits=[REVISIT], total=1, catalogue=CATALOGUE),
    "reasons": lambda: build_reasons_reply(CATALOGUE),
    "reasons_admin": lambda: build_reasons_reply(CATALOGUE, show_codes=True),
    "stats": lambda: build_stats_reply(stats=STATS, period=PERIOD, user_id=REP, catalogue=CATALOGUE),
    "stats_imported": lambda: build_stats_reply(
        stats=replace(
            STATS,
            lost=124,
            logged=1,
            excluded=120,
            reasons=[
                ReasonFigures("competitor", 81, {"USD": Decimal(81000)}),
                ReasonFigures("price", 2, {"EUR": Decimal(12000)}),
            ],
            imported=[("HubSpot", 80), ("a CSV file", 2)],
        ),
        period=PERIOD,
        user_id=None,
        catalogue=CATALOGUE,
    ),
    "home": lambda: build_home_view(home(awaiting_deals=[awaiting(1), awaiting(2)], revisits=[REVISIT]), CATALOGUE),
    "home_empty": lambda: build_home_view(home(awaiting_deals=[], revisits=[]), CATALOGUE),
    "digest": lambda: build_digest_message(
        digest(
            current=STATS,
            competitors=[("Initech", 2)],
            overdue=[("U0SAM", 2), (None, 1)],
            reps=[
                RepLine(REP, 3, 3, "competitor", quality=Quality(confirmed=1, recoded=1)),
                RepLine("U0SAM", 2, 0, None),
                RepLine(None, 1, 1, "price"),
            ],
            median_time_to_reason=timedelta(hours=3, minutes=20),
            revisits=[REVISIT],
            revisits_total=1,
            win_backs=[WonBackDeal("Hooli expansion", Decimal(45000), "USD", None, NOW)],
            win_backs_total=1,
            quotes=[Quote("Acme — 200 seats", Decimal(60000), "USD", REP, "competitor", "Initech was 30% cheaper.")],
            quotes_elsewhere=[
                Quote("Initech pilot", Decimal(12000), "EUR", MANAGER, "price", "Too expensive for 5 seats.", REP)
            ],
            names={REP: "Dana Scully", "U0SAM": "Sam"},
        ),
        CATALOGUE,
    ),
    "digest_empty": lambda: build_digest_message(digest(current=ClosedStats()), CATALOGUE),
    "debrief": lambda: build_debrief([LOGGED], catalogue=CATALOGUE),
    "reason_modal_second_look": _second_look,
    "debrief_recoded": lambda: build_debrief([RECODED], catalogue=CATALOGUE),
    "route_several": lambda: build_route_post(
        [LOGGED, replace(LOGGED, loss_id=9, deal=make_deal(name="Initech pilot"))], catalogue=CATALOGUE
    ),
    "prompt_recoded": lambda: build_single_prompt(RECODED, catalogue=CATALOGUE),
    "recode_notice": lambda: build_recode_notice(
        RecodeNotice(
            "Globex renewal", MANAGER, before=make_entry(), after=make_entry(reason_code="price", detail=None)
        ),
        catalogue=CATALOGUE,
    ),
    "recode_notice_same_reason": lambda: build_recode_notice(
        RecodeNotice(
            "Globex renewal", MANAGER, before=make_entry(), after=make_entry(explanation="Initech was 30% cheaper.")
        ),
        catalogue=CATALOGUE,
    ),
    "recode_modal": lambda: build_reason_modal(
        deal=make_deal(name="Globex renewal"),
        context=ModalContext(loss_id=8, revision=1, recode=True),
        catalogue=CATALOGUE,
        chosen=ReasonForm(
            reason_code="competitor", detail="Initech", explanation="Initech undercut us.", revisit_on=None
        ),
        today=NOW.date(),
    ),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_surface_reads_as_reviewed(name: str) -> None:
    shown = plain_text(BUILDERS[name]()) + "\n"
    reviewed = SURFACES / f"{name}.txt"
    if os.environ.get("UPDATE_SURFACES") == "1":
        reviewed.parent.mkdir(parents=True, exist_ok=True)
        reviewed.write_text(shown, encoding="utf-8")
    assert reviewed.exists(), f"{reviewed} is missing: run with UPDATE_SURFACES=1, then read it"
    assert shown == reviewed.read_text(encoding="utf-8")
