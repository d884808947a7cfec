"""A fake Slack Web API over real HTTP, on port 0, inside the test's own event loop.

It records every call (method and parameters), answers the methods the bot uses the way Slack
does, and can be told to fail a method: a 500, or a 429 with `Retry-After`.

Files go up as Slack's external upload flow has them: files.getUploadURLExternal gives an upload
URL on this server, the bytes are POSTed there (recorded as an "upload" call, and failed with
`fail("upload", …)`), and files.completeUploadExternal shares the file in a channel.
https://docs.slack.dev/messaging/working-with-files#uploading_files

Messages keep what they were posted with, their `metadata` too, and conversations.history and
conversations.replies list them as Slack does (newest first, or a thread's oldest first; metadata
only with `include_all_metadata`). Timestamps are the time of the post, as Slack's are.
"""

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

WAIT_SECONDS = 10.0
MAX_UPLOAD_BYTES = 1024**3
"""Slack takes files of up to 1 GB through its upload URLs."""


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    client_port: int = 0
    """The port the call came from: calls on one kept-alive connection share it."""


@dataclass
class Failure:
    status: int
    retry_after: int | None = None
    error: str | None = None
    body: str | dict[str, Any] | None = None
    """The whole answer, instead of `{"ok": false, "error": …}`: a text (as a proxy's error page
    is) or a JSON object."""


@dataclass
class SlackFile:
    """A file as uploaded: what files.getUploadURLExternal was told, the bytes, and where
    files.completeUploadExternal shared it."""

    filename: str
    length: int
    alt_txt: str | None
    content: bytes | None = None
    title: str | None = None
    channel: str | None = None
    completed: bool = False


