"""Fake HubSpot, Pipedrive and Salesforce APIs over real HTTP, on port 0, in the test's own loop.

One server answers the few calls the bot makes to each CRM, records every call (name, path, query,
headers, body), and can be told to fail a call: a 500, or a 429 with `Retry-After`.
"""

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fake_slack import Failure

SALESFORCE_TOKEN = "00Dfake!salesforce-access-token"


@dataclass
class CrmCall:
    name: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


def default_pipelines() -> list[dict[str, Any]]:
    """HubSpot's default sales pipeline, stage ids and metadata as its pipelines API returns them."""

    def stage(stage_id: str, label: str, closed: bool, probability: str) -> dict[str, Any]:
        metadata = {"isClosed": "true" if closed else "false", "probability": probability}
        return {"id": stage_id, "label": label, "displayOrder": 0, "metadata": metadata, "archived": False}

    return [
        {
            "id": "default",
            "label": "Sales Pipeline",
            "stages": [
                stage("appointmentscheduled", "Appointment Scheduled", False, "0.2"),
                stage("contractsent", "Contract Sent", False, "0.9"),
                stage("closedwon", "Closed Won", True, "1.0"),
                stage("closedlost", "Closed Lost", True, "0.0"),
            ],
        }
    ]


@dataclass
class FakeCrm:
    hubspot_deals: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Deal id to its properties, as strings, as HubSpot stores them."""
    hubspot_owners: dict[str, str] = field(default_factory=dict)
    hubspot_pipelines: list[dict[str, Any]] = field(default_factory=default_pipelines)
    pipedrive_users: dict[int, str] = field(default_factory=dict)
    calls: list[CrmCall] = field(default_factory=list)
    url: str = ""
    _failures: dict[str, list[Failure]] = field(default_factory=dict)
    _held: dict[str, asyncio.Future[Failure | None]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        routes = [
            ("GET", "/crm/v3/objects/deals/{id}", "hubspot.deal", self._hubspot_deal),
            ("PATCH", "/crm/v3/objects/deals/{id}", "hubspot.update_deal", self._ok),
            ("GET", "/crm/v3/pipelines/deals", "hubspot.pipelines", self._hubspot_pipelines),
            ("GET", "/crm/v3/owners/{id}", "hubspot.owner", self._hubspot_owner),
            ("GET", "/api/v1/users/{id}", "pipedrive.user", self._pipedrive_user),
            ("PATCH", "/api/v2/deals/{id}", "pipedrive.update_deal", self._ok),
            ("POST", "/services/oauth2/token", "salesforce.token", self._salesforce_token),
            ("PATCH", "/services/data/{version}/sobjects/Opportunity/{id}", "salesforce.update", self._no_content),
        ]
        for method, path, name, answer in routes:
            app.router.add_route(method, path, self._recording(name, answer))
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def fail(self, name: str, *failures: Failure) -> None:
        """The next calls named `name` get these answers, in order; then it works again."""
        self._failures.setdefault(name, []).extend(failures)

    def hold(self, name: str) -> asyncio.Future[Failure | None]:
        """The next call named `name` is recorded, then answered only when the test sets the
        returned future: as usual with None, or with the Failure given (a slow CRM)."""
        self._held[name] = asyncio.get_running_loop().create_future()
        return self._held[name]

    def calls_to(self, name: str) -> list[CrmCall]:
        return [call for call in self.calls if call.name == name]

    def _recording(self, name: str, answer: Any) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            text = await request.text()
            if request.content_type == "application/json" and text:
                body: Any = json.loads(text)
            elif request.content_type == "application/x-www-form-urlencoded":
                body = dict(await request.post())
            else:
                body = text
            self.calls.append(CrmCall(name, request.path, dict(request.query), dict(request.headers), body))
            pending = self._failures.get(name, [])
            held = self._held.pop(name, None)
            if held is not None:
                answer_with = await held
                if answer_with is not None:
                    pending = [answer_with]
            if pending:
                failure = pending.pop(0)
                headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
                return web.json_response(
                    {"message": failure.error or "failing"}, status=failure.status, headers=headers
                )
            return await answer(request)

        return handle

    async def _hubspot_deal(self, request: web.Request) -> web.Response:
        deal_id = request.match_info["id"]
        if deal_id not in self.hubspot_deals:
            return web.json_response({"status": "error", "category": "OBJECT_NOT_FOUND"}, status=404)
        wanted = request.query.get("properties", "").split(",")
        stored = self.hubspot_deals[deal_id]
        properties = {name: stored.get(name) for name in wanted if name}
        return web.json_response({"id": deal_id, "properties": properties, "archived": False})

    async def _hubspot_pipelines(self, request: web.Request) -> web.Response:
        return web.json_response({"results": self.hubspot_pipelines})

    async def _hubspot_owner(self, request: web.Request) -> web.Response:
        email = self.hubspot_owners.get(request.match_info["id"])
        if email is None:
            return web.json_response({"status": "error", "category": "OBJECT_NOT_FOUND"}, status=404)
        return web.json_response({"id": request.match_info["id"], "email": email, "firstName": "Dana"})

    async def _pipedrive_user(self, request: web.Request) -> web.Response:
        email = self.pipedrive_users.get(int(request.match_info["id"]))
        if email is None:
            return web.json_response({"success": False, "error": "User not found"}, status=404)
        return web.json_response({"success": True, "data": {"id": int(request.match_info["id"]), "email": email}})

    async def _salesforce_token(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"access_token": SALESFORCE_TOKEN, "instance_url": self.url, "token_type": "Bearer", "scope": "api"}
        )

    async def _ok(self, request: web.Request) -> web.Response:
        return web.json_response({"success": True})

    async def _no_content(self, request: web.Request) -> web.Response:
        return web.Response(status=204)
