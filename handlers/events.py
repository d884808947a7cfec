"""Events API: the App Home tab, published afresh each time a user opens it."""

from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from bot.runtime import Runtime


def register(app: AsyncApp) -> None:
    app.event("app_home_opened")(handle_home_opened)


async def handle_home_opened(event: dict[str, Any], context: AsyncBoltContext) -> None:
    """Bolt acknowledges events itself. Opening the Messages tab sends this event too; only the
    Home tab is ours to draw. https://docs.slack.dev/reference/events/app_home_opened"""
    if event.get("tab") == "home":
        runtime: Runtime = context["runtime"]
        await runtime.home.publish(event["user"])
