"""What people read (issue 15, "Broken today"): counts that agree with their nouns, labels and names
instead of codes and emails, one style for dates, amounts with their currency, no contradictions,
and buttons a screen reader can tell apart. Each surface is rendered to plain text
(tests/plain_text.py) and read as a rep or a manager reads it."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from bot.periods import Period, week_of
from bot.reasons import DEFAULT_REASONS, Catalogue
from bot.views import ids
from bot.views.chasing import build_escalation, build_reminder
from bot.views.commands import build_pending_reply, build_reasons_reply, build_revisits_reply, build_stats_reply
from bot.views.data import (
    AwaitingDeal,
    ClosedStats,
    Digest,
    Home,
    MessageContent,
    NudgeStanding,
    NudgeState,
    RepLine,
    UpcomingRevisit,
)
from bot.views.digest import build_digest_message
from bot.views.home import build_home_view
from bot.views.prompt import build_bulk_prompt, build_single_prompt
from bot.views.reason_modal import ModalContext, build_reason_modal, build_several_modal
from bot.views.revisit import describe_outcome
from bot.views.text import day, format_amount, plural, span
from storage.models import LossState
from tests.plain_text import plain_text
from tests.test_views import make_deal, make_entry, make_item

CATALOGUE = Catalogue(DEFAULT_REASONS)
NOW = datetime(2026, 11, 20, 15, 4, 5, tzinfo=UTC)
PERIOD = Period("the last 30 days", NOW - timedelta(days=30), NOW)
WEEK = week_of(date(2026, 11, 25), tz=UTC, today=date(2026, 12, 5))
REP = "U0DANA"


def awaiting(n: int, name: str = "Acme") -> AwaitingDeal:
    return AwaitingDeal(n, f"{name} {n}", None, Decimal(1000), "USD", NOW)


def home(*, awaiting_deals: list[AwaitingDeal], revisits: list[UpcomingRevisit]) -> Home:
    return Home(awaiting_deals, len(awaiting_deals), revisits, len(revisits), PERIOD, ClosedStats())


def digest(**overrides: object) -> Digest:
    fields: dict[str, object] = {
        "week": WEEK,
        "current": ClosedStats(lost=1, logged=1, won=0),
        "previous": ClosedStats(),
        "competitors": [],
        "product_gaps": [],
        "median_time_to_reason": timedelta(hours=2),
        "overdue": [],
        "reps": [RepLine(None, 1, 1, "price")],
        "revisits": [],
        "revisits_total": 0,
        "win_backs": [],
        "win_backs_total": 0,
        "quotes": [],
    }
    fields.update(overrides)
    return Digest(**fields)  # type: ignore[arg-type]


def buttons_of(message: MessageContent) -> list[dict[str, object]]:
    found = []
    for block in message.as_kwargs()["blocks"]:
        found += [element for element in block.get("elements", []) if element.get("type") == "button"]
        if block.get("accessory", {}).get("type") == "button":
            found.append(block["accessory"])
    return found


# Plurals: one helper, used everywhere.


@pytest.mark.parametrize(("count", "expected"), [(0, "0 deals"), (1, "1 deal"), (3, "3 deals"), (1200, "1,200 deals")])
def test_plural(count: int, expected: str) -> None:
    assert plural(count, "deal") == expected


def test_plural_takes_an_irregular_form() -> None:
    assert (plural(1, "loss", "losses"), plural(2, "loss", "losses")) == ("1 loss", "2 losses")


def test_one_pending_deal_is_one_deal() -> None:
    reply = build_pending_reply(losses=[awaiting(1)], total=1)

    assert reply.text == "1 deal of yours needs a reason."
    assert "*1 deal needs a reason*" in plain_text(reply)


def test_one_upcoming_revisit_is_one_revisit() -> None:
    revisit = UpcomingRevisit(1, date(2027, 1, 4), "Acme", Decimal(10), "USD", REP, "price")

    reply = build_revisits_reply(revisits=[revisit], total=1, catalogue=CATALOGUE)

    assert reply.text == "You have 1 upcoming revisit."
    assert plain_text(reply).endswith("*1 upcoming revisit*\n• Jan 4, 2027 — *Acme* (10 USD) · Price / budget")


def test_one_overdue_loss_in_an_escalation_is_one() -> None:
    escalation = build_escalation([make_item()], rep_name="Dana", manager=None, catalogue=CATALOGUE)

    assert escalation.text == "Dana has 1 closed-lost deal still open after the reminders."
    assert "Dana has 1 closed-lost deal still open after the reminders" in plain_text(escalation)


def test_one_of_one_loss_has_a_reason() -> None:
    stats = ClosedStats(lost=1, logged=1, won=0)

    reply = build_stats_reply(stats=stats, period=PERIOD, user_id=None, catalogue=CATALOGUE)

    assert "(1 of 1 loss has a reason)" in plain_text(reply)


def test_a_reminder_of_one_deal_says_it_needs_a_reason() -> None:
    reminder = build_reminder([make_item()], catalogue=CATALOGUE, message_id=1)

    assert reminder.text == "Reminder: 1 closed-lost deal still needs a reason."


# Raw codes and ids: people read labels and names.


def test_a_won_deal_says_it_was_won_not_its_stage_code() -> None:
    message = build_single_prompt(make_item(make_deal(stage="closed_won"), LossState.CANCELLED), catalogue=CATALOGUE)

    shown = plain_text(message)
    assert message.text == "Acme — 200 seats was won: no reason is needed."
    assert "Won after it was closed lost: no reason is needed." in shown
    assert "closed_won" not in shown and "Closed lost" not in shown


def test_a_reopened_deal_says_it_was_reopened_in_the_crm() -> None:
    message = build_single_prompt(make_item(make_deal(stage="open"), LossState.CANCELLED), catalogue=CATALOGUE)

    shown = plain_text(message)
    assert "Reopened in the CRM after it was closed lost: no reason is needed." in shown
    assert "*open*" not in shown


def test_the_reasons_reply_leads_with_labels_and_shows_codes_to_admins_only() -> None:
    for_reps = plain_text(build_reasons_reply(CATALOGUE))
    for_admins = plain_text(build_reasons_reply(CATALOGUE, show_codes=True))

    assert "• *Price / budget* (revisit after 180 days)\n" in for_reps
    assert "`" not in for_reps
    assert "• *Price / budget* (revisit after 180 days) · `price`\n" in for_admins
    assert "• *No need / not a fit* · `no_need`" in for_admins


def test_the_digest_names_reps_not_in_slack_in_words() -> None:
    message = build_digest_message(digest(overdue=[("U0SAM", 2), (None, 1)], names={"U0SAM": "Sam"}), CATALOGUE)

    shown = plain_text(message)
    assert "Overdue (past their escalation, or the rep could not be asked): Sam (2), reps not in Slack (1)" in (shown)
    assert "• Reps not in Slack — 1 lost" in shown
    assert "no Slack user" not in shown


def test_an_escalation_leaves_out_a_manager_slack_does_not_know() -> None:
    escalation = build_escalation([make_item()], rep_name="Dana", manager="boss@example.com", catalogue=CATALOGUE)

    assert "boss@example.com" not in plain_text(escalation)
    assert "cc" not in plain_text(escalation)


def test_an_escalation_still_copies_a_manager_slack_knows() -> None:
    escalation = build_escalation([make_item()], rep_name="Dana", manager="U0BOSS", catalogue=CATALOGUE)

    assert ":wave: <@U0BOSS>: Dana has" in plain_text(escalation)


# Dates: one style for a day, one for a span, Slack's own for a moment.


def test_a_day_and_a_span_have_one_style() -> None:
    assert day(date(2027, 1, 4)) == "Jan 4, 2027"
    assert span(date(2026, 8, 24), date(2026, 11, 15)) == "Aug 24 – Nov 15, 2026"
    assert span(date(2026, 12, 28), date(2027, 1, 3)) == "Dec 28, 2026 – Jan 3, 2027"


def test_a_moment_is_shown_in_the_readers_time_zone_with_the_same_style_as_fallback() -> None:
    assert day(NOW) == f"<!date^{int(NOW.timestamp())}^{{date_short}}|Nov 20, 2026>"


def test_every_surface_writes_a_day_the_same_way() -> None:
    revisit = UpcomingRevisit(1, date(2027, 1, 4), "Acme", Decimal(10), "USD", REP, "price")
    nudge_snoozed = describe_outcome(NudgeState(1, NudgeStanding.SNOOZED, date(2027, 1, 4), False))
    logged = plain_text(
        build_single_prompt(make_item(entry=make_entry(revisit_on=date(2027, 1, 4))), catalogue=CATALOGUE)
    )
    shown = [
        plain_text(build_revisits_reply(revisits=[revisit], total=1, catalogue=CATALOGUE)),
        plain_text(build_digest_message(digest(revisits=[revisit], revisits_total=1), CATALOGUE)),
        nudge_snoozed,
        logged,
    ]

    assert all("Jan 4, 2027" in text for text in shown)
    assert not any("Mon Jan 4" in text for text in shown)


# Money: an amount always shows its currency; a missing one is no value.


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [(Decimal(48000), "USD", "48,000 USD"), (Decimal(48000), None, "48,000 (no currency)"), (None, "USD", "—")],
)
def test_an_amount_always_shows_its_currency(amount: Decimal | None, currency: str | None, expected: str) -> None:
    assert format_amount(amount, currency) == expected


def test_a_deal_without_an_amount_says_nothing_about_it() -> None:
    item = make_item(make_deal(amount=None, currency=None))
    bulk = build_bulk_prompt([item, replace(item, loss_id=8)], catalogue=CATALOGUE, message_id=1, page=0)
    escalation = build_escalation([item], rep_name="Dana", manager=None, catalogue=CATALOGUE)
    stats = build_stats_reply(stats=ClosedStats(lost=2, won=1), period=PERIOD, user_id=None, catalogue=CATALOGUE)

    for message in (bulk, escalation, stats):
        assert "no amount" not in plain_text(message)
    assert "Total" not in plain_text(escalation)
    assert "*2* lost\n*1* won\n" in plain_text(stats)


def test_the_reason_modals_say_nothing_of_a_missing_amount() -> None:
    no_amount = replace(awaiting(1), amount=None, currency=None)
    several = build_several_modal(deals=[no_amount, awaiting(2)], catalogue=CATALOGUE, chosen=None, today=NOW.date())
    one = build_reason_modal(
        deal=make_deal(amount=None, currency=None),
        context=ModalContext(loss_id=7, revision=1),
        catalogue=CATALOGUE,
        chosen=None,
        today=NOW.date(),
    )

    labels = [option["text"]["text"] for option in _options(several.to_dict())]
    assert labels[:2] == ["Acme 1", "Acme 2 · 1,000 USD"]  # the deals, then the reasons
    assert one.to_dict()["blocks"][0]["text"]["text"] == "*Acme — 200 seats* · Acme Corp"


def _options(node: object) -> list[dict[str, Any]]:
    """Every option of every menu in a view."""
    if isinstance(node, dict):
        found = list(node["options"]) if "options" in node else []
        return found + [option for value in node.values() for option in _options(value)]
    if isinstance(node, list):
        return [option for value in node for option in _options(value)]
    return []


# Contradictions and empty states.


def test_a_bulk_prompt_says_how_many_of_the_deals_closed_together_still_need_a_reason() -> None:
    items = [replace(make_item(), loss_id=n) for n in range(4)]
    items[0] = replace(items[0], entry=make_entry(), needs_reason=False)

    message = build_bulk_prompt(items, catalogue=CATALOGUE, message_id=1, page=0)

    shown = plain_text(message)
    assert message.text == "3 closed-lost deals need a reason."
    assert "4 of your deals were closed lost together; 1 of them is settled (logged, reopened or moved)." in shown


def test_a_bulk_prompt_with_nothing_left_does_not_ask() -> None:
    items = [replace(make_item(), loss_id=n, entry=make_entry(), needs_reason=False) for n in range(2)]

    shown = plain_text(build_bulk_prompt(items, catalogue=CATALOGUE, message_id=1, page=0))

    assert "# Every deal here has its reason" in shown
    assert "each has its reason, or no longer needs one" in shown
    assert "Log why" not in shown


def test_an_empty_home_says_all_caught_up_once_and_no_zero_counts() -> None:
    shown = plain_text(build_home_view(home(awaiting_deals=[], revisits=[]), CATALOGUE))

    assert shown.count("All caught up") == 1
    assert ": 0" not in shown
    assert "Nothing is waiting" not in shown


def test_a_home_with_deals_leads_with_their_count() -> None:
    shown = plain_text(build_home_view(home(awaiting_deals=[awaiting(1), awaiting(2)], revisits=[]), CATALOGUE))

    assert shown.startswith(
        "# Your closed-lost deals\n\n*2 deals need a reason*\n[Log one reason for several]\n\n*Acme 1*"
    )


def test_an_empty_digest_week_reads_as_a_sentence() -> None:
    message = build_digest_message(digest(current=ClosedStats()), CATALOGUE)

    assert "No closed-lost deals in the week of Nov 23, 2026." in plain_text(message)


@pytest.mark.parametrize(
    ("delay", "expected"),
    [
        (timedelta(seconds=20), "under a minute"),
        (timedelta(minutes=12), "12 min"),
        (timedelta(hours=5), "5 h"),
    ],
)
def test_the_median_time_to_reason_is_never_zero(delay: timedelta, expected: str) -> None:
    message = build_digest_message(digest(median_time_to_reason=delay), CATALOGUE)

    assert f"median time to reason {expected}" in plain_text(message)


# Accessibility: every button about a deal names it; the text fallback reads alone.


def test_every_log_and_edit_button_names_its_deal() -> None:
    waiting = make_item()
    logged = replace(make_item(make_deal(name="Globex")), loss_id=8, entry=make_entry(), needs_reason=False)
    messages = [
        build_bulk_prompt([waiting, logged], catalogue=CATALOGUE, message_id=1, page=0),
        build_single_prompt(waiting, catalogue=CATALOGUE),
        build_single_prompt(logged, catalogue=CATALOGUE),
        build_pending_reply(losses=[awaiting(1, "Initech")], total=1),
    ]

    labels = [
        button.get("accessibility_label")
        for message in messages
        for button in buttons_of(message)
        if button["action_id"] in (ids.LOG_REASON, ids.EDIT_REASON)
    ]
    assert labels == [
        "Log reason for Acme — 200 seats",
        "Edit for Globex",
        "Log reason for Acme — 200 seats",
        "Edit for Globex",
        "Log reason for Initech 1",
    ]


def test_a_long_deal_name_is_cut_to_the_labels_75_characters() -> None:
    message = build_single_prompt(make_item(make_deal(name="x" * 200)), catalogue=CATALOGUE)

    (label,) = [button["accessibility_label"] for button in buttons_of(message) if "accessibility_label" in button]
    assert isinstance(label, str) and len(label) == 75 and label.endswith("…")
