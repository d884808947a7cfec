"""Events API: the App Home tab, published afresh each time a user opens it."""

from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from bot.runtime import Runtime
from bot.services.home import publish_home


def register(app: AsyncApp) -> None:
    app.event("app_home_opened")(handle_home_opened)


async def handle_home_opened(event: dict[str, Any], context: AsyncBoltContext) -> None:
    """Bolt acknowledges events itself. Opening the Messages tab sends this event too; only the
    Home tab is ours to draw. https://docs.slack.dev/reference/events/app_home_opened"""
    if event.get("tab") == "home":
        await refresh_home(context["runtime"], event["user"])


async def refresh_home(runtime: Runtime, user_id: str) -> None:
    """Publishes the user's Home tab as it stands now: on opening it, and after a reason is logged."""
    await publish_home(
        session_factory=runtime.session_factory,
        slack=runtime.slack,
        catalogue=runtime.catalogue,
        user_id=user_id,
        now=runtime.clock(),
        tz=runtime.settings.tz,
    )
