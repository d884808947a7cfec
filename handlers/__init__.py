"""Thin adapters between the outside world and `bot.services`: one registration tree."""

from aiohttp import web
from slack_bolt.async_app import AsyncApp

from handlers import actions, commands, crm_webhooks, errors, events, http, views


def register_listeners(app: AsyncApp) -> None:
    actions.register(app)
    commands.register(app)
    events.register(app)
    views.register(app)
    errors.register(app)


def register_routes(web_app: web.Application, bolt_app: AsyncApp | None) -> None:
    """The HTTP routes; `/slack/events` only in HTTP mode (`bolt_app` given)."""
    http.register(web_app, bolt_app)
    crm_webhooks.register(web_app)
