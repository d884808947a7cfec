"""Talks to the running bot the way Slack and a CRM do: signed requests in their real shapes."""

import asyncio
import hashlib
import hmac
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import aiohttp
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import inspect as sql_inspect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import (
    Deal,
    DealEventRecord,
    Loss,
    Message,
    MessageLoss,
    OutboxMessage,
    ReasonEntry,
    Rep,
    SlackUser,
)
from tests.fake_slack import WAIT_SECONDS, FakeSlack

T = TypeVar("T")

SLACK_SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DEALS_WEBHOOK_SECRET = "deals-secret-for-tests"
SETTLE_REP = "U0SETTLE1"
"""The owner of the deals `BotClient.settle_worker` posts; no test deal belongs to them."""


def sign_deals(body: bytes, *, secret: str = DEALS_WEBHOOK_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Headers for POST /webhooks/deals, computed as README.md ("The deal webhook") says (not with the bot's code)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Closedlost-Timestamp": ts, "X-Closedlost-Signature": f"v0={digest}", "Content-Type": "application/json"}


def sign_slack(
    body: str, *, timestamp: int | None = None, content_type: str = "application/x-www-form-urlencoded"
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(SLACK_SIGNING_SECRET).generate_signature(timestamp=ts, body=body)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature, "Content-Type": content_type}


def deal(**fields: Any) -> dict[str, Any]:
    """A closed-lost event in the generic webhook's shape; fields override the defaults."""
    event = {
        "deal_id": "0061x00000AbCdE",
        "name": "Acme — 200 seats",
        "stage": "closed_lost",
        "amount": 48000,
        "currency": "USD",
        "owner_email": "dana@example.com",
        "account": "Acme Corp",
        "changed_at": "2026-11-20T15:04:05Z",
        "url": "https://crm.example.com/deals/0061x00000AbCdE",
    }
    event.update(fields)
    return event


@dataclass
class Answer:
    status: int
    body: Any


async def eventually(check: Callable[[], Awaitable[T] | T], *, what: str) -> T:
    """Polls `check` (sync or async) until it returns something truthy, and returns that; fails the
    test after WAIT_SECONDS, naming `what` it waited for."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {WAIT_SECONDS} s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class BotClient:
    http: aiohttp.ClientSession
    slack: FakeSlack
    session_factory: async_sessionmaker[AsyncSession]
    _settle_count: int = 0
    _click_count: int = 0

    async def settle_worker(self) -> dict[str, Any]:
        """Shows that the outbox worker has handled everything queued so far: posts an unrelated
        closed-lost deal (id `settle-N`, lost now, so after every deal a test posts; owner given as
        the Slack id SETTLE_REP, a rep of its own, so its prompt never lists a test's deals) and
        waits for its DM, which the worker sends after every message queued before it. Leaves that
        deal, its event, its loss, its prompt message and its DM behind (and the one `users.info`
        call for SETTLE_REP, on the first settle); returns the DM."""
        self._settle_count += 1
        name = f"Settle deal {self._settle_count}"
        event = deal(
            deal_id=f"settle-{self._settle_count}",
            name=name,
            account=None,
            url=None,
            owner_email=None,
            owner_slack_id=SETTLE_REP,
            changed_at=None,
        )
        answer = await self.post_deals(event)
        assert answer.status == 202, answer

        def sent() -> dict[str, Any] | None:
            return next((m for m in self.slack.messages.values() if name in str(m.get("text"))), None)

        return await eventually(sent, what=f"the DM for {name!r}")

    async def post_deals(self, payload: Any, *, headers: dict[str, str] | None = None) -> Answer:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        async with self.http.post("/webhooks/deals", data=body, headers=headers or sign_deals(body)) as response:
            return Answer(response.status, await response.json())

    async def post_slack(self, payload: dict[str, Any]) -> Answer:
        """An interactivity payload, sent as Slack sends it: `payload=` + URL-encoded JSON, signed."""
        body = "payload=" + quote(json.dumps(payload))
        async with self.http.post("/slack/events", data=body, headers=sign_slack(body)) as response:
            text = await response.text()
            return Answer(response.status, json.loads(text) if text.startswith("{") else text)

    async def command(self, text: str, *, user_id: str, channel_name: str = "sales-ops") -> Answer:
        """`/closedlost {text}` as Slack sends it (a signed form body, the fields of Slack's example
        slash_command.txt), acknowledged with an empty 200; returns the answer then posted to the
        command's response_url."""
        before = len(self.slack.calls_to("response_url"))
        body = urlencode(
            {
                "token": "legacy",
                "team_id": "T0001",
                "team_domain": "acme-sales",
                "channel_id": "C0SALESOPS",
                "channel_name": channel_name,
                "user_id": user_id,
                "user_name": "rep",
                "command": "/closedlost",
                "text": text,
                "api_app_id": "A0001",
                "is_enterprise_install": "false",
                "response_url": f"{self.slack.response_url}{before + 1}",
                "trigger_id": "1234.5678.trigger",
            }
        )
        async with self.http.post("/slack/events", data=body, headers=sign_slack(body)) as response:
            acknowledged = Answer(response.status, await response.text())
        assert acknowledged == Answer(200, ""), acknowledged
        answered = dict((await self.slack.wait_for("response_url", before + 1))[before])
        assert answered.pop("id") == str(before + 1), "answered at another command's response_url"
        return Answer(acknowledged.status, answered)

    async def open_home(self, *, user_id: str, tab: str = "home") -> Answer:
        """The app_home_opened event as the Events API sends it (JSON, signed)."""
        envelope = {
            "token": "legacy",
            "team_id": "T0001",
            "context_team_id": "T0001",
            "context_enterprise_id": None,
            "api_app_id": "A0001",
            "event": {
                "type": "app_home_opened",
                "user": user_id,
                "channel": "D0HOME001",
                "tab": tab,
                "event_ts": "1.2",
            },
            "type": "event_callback",
            "event_id": f"Ev{time.monotonic_ns()}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": "T0001",
                    "user_id": "UBOT0001",
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        body = json.dumps(envelope)
        headers = sign_slack(body, content_type="application/json")
        async with self.http.post("/slack/events", data=body, headers=headers) as response:
            return Answer(response.status, await response.text())

    async def click(self, *, user_id: str, action_id: str, value: str, message: tuple[str, str]) -> Answer:
        """A click on a button of the message at (channel, ts); its `response_url` is on the fake
        Slack, which records what the bot posts there as a "response_url" call (id `click-N`)."""
        channel, ts = message
        self._click_count += 1
        return await self.post_slack(
            {
                "type": "block_actions",
                "user": {"id": user_id, "username": "rep", "name": "rep", "team_id": "T0001"},
                "api_app_id": "A0001",
                "token": "legacy",
                "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
                "trigger_id": "1234.5678.trigger",
                "team": {"id": "T0001", "domain": "acme"},
                "enterprise": None,
                "is_enterprise_install": False,
                "channel": {"id": channel, "name": "directmessage"},
                "message": {"type": "message", "ts": ts, "text": "", "blocks": []},
                "state": {"values": {}},
                "response_url": f"{self.slack.response_url}click-{self._click_count}",
                "actions": [
                    {"action_id": action_id, "block_id": "b", "value": value, "type": "button", "action_ts": "1.2"}
                ],
            }
        )

    async def pick_reason(self, *, user_id: str, view: dict[str, Any], code: str) -> Answer:
        """The rep picks a reason in the open modal (a block_actions from a view)."""
        return await self.post_slack(
            {
                "type": "block_actions",
                "user": {"id": user_id, "team_id": "T0001"},
                "api_app_id": "A0001",
                "token": "legacy",
                "container": {"type": "view", "view_id": view["id"]},
                "trigger_id": "1234.5678.trigger",
                "team": {"id": "T0001", "domain": "acme"},
                "view": {**view, "state": {"values": {}}},
                "actions": [
                    {
                        "action_id": "reason_select",
                        "block_id": "reason",
                        "type": "static_select",
                        "selected_option": {"text": {"type": "plain_text", "text": code}, "value": code},
                        "action_ts": "1.2",
                    }
                ],
            }
        )

    async def click_in_view(
        self, *, user_id: str, view: dict[str, Any], action_id: str, value: str, values: dict[str, Any]
    ) -> Answer:
        """A click on a button inside the open modal `view`, whose inputs hold `values` (by action
        id): a block_actions from a view, which carries the view's state."""
        return await self.post_slack(
            {
                "type": "block_actions",
                "user": {"id": user_id, "team_id": "T0001"},
                "api_app_id": "A0001",
                "token": "legacy",
                "container": {"type": "view", "view_id": view["id"]},
                "trigger_id": "1234.5678.trigger",
                "team": {"id": "T0001", "domain": "acme"},
                "view": {**view, "state": {"values": view_state(view, values)}},
                "actions": [
                    {"action_id": action_id, "block_id": "b", "value": value, "type": "button", "action_ts": "1.2"}
                ],
            }
        )

    async def type_in_menu(
        self, *, user_id: str, view: dict[str, Any], block_id: str, action_id: str, typed: str
    ) -> Answer:
        """The rep types `typed` in an external select of the open modal: Slack's options request
        (a block_suggestion), answered with the options in the response's body."""
        return await self.post_slack(
            {
                "type": "block_suggestion",
                "user": {"id": user_id, "username": "rep", "name": "rep", "team_id": "T0001"},
                "container": {"type": "view", "view_id": view["id"]},
                "api_app_id": "A0001",
                "token": "legacy",
                "action_id": action_id,
                "block_id": block_id,
                "value": typed,
                "team": {"id": "T0001", "domain": "acme"},
                "view": {**view, "state": {"values": {}}},
                "is_enterprise_install": False,
                "enterprise": None,
            }
        )

    async def submit(self, *, user_id: str, view: dict[str, Any], values: dict[str, Any]) -> Answer:
        """Submits `view` (as the bot opened it) with `values` keyed by action id."""
        return await self.post_slack(
            {
                "type": "view_submission",
                "team": {"id": "T0001", "domain": "acme"},
                "user": {"id": user_id, "username": "rep", "name": "rep", "team_id": "T0001"},
                "api_app_id": "A0001",
                "token": "legacy",
                "trigger_id": "1234.5678.trigger",
                "view": {**view, "state": {"values": view_state(view, values)}},
                "response_urls": [],
                "is_enterprise_install": False,
                "enterprise": None,
            }
        )

    async def prompt(self, number: int = 1) -> tuple[dict[str, Any], tuple[str, str]]:
        """The `number`th DM the bot posted, once it has, and its (channel, ts) as Slack returned them."""
        posted = (await self.slack.wait_for("chat.postMessage", number))[number - 1]
        where = next((key for key, message in self.slack.messages.items() if message is posted), None)
        if where is None:
            raise AssertionError("that chat.postMessage was not answered ok by the fake Slack")
        return posted, where

    async def open_modal(
        self, *, user_id: str, value: str, message: tuple[str, str], action_id: str = "log_reason"
    ) -> dict[str, Any]:
        """Clicks Log reason (or Edit) and returns the modal the bot opened, with an id of its own."""
        before = len(self.slack.calls_to("views.open"))
        await self.click(user_id=user_id, action_id=action_id, value=value, message=message)
        opened = (await self.slack.wait_for("views.open", before + 1))[before]
        return {**opened["view"], "id": f"V0MODAL{before:02d}", "hash": f"h{before}"}

    async def rows(self, model: type) -> list[Any]:
        return await rows(self.session_factory, model)

    async def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        return await snapshot_of(self.session_factory)


async def snapshot_of(session_factory: async_sessionmaker[AsyncSession]) -> dict[str, list[tuple[Any, ...]]]:
    """Everything stored, as plain tuples: compare two snapshots to show nothing changed."""
    tables = {
        "deal": Deal,
        "deal_event": DealEventRecord,
        "loss": Loss,
        "reason_entry": ReasonEntry,
        "message": Message,
        "message_loss": MessageLoss,
        "outbox": OutboxMessage,
        "rep": Rep,
        "slack_user": SlackUser,
    }
    result = {}
    for name, model in tables.items():
        columns = model.__table__.columns.keys()
        result[name] = [tuple(getattr(row, column) for column in columns) for row in await rows(session_factory, model)]
    return result


async def rows(session_factory: async_sessionmaker[AsyncSession], model: type) -> list[Any]:
    """Every row of `model`'s table, in primary key order."""
    async with session_factory() as session:
        return list(await session.scalars(select(model).order_by(*sql_inspect(model).primary_key)))


def button(message: dict[str, Any], action_id: str) -> dict[str, Any]:
    for block in message["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return dict(element)
    raise AssertionError(f"no {action_id} button in {message['blocks']}")


def view_state(view: dict[str, Any], values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`state.values` for the input blocks of `view`, filled from `values` by action id (a
    multi-select takes the list of options picked; a select, the value of the option picked)."""
    state: dict[str, dict[str, Any]] = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        action_id = element["action_id"]
        value = values.get(action_id)
        if element["type"] in ("static_select", "external_select"):
            selected = {"text": {"type": "plain_text", "text": value}, "value": value} if value else None
            entry: dict[str, Any] = {"type": element["type"], "selected_option": selected}
        elif element["type"] == "multi_static_select":
            entry = {"type": "multi_static_select", "selected_options": value or []}
        elif element["type"] == "datepicker":
            entry = {"type": "datepicker", "selected_date": value}
        else:
            entry = {"type": element["type"], "value": value}
        state[block["block_id"]] = {action_id: entry}
    return state
