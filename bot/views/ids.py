"""Every action, block and callback id the bot's views use, in one place."""

COMMAND = "/closedlost"

LOG_REASON = "log_reason"
EDIT_REASON = "edit_reason"
OPEN_IN_CRM = "open_in_crm"
LOG_SEVERAL = "log_several"
LOG_CLEAN_UP = "log_clean_up"
PAGE_BACK = "page_back"
PAGE_NEXT = "page_next"

REASON_MODAL = "reason_modal"
SEVERAL_MODAL = "several_modal"
DEALS_BLOCK = "deals"
DEALS_SELECT = "deals_select"
REASON_BLOCK = "reason"
# The reason menu once the rep switched to the reason the second look suggested: a block_id of its
# own, so that Slack shows the suggested reason rather than keeping the one picked before.
SWITCHED_REASON_BLOCK = "reason_switched"
REASON_SELECT = "reason_select"
COMPETITOR_BLOCK = "competitor"
FEATURE_BLOCK = "feature"
DETAIL_INPUT = "detail_input"
EXPLANATION_BLOCK = "explanation"
EXPLANATION_INPUT = "explanation_input"
# The revisit block's id carries the chosen reason, so that choosing another reason resets the
# date to that reason's default (Slack keeps an input's value while its block_id is unchanged).
REVISIT_BLOCK_PREFIX = "revisit"
REVISIT_INPUT = "revisit_input"
# The second look's question above the fields, and its button; the button's value is the reason suggested.
SECOND_LOOK_BLOCK = "second_look"
SWITCH_REASON = "switch_reason"

# The revisit nudge's answers; each button's value is the revisit's id.
REVISIT_REOPENED = "revisit_reopened"
REVISIT_SNOOZE = "revisit_snooze"
REVISIT_DROP = "revisit_drop"

# The admin view's Retry buttons; each button's value is the outbox row's or the CRM job's id.
RETRY_MESSAGE = "retry_message"
RETRY_CRM_JOB = "retry_crm_job"

# Re-code on a debrief card, a route post or an escalation: a button whose value is the loss's id
# where the post is about one logged deal, else a menu of its logged deals.
RECODE = "recode"
RECODE_PICK = "recode_pick"
