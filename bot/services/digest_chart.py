"""The digest's chart: the figures of the weeks up to the digest's, and the picture shared in the
digest's channel after the digest itself is posted (`bot.services.delivery`).

The picture goes up with Slack's external upload flow (files.getUploadURLExternal, a POST of the
bytes to the URL it returns, files.completeUploadExternal with the channel), which slack_sdk's
`files_upload_v2` makes: https://docs.slack.dev/messaging/working-with-files#uploading_files
It is a message of its own, right under the digest. The digest is posted and recorded first, so
the picture never holds it up, and an upload that fails is logged and not tried again: a digest
goes out once, with its picture or without it, never twice.
"""

import asyncio
import logging
from zoneinfo import ZoneInfo

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.periods import Week
from bot.reasons import Catalogue
from bot.services.stats import read_closed_stats
from bot.views.chart import chart_alt_text, chart_title, draw_loss_chart
from bot.views.data import LossTrend, WeekCounts

logger = logging.getLogger(__name__)

WEEKS = 12


async def loss_trend(
    *, session_factory: async_sessionmaker[AsyncSession], catalogue: Catalogue, week: Week, tz: ZoneInfo
) -> LossTrend:
    """The counts of the WEEKS weeks that end with `week`, oldest first, in one transaction: one
    grouped statement a week (`storage.stats_queries.closed_deal_groups`), which reads that week's
    losses and wins through their time indexes, so the cost follows the deals closed in those weeks,
    not the size of the database."""
    weeks = [week]
    while len(weeks) < WEEKS:
        weeks.insert(0, weeks[0].before(tz))
    counts = []
    async with session_factory() as session, session.begin():
        for each in weeks:
            stats = await read_closed_stats(session, period=each.period, owner_slack_id=None, catalogue=catalogue)
            by_reason = {figures.code: figures.deals for figures in stats.reasons}
            counts.append(WeekCounts(each.monday, by_reason, stats.lost - stats.with_reason, stats.won))
    return LossTrend(counts, last_so_far=week.so_far)


async def share_digest_chart(
    *,
    session_factory: async_sessionmaker[AsyncSession],
    slack: AsyncWebClient,
    catalogue: Catalogue,
    week: Week,
    tz: ZoneInfo,
    channel: str,
) -> str | None:
    """Draws the chart of the weeks up to `week` and uploads it to `channel`, where the digest was
    just posted. Returns the uploaded file's id; None when no deal closed in those weeks (no chart)
    or when the upload failed, which is logged as a warning naming the channel and the error."""
    try:
        trend = await loss_trend(session_factory=session_factory, catalogue=catalogue, week=week, tz=tz)
        if trend.empty:
            return None
        # Drawing takes a few hundred milliseconds of CPU: in a thread, the bot keeps answering Slack.
        png = await asyncio.to_thread(draw_loss_chart, trend, catalogue)
        response = await slack.files_upload_v2(
            channel=channel,
            file=png,
            filename=f"closedlost-{trend.weeks[0].monday}-{week.monday}.png",
            title=chart_title(trend),
            alt_txt=chart_alt_text(trend),
        )
    except SlackApiError as error:
        code = error.response.get("error")
        hint = " (the app needs the files:write scope: see manifest.yml)" if code == "missing_scope" else ""
        logger.warning("the digest in %s goes without its chart: Slack answered %s%s", channel, code, hint)
        return None
    except (SlackRequestError, aiohttp.ClientError, TimeoutError) as error:
        logger.warning("the digest in %s goes without its chart: the upload failed: %s", channel, error)
        return None
    except Exception:
        # The digest is out already: whatever went wrong with its picture must not make it look unsent.
        logger.exception("the digest in %s goes without its chart: drawing or uploading it failed", channel)
        return None
    return str(response["file"]["id"])
