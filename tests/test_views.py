"""Unit tests of the Block Kit builders: the DM in each state of a loss, the reason modal, and the
reading of a modal submission. Models are built in memory; nothing touches a database or Slack."""

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from bot.reasons import DEFAULT_REASONS, Catalogue, Reason
from bot.validation import MAX_DETAIL_LENGTH, MAX_EXPLANATION_LENGTH, ReasonForm
from bot.views import ids
from bot.views.data import DealFacts, DealLoss, LoggedReason
from bot.views.prompt import build_prompt_message, build_single_prompt
from bot.views.reason_modal import (
    ModalContext,
    build_competitor_options,
    build_notice_modal,
    build_reason_modal,
    parse_reason_submission,
)
from bot.views.text import escape, format_amount
from storage.models import LossState

NOW = datetime(2026, 11, 20, 15, 4, 5, tzinfo=UTC)
TODAY = NOW.date()
CATALOGUE = Catalogue(DEFAULT_REASONS)
INJECTION = "<!channel> <@U123> & co"
ESCAPED_INJECTION = "&lt;!channel&gt; &lt;@U123&gt; &amp; co"

# Block Kit limits (https://docs.slack.dev/reference/block-kit/blocks): slack_sdk checks some of
# them in to_dict(); the ones it does not check are checked here.
MAX_MESSAGE_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELD_TEXT = 2000
MAX_INPUTS = 4


def make_deal(**overrides: Any) -> DealFacts:
    fields: dict[str, Any] = {
        "source": "generic",
        "name": "Acme — 200 seats",
        "account": "Acme Corp",
        "amount": Decimal("48000"),
        "currency": "USD",
        "owner_email": "dana@example.com",
        "owner_slack_id": "U0DANA",
        "stage": "closed_lost",
        "url": "https://crm.example.com/deals/0061x00000AbCdE",
    }
    fields.update(overrides)
    return DealFacts(**fields)


def make_entry(**overrides: Any) -> LoggedReason:
    fields: dict[str, Any] = {
        "reason_code": "competitor",
        "detail": "Initech",
        "explanation": "Initech undercut us by 30% and bundled onboarding.",
        "revisit_on": date(2027, 9, 16),
        "logged_by": "U0DANA",
        "logged_at": NOW,
    }
    fields.update(overrides)
    return LoggedReason(**fields)


def make_item(
    deal: DealFacts | None = None,
    state: LossState = LossState.AWAITING,
    entry: LoggedReason | None = None,
    *,
    moved: bool = False,
) -> DealLoss:
    """Loss 7, lost NOW, shown as a message shows a loss in `state`."""
    return DealLoss(
        loss_id=7,
        lost_at=NOW,
        deal=deal or make_deal(),
        entry=entry,
        needs_reason=state == LossState.AWAITING,
        cancelled=state == LossState.CANCELLED,
        moved=moved,
    )


def prompt(
    deal: DealFacts | None = None, state: LossState = LossState.AWAITING, entry: LoggedReason | None = None
) -> dict[str, Any]:
    item = make_item(deal, state, entry)
    rendered = build_single_prompt(item, catalogue=CATALOGUE).as_kwargs()
    check_limits(rendered["blocks"], MAX_MESSAGE_BLOCKS)
    # A prompt about one loss is the single-deal layout, whatever the message id or page.
    assert build_prompt_message(items=[item], catalogue=CATALOGUE, message_id=99, page=3).as_kwargs() == rendered
    return rendered


def logged(deal: DealFacts | None = None, **entry_fields: Any) -> dict[str, Any]:
    return prompt(deal, LossState.LOGGED, make_entry(**entry_fields))


def modal(
    deal: DealFacts | None = None,
    chosen: ReasonForm | None = None,
    catalogue: Catalogue = CATALOGUE,
) -> dict[str, Any]:
    view = build_reason_modal(
        deal=deal or make_deal(), context=ModalContext(7, 1), catalogue=catalogue, chosen=chosen, today=TODAY
    )
    rendered = view.to_dict()
    check_limits(rendered["blocks"], MAX_MODAL_BLOCKS)
    assert len(inputs(rendered)) <= MAX_INPUTS
    return rendered


