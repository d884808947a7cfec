"""Thin adapters between the outside world and `bot.services`: one registration tree."""

from aiohttp import web
from slack_bolt.async_app import AsyncApp

from handlers import actions, commands, crm_webhooks, errors, events, http, metrics, suggestions, views


def register_listeners(app: AsyncApp) -> None:
    actions.register(app)
    commands.register(app)
    events.register(app)
    suggestions.register(app)
    views.register(app)
    errors.register(app)


def register_routes(web_app: web.Application, bolt_app: AsyncApp | None) -> None:
    """The HTTP routes; `/slack/events` only in HTTP mode (`bolt_app` given)."""
    web_app.middlewares.append(metrics.count_refused_webhooks)
    http.register(web_app, bolt_app)
    crm_webhooks.register(web_app)


def register_metrics_route(metrics_app: web.Application) -> None:
    """`GET /metrics`, on the app that serves METRICS_PORT."""
    metrics.register(metrics_app)
