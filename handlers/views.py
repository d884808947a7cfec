"""The reason modals' submissions (a rep's answer, or a manager's re-code): validate inline, take a
second look at a rep's pick (once), store, close, then redraw the submitter's Home tab."""

import logging
from dataclasses import replace
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.models.views import View

from bot.errors import LossError
from bot.logs import log_ids
from bot.runtime import Runtime
from bot.services.losses import record_reason, record_reason_for_several, take_second_look
from bot.services.recoding import recode_reason
from bot.validation import ReasonForm, validate_reason_form
from bot.views import ids
from bot.views.reason_modal import (
    Asked,
    ModalContext,
    build_notice_modal,
    build_reason_modal,
    describe_several,
    parse_reason_submission,
)
from handlers.errors import SOMETHING_WENT_WRONG

logger = logging.getLogger(__name__)


def register(app: AsyncApp) -> None:
    app.view(ids.REASON_MODAL)(handle_reason_submitted)
    app.view(ids.SEVERAL_MODAL)(handle_several_submitted)


async def handle_reason_submitted(
    ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
) -> None:
    runtime: Runtime = context["runtime"]
    submission = parse_reason_submission(view["state"]["values"])
    problems = validate_reason_form(submission.form, catalogue=runtime.catalogue, today=runtime.earliest_today())
    if problems:
        await ack(response_action="errors", errors=submission.errors_by_block(problems))
        return
    modal = ModalContext.decode(view["private_metadata"])
    user_id = body["user"]["id"]
    rep = None
    try:
        if modal.recode:
            # A manager re-coding gets no second look: they are correcting the rep's words.
            rep = await recode_reason(
                session_factory=runtime.session_factory,
                slack=runtime.slack,
                managers=runtime.managers,
                loss_id=modal.loss_id,
                revision=modal.revision,
                form=submission.form,
                catalogue=runtime.catalogue,
                user_id=user_id,
                view_id=view.get("id"),
                now=runtime.clock(),
                write_back_to=runtime.write_back_sources,
                audience=runtime.audience,
                competitor_merges=runtime.competitor_merges,
            )
        else:
            again = None if modal.asked else await _second_look(runtime, modal, submission.form, user_id)
            if again is not None:
                await ack(response_action="update", view=again)
                return
            await record_reason(
                session_factory=runtime.session_factory,
                loss_id=modal.loss_id,
                revision=modal.revision,
                form=submission.form,
                catalogue=runtime.catalogue,
                user_id=user_id,
                view_id=view.get("id"),
                now=runtime.clock(),
                write_back_to=runtime.write_back_sources,
                audience=runtime.audience,
                competitor_merges=runtime.competitor_merges,
                confirmed_over=modal.asked.confirmed_over(submission.form.reason_code) if modal.asked else None,
            )
    except LossError as error:
        await ack(response_action="update", view=build_notice_modal(title="Nothing saved", text=str(error)))
        return
    except Exception:
        # Answered here rather than left to Slack's timeout (an ack followed by a raise would not
        # reach Slack: Bolt answers a raising listener with a 500).
        logger.exception(
            "saving a reason for loss %s failed",
            modal.loss_id,
            extra=log_ids(losses=[modal.loss_id], user=body["user"]["id"]),
        )
        await ack(response_action="update", view=build_notice_modal(title="Nothing saved", text=SOMETHING_WENT_WRONG))
        return
    runtime.metrics.reasons_logged.inc()
    await ack()
    await _after_saving(runtime, body["user"]["id"])
    if rep is not None and rep != body["user"]["id"]:
        await runtime.home.publish(rep)  # the rep's Home tab shows the re-coded reason too


async def _second_look(runtime: Runtime, modal: ModalContext, form: ReasonForm, user_id: str) -> View | None:
    """The modal again, asking whether the reason the explanation points at was meant, or None when
    the words agree with the pick."""
    look = await take_second_look(
        session_factory=runtime.session_factory,
        loss_id=modal.loss_id,
        revision=modal.revision,
        user_id=user_id,
        form=form,
        catalogue=runtime.catalogue,
        competitor_merges=runtime.competitor_merges,
    )
    if look is None:
        return None
    return build_reason_modal(
        deal=look.deal,
        context=replace(modal, asked=Asked(look.suggestion.code, form.reason_code or "", look.suggestion.competitor)),
        catalogue=runtime.catalogue,
        chosen=form,
        today=runtime.today(),
        asking=look.suggestion,
    )


async def handle_several_submitted(
    ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
) -> None:
    """One reason for several deals: validated like a single answer, then stored for each deal."""
    runtime: Runtime = context["runtime"]
    submission = parse_reason_submission(view["state"]["values"])
    problems = validate_reason_form(submission.form, catalogue=runtime.catalogue, today=runtime.earliest_today())
    errors = submission.errors_by_block(problems)
    if not submission.loss_ids:
        errors[ids.DEALS_BLOCK] = "Pick at least one deal."
    if errors:
        await ack(response_action="errors", errors=errors)
        return
    try:
        result = await record_reason_for_several(
            session_factory=runtime.session_factory,
            loss_ids=submission.loss_ids,
            form=submission.form,
            catalogue=runtime.catalogue,
            user_id=body["user"]["id"],
            view_id=view.get("id"),
            now=runtime.clock(),
            write_back_to=runtime.write_back_sources,
            audience=runtime.audience,
            competitor_merges=runtime.competitor_merges,
        )
    except Exception:
        logger.exception(
            "saving one reason for %d losses failed",
            len(submission.loss_ids),
            extra=log_ids(losses=submission.loss_ids, user=body["user"]["id"]),
        )
        await ack(response_action="update", view=build_notice_modal(title="Nothing saved", text=SOMETHING_WENT_WRONG))
        return
    runtime.metrics.reasons_logged.inc(result.logged)
    if result.skipped:
        notice = describe_several(logged=result.logged, skipped=result.skipped)
        await ack(response_action="update", view=build_notice_modal(title="Saved", text=notice))
    else:
        await ack()
    await _after_saving(runtime, body["user"]["id"])


async def _after_saving(runtime: Runtime, user_id: str) -> None:
    """What a stored reason sets off: the DM updates and the CRM write-back it queued go out now,
    and the rep's Home tab is drawn again."""
    runtime.worker.kick()
    runtime.crm_jobs.kick()
    await runtime.home.publish(user_id)