def choose(code: str | None, **fields: Any) -> ReasonForm:
    return ReasonForm(
        reason_code=code,
        detail=fields.get("detail"),
        explanation=fields.get("explanation", ""),
        revisit_on=fields.get("revisit_on"),
    )


def check_limits(blocks: list[dict[str, Any]], max_blocks: int) -> None:
    assert 0 < len(blocks) <= max_blocks
    for block in blocks:
        if block["type"] == "section":
            if "text" in block:
                assert len(block["text"]["text"]) <= MAX_SECTION_TEXT
            for field in block.get("fields", []):
                assert len(field["text"]) <= MAX_SECTION_FIELD_TEXT
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "actions":
            assert len(block["elements"]) <= 25
            for element in block["elements"]:
                if element["type"] == "static_select":
                    # https://docs.slack.dev/reference/block-kit/block-elements/select-menu-element
                    assert len(element["placeholder"]["text"]) <= 150
                    assert 0 < len(element["options"]) <= 100
                    for option in element["options"]:
                        assert len(option["text"]["text"]) <= 75 and len(option["value"]) <= 150
                    continue
                assert len(element["text"]["text"]) <= 75
                assert len(element.get("value", "")) <= 2000
                assert len(element.get("url", "")) <= 3000


def mrkdwn_texts(node: Any) -> list[str]:
    """Every mrkdwn string in a rendered view or message."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn":
            found.append(node["text"])
        for value in node.values():
            found.extend(mrkdwn_texts(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(mrkdwn_texts(item))
    return found


def all_mrkdwn(rendered: dict[str, Any]) -> str:
    """A message's fallback `text` is mrkdwn too; a view has none."""
    return "\n".join([*mrkdwn_texts(rendered["blocks"]), rendered.get("text", "")])


