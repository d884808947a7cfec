"""The modal a rep logs a reason in, the competitors its competitor menu offers, and the reading of
its submission.

At most four inputs (reason, the competitor or feature when the reason asks for it, an explanation,
a revisit date) so that a rep answers in under 90 seconds. Picking a reason rebuilds the modal
(`dispatch_action`) to show that reason's extra field and default revisit date. The competitor is
picked from a menu of the names the team has logged, as the rep types (an external select, fed by
an options request), or entered as typed, so that the next rep picks the existing spelling.

When the explanation points at another reason than the one picked (bot/second_look.py), the
submission is answered with the same modal, filled as submitted, asking once whether it was that
reason: **Switch to it** redraws the modal with that reason, **Keep my pick** saves as picked.
"""

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeGuard

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    DatePickerElement,
    ExternalDataSelectElement,
    InputBlock,
    Option,
    OptionGroup,
    PlainTextInputElement,
    SectionBlock,
    StaticMultiSelectElement,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.reasons import Catalogue, Reason, Requirement
from bot.second_look import Sign, Suggestion
from bot.validation import MAX_DETAIL_LENGTH, MAX_EXPLANATION_LENGTH, MIN_EXPLANATION_LENGTH, ReasonForm
from bot.views import ids
from bot.views.data import AwaitingDeal, DealFacts
from bot.views.text import escape, fit, format_amount, truncate

INTRO_MAX_LENGTH = 3000
RECODE_NOTE = "Your answer is saved as the deal's reason, re-coded by you; the rep's stays in its history."
# https://docs.slack.dev/reference/block-kit/block-elements/multi-select-menu-element
OPTIONS_PER_GROUP = 100
# A menu takes at most 100 option groups.
SEVERAL_MAX_DEALS = 100 * OPTIONS_PER_GROUP
OPTION_MAX_LENGTH = 75
DETAIL_BLOCKS = {Requirement.COMPETITOR: ids.COMPETITOR_BLOCK, Requirement.FEATURE: ids.FEATURE_BLOCK}
DETAIL_LABELS = {Requirement.COMPETITOR: "Which competitor won?", Requirement.FEATURE: "Which feature was missing?"}
# What a good answer looks like, shown in the empty explanation for the reason picked: one detail
# the team can learn from, and that agrees with the reason (no second look). A reason of a team's
# own, or no reason picked yet, gets the default.
GOOD_ANSWERS = {
    "competitor": "e.g. CFO chose Initech: 30% cheaper, onboarding included",
    "price": "e.g. Budget cut to 20k after the Q3 freeze; we quoted 48k",
    "timing": "e.g. Rollout frozen until their merger closes in March",
    "no_decision": "e.g. Champion left in August; no reply from the new VP since",
    "missing_feature": "e.g. Security needs SSO with Okta before they sign",
    "no_need": "e.g. They built it in-house with two engineers",
    "poor_fit": "e.g. A 5-seat team; our smallest plan is 50 seats",
    "no_champion": "e.g. The IT lead liked it; the CIO never took the meeting",
    "terms": "e.g. Legal wanted unlimited liability; we cap it at a year of fees",
    "stale": "e.g. Opened in 2023 for a pilot that never started",
}
DEFAULT_GOOD_ANSWER = "e.g. The new CTO froze every new vendor in May"
# https://docs.slack.dev/reference/block-kit/block-elements/select-menu-element#external_select: an
# options response lists at most 100 options; the menu shows the most named ones.
COMPETITORS_OFFERED = 20
# https://docs.slack.dev/reference/block-kit/composition-objects/option-object: a value is at most
# 150 characters, as many as a detail may have (bot/validation.py).
OPTION_VALUE_MAX_LENGTH = 150


@dataclass(frozen=True)
class Asked:
    """The second look the modal asked: the reason it suggested, the one the rep had picked, and
    the competitor the explanation named."""

    suggested: str
    over: str
    competitor: str | None

    def confirmed_over(self, stored_code: str | None) -> str | None:
        """What to store as `reason_entry.confirmed_over`: the suggestion, when the rep kept the pick
        it was made over."""
        return self.suggested if stored_code == self.over else None