@dataclass
class FakeSlack:
    users_by_email: dict[str, str] = field(default_factory=dict)
    tz_by_user: dict[str, str] = field(default_factory=dict)
    """Each user's time zone as `users.info` and `users.lookupByEmail` give it (default New York)."""
    names_by_user: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Each user's (real_name, profile.display_name) as `users.info` and `users.lookupByEmail` give
    them; a user not listed has neither."""
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    files: dict[str, SlackFile] = field(default_factory=dict)
    """Every file an upload URL was asked for, by file id."""
    _failures: dict[str, list[Failure]] = field(default_factory=dict)
    _hanging: set[str] = field(default_factory=set)
    _accepting_then_hanging: set[str] = field(default_factory=set)
    _accepting_then_dropping: set[str] = field(default_factory=set)
    _held: dict[str, asyncio.Future[Failure | None]] = field(default_factory=dict)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    url: str = ""
    response_url: str = ""
    """The `response_url` of a slash command or a click (hooks.slack.com in Slack); append an id.
    What the bot posts there is recorded as a "response_url" call."""
    socket: web.WebSocketResponse | None = None
    socket_replies: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    async def start(self, port: int = 0) -> None:
        """Serves on `port` of 127.0.0.1, by default a free one."""
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_post("/response_url/{id}", self._response_url)
        app.router.add_get("/socket-mode", self._socket_mode)
        app.router.add_post("/upload/{file_id}", self._upload)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/api/"
        self.response_url = f"http://127.0.0.1:{port}/response_url/"
        self._socket_url = f"ws://127.0.0.1:{port}/socket-mode"
        self._upload_url = f"http://127.0.0.1:{port}/upload/"

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def fail(self, method: str, *failures: Failure) -> None:
        """The next calls to `method` get these answers, in order; then it works again."""
        self._failures.setdefault(method, []).extend(failures)

    def hang(self, method: str) -> None:
        """The next call to `method` is received (and recorded in `calls`) but never answered, as if
        the connection died on the way: Slack did nothing with it."""
        self._hanging.add(method)

    def accept_then_hang(self, method: str) -> None:
        """The next call to `method` is received, recorded and done (a post is posted), but never
        answered: the answer is lost on the way back, so the caller cannot know it worked."""
        self._accepting_then_hanging.add(method)

    def accept_then_drop(self, method: str) -> None:
        """The next call to `method` is received, recorded and done, then its connection is closed
        before any answer: the caller sees the connection lost after sending."""
        self._accepting_then_dropping.add(method)

    def open_connections(self) -> int:
        """How many client connections are open now, kept-alive ones included."""
        assert self._runner is not None and self._runner.server is not None
        return len(self._runner.server.connections)

    def hold(self, method: str) -> asyncio.Future[Failure | None]:
        """The next call to `method` is received (and recorded in `calls`), then answered only when
        the test sets the returned future: as usual with None, or with the Failure given. A Slack
        slower than anything the bot waits for."""
        self._held[method] = asyncio.get_running_loop().create_future()
        return self._held[method]

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [call.params for call in self.calls if call.method == method]

    async def wait_for(self, method: str, count: int = 1) -> list[dict[str, Any]]:
        """Polls until `method` has been called `count` times; fails the test after WAIT_SECONDS."""
        deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
        while len(self.calls_to(method)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{method} called {len(self.calls_to(method))} times, expected {count}")
            await asyncio.sleep(0.02)
        return self.calls_to(method)

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _read_params(request)
        self.calls.append(Call(method, params, request.transport.get_extra_info("peername")[1]))
        if method in self._hanging:
            self._hanging.discard(method)
            await self._stopping.wait()
            return web.json_response({"ok": False, "error": "fake_slack_stopped"}, status=503)
        held = self._held.pop(method, None)
        if held is not None:
            answer_with = await held
            if answer_with is not None:
                self._failures.setdefault(method, []).insert(0, answer_with)
        failed = self._failure(method)
        if failed is not None:
            return failed
        answer = getattr(self, "_" + method.replace(".", "_"), None)
        body = answer(params) if answer else {"ok": True}
        if method in self._accepting_then_hanging:
            self._accepting_then_hanging.discard(method)
            await self._stopping.wait()
            return web.json_response({"ok": False, "error": "fake_slack_stopped"}, status=503)
        if method in self._accepting_then_dropping:
            self._accepting_then_dropping.discard(method)
            assert request.transport is not None
            request.transport.close()
        return web.json_response(body)

    def _failure(self, method: str) -> web.Response | None:
        pending = self._failures.get(method)
        if not pending:
            return None
        failure = pending.pop(0)
        headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
        if isinstance(failure.body, str):
            return web.Response(text=failure.body, status=failure.status, headers=headers)
        if failure.body is not None:
            return web.json_response(failure.body, status=failure.status, headers=headers)
        error = failure.error or ("ratelimited" if failure.status == 429 else "internal_error")
        return web.json_response({"ok": False, "error": error}, status=failure.status, headers=headers)

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload URL files.getUploadURLExternal gave (files.slack.com in Slack): takes the raw bytes."""
        file_id = request.match_info["file_id"]
        content = await request.read()
        self.calls.append(Call("upload", {"file_id": file_id, "length": len(content)}))
        failed = self._failure("upload")
        if failed is not None:
            return failed
        if file_id not in self.files:
            return web.Response(status=404, text="unknown upload URL")
        self.files[file_id].content = content
        return web.Response(text=f"OK - {len(content)}")

    async def _response_url(self, request: web.Request) -> web.Response:
        """A slash command's or a click's `response_url`, recorded as a "response_url" call."""
        self.calls.append(Call("response_url", {"id": request.match_info["id"], **await request.json()}))
        return web.Response(text="ok")

    async def send_envelope(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Sends a Socket Mode envelope to the connected bot and returns its acknowledgement."""
        socket = await _until(lambda: self.socket, "the bot to open its Socket Mode connection")
        envelope_id = f"envelope-{next(self._ts)}"
        await socket.send_json(
            {"envelope_id": envelope_id, "type": kind, "payload": payload, "accepts_response_payload": True}
        )
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                reply = await self.socket_replies.get()
                if reply.get("envelope_id") == envelope_id:
                    return reply

    async def _socket_mode(self, request: web.Request) -> web.WebSocketResponse:
        """Slack's Socket Mode side: says hello, then relays what the bot sends back."""
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0001"}})
        self.socket = socket
        async for message in socket:
            self.socket_replies.put_nowait(json.loads(message.data))
        return socket

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": self._socket_url}

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "user_id": "UBOT0001", "bot_id": "BBOT0001", "team_id": "T0001", "team": "Acme"}

    def _users_lookupByEmail(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = self.users_by_email.get(params.get("email", ""))
        if user_id is None:
            return {"ok": False, "error": "users_not_found"}
        return {"ok": True, "user": self._user(user_id)}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "user": self._user(params["user"])}

    def _user(self, user_id: str) -> dict[str, Any]:
        real_name, display_name = self.names_by_user.get(user_id, ("", ""))
        return {
            "id": user_id,
            "tz": self.tz_by_user.get(user_id, "America/New_York"),
            "real_name": real_name,
            "profile": {"real_name": real_name, "display_name": display_name},
        }

    def _chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params["channel"]
        if channel.startswith(("U", "W")):
            channel = "D" + channel[1:]
        self.messages[(channel, ts := self._new_ts())] = params
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": params.get("text")}}

    def _new_ts(self) -> str:
        """Now, as Slack's `ts` gives it: seconds, then a part that tells apart messages of one second."""
        return f"{int(time.time())}.{next(self._ts):06d}"

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """The channel's messages, not thread replies, newest first: from `latest` (default now) back
        to `oldest`, `limit` (default 100) to a page, the next page at `cursor`."""
        listed = [
            (ts, message)
            for (channel, ts), message in self.messages.items()
            if channel == params["channel"] and message.get("thread_ts") in (None, ts)
        ]
        listed = [(ts, message) for ts, message in listed if float(params.get("oldest", 0)) < float(ts)]
        if "latest" in params:
            listed = [(ts, message) for ts, message in listed if float(ts) < float(params["latest"])]
        listed.sort(key=lambda pair: float(pair[0]), reverse=True)
        return self._page(listed, params)

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        """The thread at `ts`: its parent, then its replies oldest first (from `oldest`), paged."""
        parent = (params["channel"], params["ts"])
        if parent not in self.messages:
            return {"ok": False, "error": "thread_not_found"}
        replies = sorted(
            (
                (ts, message)
                for (channel, ts), message in self.messages.items()
                if channel == params["channel"]
                and message.get("thread_ts") == params["ts"]
                and float(params.get("oldest", 0)) < float(ts)
            ),
            key=lambda pair: float(pair[0]),
        )
        return self._page([(params["ts"], self.messages[parent]), *replies], params)

    def _page(self, listed: list[tuple[str, dict[str, Any]]], params: dict[str, Any]) -> dict[str, Any]:
        start = int(params.get("cursor") or 0)
        end = start + int(params.get("limit", 100))
        with_metadata = str(params.get("include_all_metadata", "")).lower() in {"1", "true"}
        messages = [
            {
                "type": "message",
                "ts": ts,
                "text": message.get("text"),
                "bot_id": "BBOT0001",
                **({"thread_ts": message["thread_ts"]} if message.get("thread_ts") else {}),
                **({"metadata": message["metadata"]} if with_metadata and "metadata" in message else {}),
            }
            for ts, message in listed[start:end]
        ]
        more = end < len(listed)
        return {
            "ok": True,
            "messages": messages,
            "has_more": more,
            "response_metadata": {"next_cursor": str(end) if more else ""},
        }

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (params["channel"], params["ts"])
        if key not in self.messages:
            return {"ok": False, "error": "message_not_found"}
        self.messages[key] = params
        return {"ok": True, "channel": key[0], "ts": key[1]}

    def _chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        # Slack answers channel_not_found where the bot is not a member; here the bot is a member
        # of the conversations it has posted in.
        if params["channel"] not in {channel for channel, _ in self.messages}:
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": True, "message_ts": f"{1700000000 + next(self._ts)}.000200"}

    def _conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        """The DM with one user: D + the user id's rest, the same channel chat.postMessage answers."""
        return {"ok": True, "channel": {"id": "D" + params["users"][1:]}}

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        view_id = f"V{next(self._ts):08d}"
        return {"ok": True, "view": {**params["view"], "id": view_id, "hash": f"hash-{view_id}"}}

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "view": {**params["view"], "id": params.get("view_id"), "hash": "hash-updated"}}

    def _files_getUploadURLExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("filename") or int(params.get("length", 0)) < 1:
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._ts):08d}"
        self.files[file_id] = SlackFile(params["filename"], int(params["length"]), params.get("alt_txt"))
        return {"ok": True, "upload_url": self._upload_url + file_id, "file_id": file_id}

    def _files_completeUploadExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        completed = []
        for item in json.loads(params["files"]):
            uploaded = self.files.get(item["id"])
            if uploaded is None or uploaded.content is None:
                return {"ok": False, "error": "file_not_found"}
            if len(uploaded.content) != uploaded.length:
                # Not seen from Slack, whose error for it is undocumented: the fake's own check.
                return {"ok": False, "error": "invalid_arguments"}
            uploaded.title = item.get("title")
            uploaded.channel = params.get("channel_id")
            uploaded.completed = True
            completed.append({"id": item["id"], "title": uploaded.title})
        return {"ok": True, "files": completed}

    def shared_files(self, channel: str) -> list[SlackFile]:
        """The files completed and shared in `channel`, in the order they were uploaded."""
        return [file for file in self.files.values() if file.completed and file.channel == channel]


async def _until(check: Any, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return check()


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Parameters as slack_sdk sends them: query string, form or JSON; JSON-in-form fields decoded."""
    params: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        params.update(await request.json())
    elif request.can_read_body:
        params.update(await request.post())
    for key in ("blocks", "view", "metadata"):
        if isinstance(params.get(key), str):
            params[key] = json.loads(params[key])
    return params


def posted_to(slack: FakeSlack, channel: str) -> list[dict[str, Any]]:
    """The messages Slack accepted in `channel`, in order."""
    return [message for (where, _), message in slack.messages.items() if where == channel]