def buttons(rendered: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        element["action_id"]: element
        for block in rendered["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    }


def inputs(rendered: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {block["block_id"]: block for block in rendered["blocks"] if block["type"] == "input"}


def revisit_block(rendered: dict[str, Any]) -> dict[str, Any]:
    [block] = [block for block in inputs(rendered).values() if block["element"]["action_id"] == ids.REVISIT_INPUT]
    return block


def assert_escaped(text: str) -> None:
    assert "<!channel>" not in text
    assert "<@U123>" not in text
    assert re.search(r"&(?!amp;|lt;|gt;)", text) is None, "a bare & in mrkdwn"


# --- the prompt, awaiting a reason ----------------------------------------------------------------


def test_the_awaiting_prompt_has_a_log_reason_button_carrying_the_loss_id() -> None:
    rendered = prompt()

    log = buttons(rendered)[ids.LOG_REASON]
    assert log["value"] == "7"
    assert log["text"]["text"] == "Log reason"
    assert log.get("style") == "primary"


def test_the_awaiting_prompt_links_to_the_crm() -> None:
    crm = buttons(prompt())[ids.OPEN_IN_CRM]

    assert crm["url"] == "https://crm.example.com/deals/0061x00000AbCdE"


def test_a_deal_without_a_link_has_no_crm_button() -> None:
    assert set(buttons(prompt(make_deal(url=None)))) == {ids.LOG_REASON}


def test_the_awaiting_prompt_shows_the_deal() -> None:
    rendered = prompt()

    # One line about the deal, its name once, then the ask.
    assert rendered["blocks"][0]["text"]["text"] == (
        "*Acme — 200 seats* · Acme Corp · 48,000 USD · closed lost <!date^1795187045^{date_short}|Nov 20, 2026>"
    )
    assert all("Acme — 200 seats" not in block.get("text", {}).get("text", "") for block in rendered["blocks"][1:])
    text = all_mrkdwn(rendered)
    assert "Acme Corp" in text
    assert "48,000 USD" in text
    assert "Acme — 200 seats" in rendered["text"]


def test_a_deal_without_account_or_amount_still_builds() -> None:
    text = all_mrkdwn(prompt(make_deal(account=None, amount=None, currency=None)))

    assert text.startswith("*Acme — 200 seats* · closed lost ")
    assert "no amount" not in text


# --- the prompt, logged and cancelled -------------------------------------------------------------


def test_the_logged_prompt_shows_the_reason_and_offers_edit() -> None:
    rendered = logged()

    text = all_mrkdwn(rendered)
    assert "Lost to a competitor" in text
    assert "Initech" in text
    assert ">Initech undercut us by 30% and bundled onboarding." in text
    assert "<@U0DANA>" in text
    assert set(buttons(rendered)) == {ids.EDIT_REASON, ids.OPEN_IN_CRM}
    assert buttons(rendered)[ids.EDIT_REASON]["value"] == "7"
    assert ids.LOG_REASON not in buttons(rendered)


def test_the_logged_prompt_quotes_every_line_of_the_explanation() -> None:
    text = all_mrkdwn(logged(explanation="Initech undercut us.\nProcurement wanted 3 years fixed."))

    assert ">Initech undercut us.\n>Procurement wanted 3 years fixed." in text


def test_a_logged_reason_the_catalogue_retired_still_shows_its_label() -> None:
    catalogue = Catalogue([*DEFAULT_REASONS, Reason("old_budget", "Budget cut (old)", retired=True)])
    message = build_single_prompt(
        make_item(
            make_deal(),
            LossState.LOGGED,
            make_entry(reason_code="old_budget", detail=None),
        ),
        catalogue=catalogue,
    )

    assert "Budget cut (old)" in all_mrkdwn(message.as_kwargs())


def test_the_cancelled_prompt_has_no_buttons() -> None:
    rendered = prompt(make_deal(stage="negotiation"), LossState.CANCELLED)

    assert buttons(rendered) == {}
    # The stage is the CRM's name for it: people read what happened, not the stage.
    assert "negotiation" not in all_mrkdwn(rendered)
    assert "was reopened in the CRM" in all_mrkdwn(rendered)
    assert "no reason is needed" in rendered["text"]


def test_the_prompt_of_a_deal_that_moved_to_another_owner_has_no_buttons_and_names_them() -> None:
    item = make_item(make_deal(owner_slack_id="U0SAM"), moved=True)

    rendered = build_single_prompt(item, catalogue=CATALOGUE).as_kwargs()

    check_limits(rendered["blocks"], MAX_MESSAGE_BLOCKS)
    assert buttons(rendered) == {}
    assert "<@U0SAM>" in all_mrkdwn(rendered)
    assert "<@U0SAM>" in rendered["text"]


# --- user text is escaped in mrkdwn ---------------------------------------------------------------


def test_user_text_in_the_awaiting_prompt_is_escaped() -> None:
    rendered = prompt(make_deal(name=INJECTION, account=INJECTION))

    text = all_mrkdwn(rendered)
    assert_escaped(text)
    assert rendered["blocks"][0]["text"]["text"].startswith(f"*{ESCAPED_INJECTION}* · ")


def test_user_text_in_the_logged_prompt_is_escaped() -> None:
    rendered = logged(make_deal(name=INJECTION, account=INJECTION), detail=INJECTION, explanation=INJECTION * 2)

    text = all_mrkdwn(rendered)
    assert_escaped(text.replace("<@U0DANA>", ""))
    assert f": {ESCAPED_INJECTION}" in text
    assert f">{ESCAPED_INJECTION * 2}" in text


def test_user_text_in_the_cancelled_prompt_is_escaped() -> None:
    rendered = prompt(make_deal(name=INJECTION, account=INJECTION, stage="<!here>"), LossState.CANCELLED)

    text = all_mrkdwn(rendered)
    assert_escaped(text)
    assert "<!here>" not in text


def test_user_text_in_the_modal_is_escaped() -> None:
    rendered = modal(make_deal(name=INJECTION, account=INJECTION))

    text = all_mrkdwn(rendered)
    assert_escaped(text)
    assert ESCAPED_INJECTION in text


# --- long and unusual text ------------------------------------------------------------------------


def test_a_600_character_deal_name_still_builds_cut_to_150_characters() -> None:
    deal = make_deal(name="N" * 600)

    rendered = prompt(deal)
    modal(deal)

    name = rendered["blocks"][0]["text"]["text"].split("*")[1]
    assert len(name) == 150
    assert name.endswith("…")


def test_unicode_and_emoji_survive_in_the_prompt() -> None:
    rendered = logged(
        make_deal(name="Société Générale 🚀 東京", account="Ünïcødé GmbH"),
        explanation="Le client a choisi Initech 💸 : 30 % moins cher.",
    )

    assert rendered["blocks"][0]["text"]["text"].startswith("*Société Générale 🚀 東京* · Ünïcødé GmbH")
    text = all_mrkdwn(rendered)
    assert "Ünïcødé GmbH" in text
    assert "Initech 💸 : 30 % moins cher." in text


def test_the_longest_explanation_full_of_special_characters_still_builds() -> None:
    # What the modal lets through: 2000 characters of explanation, 150 of competitor. Escaping
    # makes `&`, `<`, `>` longer; the DM must still fit Slack's 3000-character section.
    explanation = ("R&D <-> QA & Ops > Sales & CS. " * 70)[:MAX_EXPLANATION_LENGTH]
    detail = ("<Initech & Hooli> " * 10)[:MAX_DETAIL_LENGTH]

    rendered = logged(detail=detail, explanation=explanation)

    assert_escaped(all_mrkdwn(rendered).replace("<@U0DANA>", ""))


SPECIAL_DEAL = {"name": "<R&D>" * 100, "account": "&<>" * 166}


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda deal: prompt(deal), id="awaiting"),
        pytest.param(lambda deal: prompt(deal, LossState.CANCELLED), id="cancelled"),
        pytest.param(lambda deal: logged(deal), id="logged"),
        pytest.param(lambda deal: modal(deal), id="modal"),
    ],
)
def test_the_longest_name_and_account_full_of_special_characters_still_build(build: Any) -> None:
    # 500 characters each is what the webhook and the deal table accept; escaping makes them longer.
    rendered = build(make_deal(**SPECIAL_DEAL))

    assert "&lt;R&amp;D&gt;" in all_mrkdwn(rendered)