@dataclass(frozen=True)
class ModalContext:
    """What the modal carries in `private_metadata`: the loss, the revision it was opened on, and
    the second look once asked, so that one submission is never asked twice; whether a manager
    opened it to re-code the rep's reason."""

    loss_id: int
    revision: int
    asked: Asked | None = None
    recode: bool = False

    def encode(self) -> str:
        data: dict[str, Any] = {"loss_id": self.loss_id, "revision": self.revision}
        if self.asked is not None:
            data["asked"] = {
                "suggested": self.asked.suggested,
                "over": self.asked.over,
                "competitor": self.asked.competitor,
            }
        if self.recode:
            data["recode"] = True
        return json.dumps(data)

    @classmethod
    def decode(cls, text: str) -> "ModalContext":
        data = json.loads(text)
        asked = data.get("asked")
        return cls(
            loss_id=int(data["loss_id"]),
            revision=int(data["revision"]),
            asked=Asked(str(asked["suggested"]), str(asked["over"]), asked.get("competitor")) if asked else None,
            recode=bool(data.get("recode")),
        )


def build_reason_modal(
    *,
    deal: DealFacts,
    context: ModalContext,
    catalogue: Catalogue,
    chosen: ReasonForm | None,
    today: date,
    asking: Suggestion | None = None,
    replace_pick: bool = False,
) -> View:
    """The modal of one deal. `asking`: the second look to ask about, above the fields as
    submitted. `replace_pick`: the reason menu shows `chosen`'s reason even though the rep had
    picked another in this modal (Slack keeps an input's value while its block_id is unchanged).
    A manager re-coding (`context.recode`) is told whose reason they change."""
    intro = _intro(deal)
    if context.recode:
        intro = fit(f"{intro}\n{RECODE_NOTE}", INTRO_MAX_LENGTH)
    blocks: list[Block] = [SectionBlock(text=intro)]
    if asking is not None:
        blocks.append(_second_look(asking, catalogue))
    blocks += _reason_inputs(catalogue, chosen, today, replace_pick=replace_pick)
    return View(
        type="modal",
        callback_id=ids.REASON_MODAL,
        title="Re-code the reason" if context.recode else "Why was it lost?",
        submit="Keep my pick" if asking is not None else "Save",
        close="Cancel",
        private_metadata=context.encode(),
        blocks=blocks,
    )


def _second_look(suggestion: Suggestion, catalogue: Catalogue) -> SectionBlock:
    noticed = escape(suggestion.noticed)
    said = {
        Sign.CHOICE: f"You wrote that they {noticed}",
        Sign.NAME: f"You named {noticed}",
        Sign.WORDS: f"You wrote “{noticed}”",
    }[suggestion.sign]
    return SectionBlock(
        block_id=ids.SECOND_LOOK_BLOCK,
        text=fit(f"{said}: was it *{escape(catalogue.label(suggestion.code))}*?", INTRO_MAX_LENGTH),
        accessory=ButtonElement(text="Switch to it", action_id=ids.SWITCH_REASON, value=suggestion.code),
    )


def build_several_modal(
    *, deals: list[AwaitingDeal], catalogue: Catalogue, chosen: ReasonForm | None, today: date
) -> View:
    """One reason and one explanation for several of the rep's awaiting deals (a bulk closure):
    the deals are picked from a menu, in groups of Slack's 100 options."""
    options = [
        Option(
            value=str(deal.loss_id),
            label=truncate(
                deal.deal_name + (f" · {format_amount(deal.amount, deal.currency)}" if deal.amount is not None else ""),
                OPTION_MAX_LENGTH,
            ),
        )
        for deal in deals
    ]
    groups = [
        OptionGroup(label=f"Deals {start + 1}–{start + len(chunk)}", options=chunk)
        for start in range(0, len(options), OPTIONS_PER_GROUP)
        for chunk in [options[start : start + OPTIONS_PER_GROUP]]
    ]
    menu = StaticMultiSelectElement(
        action_id=ids.DEALS_SELECT,
        placeholder="Pick the deals",
        **({"options": options} if len(groups) == 1 else {"option_groups": groups}),
    )
    blocks: list[Block] = [
        InputBlock(block_id=ids.DEALS_BLOCK, label="Deals lost for this reason", element=menu),
        *_reason_inputs(catalogue, chosen, today),
    ]
    return View(
        type="modal",
        callback_id=ids.SEVERAL_MODAL,
        title="Why were they lost?",
        submit="Save",
        close="Cancel",
        blocks=blocks,
    )


