"""`/closedlost`: the text is read into a command, answered from one service, and the answer is
posted to the command's `response_url`, visible only to the user who typed it. `export` sends its
CSV to the user's DM with the bot before it answers.

The answer does not ride on the acknowledgement: figures over all time on a large database can
take longer than the 3 s Slack (and Bolt's `ack_timeout`) give an acknowledgement.
https://docs.slack.dev/interactivity/implementing-slash-commands#responding_to_commands
"""

import logging

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond

from bot.command import Admin, Export, Pending, Reasons, Revisits, Stats, Usage, parse_command
from bot.errors import NotAdmin
from bot.logs import log_ids
from bot.periods import period_named
from bot.runtime import Runtime
from bot.services.admin import load_admin_panel
from bot.services.export import ExportNotSent, send_export
from bot.services.home import load_awaiting, load_upcoming_revisits
from bot.services.stats import closed_stats
from bot.views import ids
from bot.views.admin import build_admin_refusal, build_admin_reply
from bot.views.commands import (
    build_export_failed_reply,
    build_export_reply,
    build_pending_reply,
    build_reasons_reply,
    build_revisits_reply,
    build_stats_reply,
    build_usage_reply,
)
from bot.views.data import MessageContent
from handlers.errors import SOMETHING_WENT_WRONG

logger = logging.getLogger(__name__)


def register(app: AsyncApp) -> None:
    app.command(ids.COMMAND)(handle_command)


async def handle_command(
    ack: AsyncAck, command: dict[str, str], respond: AsyncRespond, context: AsyncBoltContext
) -> None:
    await ack()
    runtime: Runtime = context["runtime"]
    try:
        reply = await _answer(command.get("text", ""), command["user_id"], runtime)
    except Exception:
        logger.exception("answering /closedlost %r failed", command.get("text"), extra=log_ids(user=command["user_id"]))
        await respond(text=SOMETHING_WENT_WRONG, response_type="ephemeral")
        return
    await respond(text=reply.text, blocks=reply.blocks, response_type="ephemeral")


async def _answer(text: str, user_id: str, runtime: Runtime) -> MessageContent:
    match parse_command(text):
        case Stats(period=name, user_id=rep):
            period = period_named(name, now=runtime.clock(), tz=runtime.settings.tz)
            stats = await closed_stats(
                session_factory=runtime.read_session_factory,
                period=period,
                owner_slack_id=rep,
                catalogue=runtime.catalogue,
            )
            return build_stats_reply(stats=stats, period=period, user_id=rep, catalogue=runtime.catalogue)
        case Pending():
            losses, total = await load_awaiting(session_factory=runtime.read_session_factory, user_id=user_id)
            return build_pending_reply(losses=losses, total=total)
        case Revisits():
            revisits, total = await load_upcoming_revisits(
                session_factory=runtime.read_session_factory, user_id=user_id, today=runtime.today()
            )
            return build_revisits_reply(revisits=revisits, total=total, catalogue=runtime.catalogue)
        case Reasons():
            return build_reasons_reply(runtime.catalogue, show_codes=user_id in runtime.settings.admin_users)
        case Export(period=name):
            period = period_named(name, now=runtime.clock(), tz=runtime.settings.tz)
            try:
                exported = await send_export(
                    session_factory=runtime.session_factory,
                    slack=runtime.slack,
                    catalogue=runtime.catalogue,
                    user_id=user_id,
                    period=period,
                    filename=f"closedlost-{name}-{runtime.today():%Y-%m-%d}.csv",
                )
            except ExportNotSent as error:
                return build_export_failed_reply(str(error))
            return build_export_reply(losses=exported, period=period)
        case Admin():
            try:
                panel = await load_admin_panel(
                    session_factory=runtime.session_factory,
                    user_id=user_id,
                    admins=runtime.settings.admin_users,
                    now=runtime.clock(),
                )
            except NotAdmin as refusal:
                return build_admin_refusal(str(refusal))
            return build_admin_reply(panel)
        case Usage() as usage:
            return build_usage_reply(usage)