# --- the reason modal -----------------------------------------------------------------------------


def test_the_modal_without_a_reason_has_no_detail_input() -> None:
    rendered = modal()

    assert rendered["callback_id"] == ids.REASON_MODAL
    assert set(inputs(rendered)) == {ids.REASON_BLOCK, ids.EXPLANATION_BLOCK, f"{ids.REVISIT_BLOCK_PREFIX}_none"}
    assert "initial_date" not in revisit_block(rendered)["element"]
    assert revisit_block(rendered).get("optional") is True


def test_the_reason_picker_lists_the_active_reasons_in_order() -> None:
    catalogue = Catalogue([*DEFAULT_REASONS, Reason("old_budget", "Budget cut (old)", retired=True)])

    select = inputs(modal(catalogue=catalogue))[ids.REASON_BLOCK]

    assert select["dispatch_action"] is True
    assert select["element"]["action_id"] == ids.REASON_SELECT
    assert [option["value"] for option in select["element"]["options"]] == [r.code for r in DEFAULT_REASONS]


@pytest.mark.parametrize("code", [None, *(reason.code for reason in DEFAULT_REASONS)])
def test_every_choice_keeps_the_modal_within_four_inputs(code: str | None) -> None:
    rendered = modal(chosen=choose(code))

    assert len(inputs(rendered)) <= MAX_INPUTS


def test_choosing_competitor_adds_the_competitor_input() -> None:
    rendered = modal(chosen=choose("competitor", detail="Initech"))

    block = inputs(rendered)[ids.COMPETITOR_BLOCK]
    # A menu of the competitors logged so far, filled as the rep types (an options request).
    assert block["element"]["type"] == "external_select"
    assert (block["element"]["action_id"], block["element"]["min_query_length"]) == (ids.DETAIL_INPUT, 1)
    assert block["element"]["initial_option"] == {
        "text": {"type": "plain_text", "text": "Initech", "emoji": True},
        "value": "Initech",
    }
    assert "competitor" in block["label"]["text"]
    assert ids.FEATURE_BLOCK not in inputs(rendered)
    assert inputs(rendered)[ids.REASON_BLOCK]["element"]["initial_option"]["value"] == "competitor"