def build_notice_modal(*, title: str, text: str) -> View:
    """A modal that only tells something, for `response_action: update` when nothing can be stored."""
    return View(type="modal", title=truncate(title, 24), close="Close", blocks=[SectionBlock(text=text)])


def _reason_inputs(
    catalogue: Catalogue, chosen: ReasonForm | None, today: date, *, replace_pick: bool = False
) -> list[Block]:
    reason = catalogue.get(chosen.reason_code) if chosen and chosen.reason_code else None
    if reason is not None and reason.retired:
        reason = None
    blocks: list[Block] = [_reason_input(catalogue, reason, replace_pick=replace_pick)]
    if reason is not None and reason.requires is not None:
        blocks.append(_detail_input(reason.requires, chosen.detail if chosen else None))
    blocks.append(_explanation_input(chosen.explanation if chosen else "", reason))
    blocks.append(_revisit_input(reason, chosen.revisit_on if chosen else None, today))
    return blocks


def _intro(deal: DealFacts) -> str:
    line = f"*{escape(deal.name)}*"
    if deal.account:
        line += f" · {escape(deal.account)}"
    if deal.amount is not None:
        line += f" · {format_amount(deal.amount, deal.currency)}"
    if deal.crm_reason:
        line += f"\nIn the CRM: _{escape(deal.crm_reason)}_"
    return fit(line, INTRO_MAX_LENGTH)


def _reason_input(catalogue: Catalogue, chosen: Reason | None, *, replace_pick: bool) -> InputBlock:
    options = [Option(value=reason.code, label=reason.label) for reason in catalogue.active]
    initial = next((option for option in options if chosen and option.value == chosen.code), None)
    return InputBlock(
        block_id=ids.SWITCHED_REASON_BLOCK if replace_pick else ids.REASON_BLOCK,
        label="Main reason",
        dispatch_action=True,
        element=StaticSelectElement(
            action_id=ids.REASON_SELECT, placeholder="Choose a reason", options=options, initial_option=initial
        ),
    )


def _detail_input(requirement: Requirement, initial: str | None) -> InputBlock:
    if requirement == Requirement.COMPETITOR:
        # The same action id as the feature's text input: the submission reads either as the detail.
        element: ExternalDataSelectElement | PlainTextInputElement = ExternalDataSelectElement(
            action_id=ids.DETAIL_INPUT,
            placeholder="Type the competitor's name",
            min_query_length=1,
            initial_option=_competitor_option(initial, initial) if _fits(initial) else None,
        )
    else:
        element = PlainTextInputElement(action_id=ids.DETAIL_INPUT, max_length=MAX_DETAIL_LENGTH, initial_value=initial)
    return InputBlock(block_id=DETAIL_BLOCKS[requirement], label=DETAIL_LABELS[requirement], element=element)


def build_competitor_options(*, known: list[str], typed: str | None) -> list[Option]:
    """The competitor menu's options as the rep types: the names the team has logged that match
    (`known`, most named first, at most COMPETITORS_OFFERED shown), then what the rep typed as a
    new name (`typed`; None when a known name is the same competitor). A name longer than an
    option's value can hold is not offered: the rep shortens it."""
    options = [_competitor_option(name, name) for name in known if _fits(name)][:COMPETITORS_OFFERED]
    if _fits(typed):
        options.append(_competitor_option(typed, f"Use “{typed}”"))
    return options


def _fits(name: str | None) -> TypeGuard[str]:
    return bool(name) and len(name or "") <= OPTION_VALUE_MAX_LENGTH


def _competitor_option(value: str, label: str) -> Option:
    # Option text is plain text that Slack shows as it is: nothing to escape.
    return Option(value=value, label=truncate(label, OPTION_MAX_LENGTH))