def test_choosing_missing_feature_adds_the_feature_input() -> None:
    rendered = modal(chosen=choose("missing_feature"))

    assert inputs(rendered)[ids.FEATURE_BLOCK]["element"]["action_id"] == ids.DETAIL_INPUT
    assert ids.COMPETITOR_BLOCK not in inputs(rendered)


@pytest.mark.parametrize("code", ["price", "timing", "no_need", "other"])
def test_a_reason_that_requires_nothing_has_no_detail_input(code: str) -> None:
    rendered = modal(chosen=choose(code))

    assert ids.COMPETITOR_BLOCK not in inputs(rendered)
    assert ids.FEATURE_BLOCK not in inputs(rendered)


def test_timing_prefills_the_revisit_date_from_its_default_delay() -> None:
    timing = CATALOGUE.get("timing")
    assert timing is not None and timing.revisit_after_days is not None

    element = revisit_block(modal(chosen=choose("timing")))["element"]

    assert element["initial_date"] == (TODAY + timedelta(days=timing.revisit_after_days)).isoformat()


def test_a_reason_without_a_default_delay_leaves_the_date_empty() -> None:
    assert "initial_date" not in revisit_block(modal(chosen=choose("no_need")))["element"]


def test_a_date_the_rep_picked_wins_over_the_default() -> None:
    picked = TODAY + timedelta(days=10)

    element = revisit_block(modal(chosen=choose("timing", revisit_on=picked)))["element"]

    assert element["initial_date"] == picked.isoformat()


def test_the_revisit_block_id_changes_with_the_reason() -> None:
    block_ids = {
        revisit_block(modal(chosen=choose(code)))["block_id"] for code in [None, "price", "timing", "competitor"]
    }

    assert len(block_ids) == 4
    assert all(block_id.startswith(ids.REVISIT_BLOCK_PREFIX) for block_id in block_ids)


def test_a_retired_or_unknown_choice_is_treated_as_no_reason() -> None:
    catalogue = Catalogue([*DEFAULT_REASONS, Reason("old", "Old", requires=None, retired=True)])

    for code in ["old", "bogus"]:
        rendered = modal(chosen=choose(code), catalogue=catalogue)
        assert "initial_option" not in inputs(rendered)[ids.REASON_BLOCK]["element"]
        assert revisit_block(rendered)["block_id"] == f"{ids.REVISIT_BLOCK_PREFIX}_none"


def test_the_explanation_typed_so_far_is_kept_when_the_modal_is_rebuilt() -> None:
    rendered = modal(chosen=choose("price", explanation="Budget moved to <2027> & beyond"))

    element = inputs(rendered)[ids.EXPLANATION_BLOCK]["element"]
    assert element["action_id"] == ids.EXPLANATION_INPUT
    # plain_text_input: Slack shows it as typed, so it is not escaped.
    assert element["initial_value"] == "Budget moved to <2027> & beyond"
    # Slack refuses an empty answer; what the answer says is judged on submit (bot/validation.py).
    assert element["min_length"] == 1


def test_the_modal_carries_its_context() -> None:
    assert ModalContext.decode(modal()["private_metadata"]) == ModalContext(loss_id=7, revision=1)


def test_the_modal_intro_shows_the_deal() -> None:
    text = all_mrkdwn(modal())

    assert "Acme — 200 seats" in text
    assert "Acme Corp" in text
    assert "48,000 USD" in text


def test_the_modal_lists_up_to_a_hundred_reasons() -> None:
    catalogue = Catalogue(Reason(f"reason_{n}", f"Reason number {n}") for n in range(100))

    select = inputs(modal(catalogue=catalogue))[ids.REASON_BLOCK]

    assert len(select["element"]["options"]) == 100


# --- the notice modal -----------------------------------------------------------------------------


def test_the_notice_modal_builds_and_shortens_its_title() -> None:
    rendered = build_notice_modal(
        title="This deal was reopened in the CRM", text="No reason is needed. Nothing was saved."
    ).to_dict()

    assert len(rendered["title"]["text"]) <= 24
    assert "submit" not in rendered
    assert rendered["close"]["text"] == "Close"
    assert mrkdwn_texts(rendered["blocks"]) == ["No reason is needed. Nothing was saved."]


# --- reading a submission -------------------------------------------------------------------------


def state_from(rendered: dict[str, Any], values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`view.state.values` as Slack sends it in a view_submission, for the inputs of a rendered modal.
    `values` maps an action id to what the rep entered (None: left empty)."""
    state: dict[str, dict[str, Any]] = {}
    for block_id, block in inputs(rendered).items():
        action_id = block["element"]["action_id"]
        kind = block["element"]["type"]
        value = values.get(action_id)
        if kind == "static_select":
            selected = next((o for o in block["element"]["options"] if o["value"] == value), None)
            state[block_id] = {action_id: {"type": kind, "selected_option": selected}}
        elif kind == "external_select":
            picked = {"text": {"type": "plain_text", "text": value}, "value": value} if value else None
            state[block_id] = {action_id: {"type": kind, "selected_option": picked}}
        elif kind == "datepicker":
            state[block_id] = {action_id: {"type": kind, "selected_date": value}}
        else:
            state[block_id] = {action_id: {"type": kind, "value": value}}
    return state


def test_a_submission_is_read_back_by_action_id() -> None:
    rendered = modal(chosen=choose("competitor"))
    state = state_from(
        rendered,
        {
            ids.REASON_SELECT: "competitor",
            ids.DETAIL_INPUT: "  Initech 🚀 ",
            ids.EXPLANATION_INPUT: "Initech undercut us by 30% and bundled onboarding.\n",
            ids.REVISIT_INPUT: "2027-09-16",
        },
    )

    submission = parse_reason_submission(state)

    assert submission.form == ReasonForm(
        reason_code="competitor",
        detail="Initech 🚀",
        explanation="Initech undercut us by 30% and bundled onboarding.",
        revisit_on=date(2027, 9, 16),
    )
    assert submission.block_ids == {
        "reason": ids.REASON_BLOCK,
        "detail": ids.COMPETITOR_BLOCK,
        "explanation": ids.EXPLANATION_BLOCK,
        "revisit": f"{ids.REVISIT_BLOCK_PREFIX}_competitor",
    }


def test_an_empty_submission_reads_as_empty_fields() -> None:
    state = state_from(modal(), {})

    form = parse_reason_submission(state).form

    assert form == ReasonForm(reason_code=None, detail=None, explanation="", revisit_on=None)


def test_a_blank_detail_reads_as_none() -> None:
    state = state_from(modal(chosen=choose("missing_feature")), {ids.DETAIL_INPUT: "   "})

    assert parse_reason_submission(state).form.detail is None


def test_inputs_the_bot_does_not_know_are_ignored() -> None:
    # Shaped as Slack's view_submission payload (docs.slack.dev/reference/interaction-payloads): other
    # apps' action ids are skipped.
    state = {
        "reason_block": {
            ids.REASON_SELECT: {
                "type": "static_select",
                "selected_option": {
                    "text": {"type": "plain_text", "text": "Lost to a competitor", "emoji": True},
                    "value": "competitor",
                },
            }
        },
        "competitors_block": {
            "competitors_select": {
                "type": "multi_static_select",
                "selected_options": [{"text": {"type": "plain_text", "text": "Initech"}, "value": "initech"}],
            }
        },
        "details_block": {"details_input": {"type": "plain_text_input", "value": "Initech undercut us by ~30%."}},
        "revisit_block": {"revisit_date": {"type": "datepicker", "selected_date": "2025-09-15"}},
    }

    submission = parse_reason_submission(state)

    assert submission.form == ReasonForm(reason_code="competitor", detail=None, explanation="", revisit_on=None)
    assert submission.block_ids == {"reason": "reason_block"}


def test_the_revisit_block_is_found_whatever_reason_named_it() -> None:
    state = {"revisit_timing": {ids.REVISIT_INPUT: {"type": "datepicker", "selected_date": "2027-02-18"}}}

    submission = parse_reason_submission(state)

    assert submission.form.revisit_on == date(2027, 2, 18)
    assert submission.block_ids["revisit"] == "revisit_timing"


# --- modal context --------------------------------------------------------------------------------


@pytest.mark.parametrize("context", [ModalContext(7, 0), ModalContext(2**40, 12)])
def test_the_modal_context_round_trips(context: ModalContext) -> None:
    encoded = context.encode()

    assert ModalContext.decode(encoded) == context
    assert len(encoded) <= 3000


def test_the_competitor_menu_offers_known_names_then_the_text_typed_within_slacks_limits() -> None:
    known = [f"Competitor {number}" for number in range(30)]
    long_name = "Initech " * 12
    options = [
        option.to_dict() for option in build_competitor_options(known=["A" * 151, long_name, *known], typed="Hooli")
    ]

    # At most 20 known names, a name too long for an option's value (150) left out, then the new one.
    assert len(options) == 21
    assert options[0]["value"] == long_name and options[0]["text"]["text"] == long_name[:74] + "…"
    assert [option["value"] for option in options[1:20]] == known[:19]
    assert options[-1] == {"text": {"type": "plain_text", "text": "Use “Hooli”", "emoji": True}, "value": "Hooli"}
    assert all(len(option["text"]["text"]) <= 75 and len(option["value"]) <= 150 for option in options)


def test_the_competitor_menu_offers_no_new_name_when_none_was_typed_or_it_is_too_long() -> None:
    assert build_competitor_options(known=[], typed=None) == []
    assert build_competitor_options(known=[], typed="x" * 151) == []


def test_a_competitor_too_long_for_a_menu_opens_without_it() -> None:
    rendered = modal(chosen=choose("competitor", detail="x" * 151))

    assert "initial_option" not in inputs(rendered)[ids.COMPETITOR_BLOCK]["element"]


# --- text helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("<@U123>", "&lt;@U123&gt;"),
        ("R&D", "R&amp;D"),
        ("&lt;", "&amp;lt;"),
        ("a > b < c", "a &gt; b &lt; c"),
        ("*bold* _it_ 🚀 東京", "*bold* _it_ 🚀 東京"),
        ("", ""),
    ],
)
def test_escape(text: str, expected: str) -> None:
    assert escape(text) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("48000"), "USD", "48,000 USD"),
        (Decimal("48000.00"), "EUR", "48,000 EUR"),
        (Decimal("48000.50"), "EUR", "48,000.50 EUR"),
        (Decimal("1234567.89"), None, "1,234,567.89 (no currency)"),
        (Decimal("0"), "JPY", "0 JPY"),
        (None, "USD", "—"),
        (None, None, "—"),
    ],
)
def test_format_amount(amount: Decimal | None, currency: str | None, expected: str) -> None:
    assert format_amount(amount, currency) == expected


def test_editing_an_answer_whose_revisit_date_has_passed_offers_the_reason_default_instead() -> None:
    rendered = modal(chosen=choose("timing", explanation="x" * 30, revisit_on=TODAY - timedelta(days=3)))

    assert revisit_block(rendered)["element"]["initial_date"] == (TODAY + timedelta(days=90)).isoformat()


def test_errors_are_keyed_by_the_block_they_came_from_and_fall_back_to_the_menu() -> None:
    submission = parse_reason_submission(
        {
            "reason": {"reason_select": {"type": "static_select", "selected_option": {"value": "competitor"}}},
            "explanation": {"explanation_input": {"type": "plain_text_input", "value": "n/a"}},
        }
    )

    errors = submission.errors_by_block(
        {"detail": "Name the competitor.", "explanation": "Say more.", "reason": "Pick."}
    )

    assert errors == {"reason": "Name the competitor. Pick.", "explanation": "Say more."}