def _explanation_input(initial: str, reason: Reason | None) -> InputBlock:
    example = GOOD_ANSWERS.get(reason.code, DEFAULT_GOOD_ANSWER) if reason is not None else DEFAULT_GOOD_ANSWER
    return InputBlock(
        block_id=ids.EXPLANATION_BLOCK,
        label="What happened?",
        hint="A sentence or two: what the buyer said, who decided, what tipped it.",
        element=PlainTextInputElement(
            action_id=ids.EXPLANATION_INPUT,
            placeholder=example,
            multiline=True,
            min_length=MIN_EXPLANATION_LENGTH,
            max_length=MAX_EXPLANATION_LENGTH,
            initial_value=initial or None,
        ),
    )


def _revisit_input(reason: Reason | None, chosen: date | None, today: date) -> InputBlock:
    # A date that has passed (an old answer being edited) would only be refused on submit.
    initial = chosen if chosen is not None and chosen >= today else None
    if initial is None and reason is not None and reason.revisit_after_days is not None:
        initial = today + timedelta(days=reason.revisit_after_days)
    return InputBlock(
        block_id=f"{ids.REVISIT_BLOCK_PREFIX}_{reason.code if reason else 'none'}",
        label="Revisit on",
        hint="When could this deal be worth another try? Leave empty if never.",
        optional=True,
        element=DatePickerElement(action_id=ids.REVISIT_INPUT, initial_date=initial.isoformat() if initial else None),
    )


@dataclass(frozen=True)
class Submission:
    form: ReasonForm
    loss_ids: list[int]
    """The deals picked in the several-deals modal; empty in the one-deal modal."""
    block_ids: dict[str, str]
    """Field name (`reason`, `detail`, `explanation`, `revisit`) to the block it came from, for errors."""

    def errors_by_block(self, problems: dict[str, str]) -> dict[str, str]:
        """`response_action: errors` wants messages keyed by block. A field whose block is not in the
        view (a client that did not rebuild the modal when the reason changed) reports on the menu."""
        errors: dict[str, str] = {}
        for field, message in problems.items():
            block_id = self.block_ids.get(field, self.block_ids.get("reason", ids.REASON_BLOCK))
            errors[block_id] = " ".join(filter(None, [errors.get(block_id), message]))
        return errors


def parse_reason_submission(state_values: dict[str, dict[str, Any]]) -> Submission:
    """Reads the modal's `view.state.values`, finding each input by its action id."""
    values: dict[str, Any] = {}
    block_ids: dict[str, str] = {}
    fields = {
        ids.REASON_SELECT: "reason",
        ids.DETAIL_INPUT: "detail",
        ids.EXPLANATION_INPUT: "explanation",
        ids.REVISIT_INPUT: "revisit",
        ids.DEALS_SELECT: "deals",
    }
    for block_id, actions in state_values.items():
        for action_id, state in actions.items():
            field = fields.get(action_id)
            if field is None:
                continue
            block_ids[field] = block_id
            if field == "reason":
                values[field] = (state.get("selected_option") or {}).get("value")
            elif field == "detail" and "selected_option" in state:
                # The competitor menu: the option picked carries the name as the rep will see it.
                values[field] = ((state.get("selected_option") or {}).get("value") or "").strip() or None
            elif field == "revisit":
                values[field] = state.get("selected_date")
            elif field == "deals":
                values[field] = [int(option["value"]) for option in state.get("selected_options") or []]
            else:
                values[field] = (state.get("value") or "").strip() or None
    revisit = values.get("revisit")
    form = ReasonForm(
        reason_code=values.get("reason"),
        detail=values.get("detail"),
        explanation=values.get("explanation") or "",
        revisit_on=date.fromisoformat(revisit) if revisit else None,
    )
    return Submission(form=form, loss_ids=values.get("deals", []), block_ids=block_ids)


def describe_several(*, logged: int, skipped: int) -> str:
    """What a several-deals submission did, when some picked deals could not take the reason."""
    saved = f"Saved for {logged} {'deal' if logged == 1 else 'deals'}."
    return (
        f"{saved} {skipped} of the deals you picked no longer needed your reason "
        "(already logged, reopened in the CRM, or moved to another rep), so nothing was saved for them."
    )
