"""What the benchmarks share: servers in their own processes, a fake Slack Web API, the bot as
`closedlost serve` builds it, and the deal webhook's signature.

Run the benchmarks as scripts (`.venv/bin/python bench/webhook.py`): this folder is then on the
import path, and spawned server processes import this module by name.
"""

import argparse
import asyncio
import hashlib
import hmac
import multiprocessing
import resource
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

SIGNING_SECRET = "bench-signing-secret"
DEALS_SECRET = "bench-deals-secret"
BOT_TOKEN = "xoxb-bench"


def parse_arguments(parser: argparse.ArgumentParser, smoke: dict[str, Any]) -> argparse.Namespace:
    """The command line, with `--smoke`: the `smoke` values replace the defaults (options given on
    the command line still win), so that the script runs through in seconds. CI runs every bench so,
    to know each still runs; its figures mean nothing at that size."""
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, to check that the benchmark runs (CI); the figures mean nothing",
    )
    arguments = parser.parse_args()
    if arguments.smoke:
        parser.set_defaults(**smoke)
        arguments = parser.parse_args()
    return arguments


def sign_deals(body: bytes) -> dict[str, str]:
    """README.md ("The deal webhook"): v0= + HMAC-SHA256(secret, v0:{timestamp}:{body})."""
    ts = str(int(time.time()))
    digest = hmac.new(DEALS_SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Closedlost-Timestamp": ts, "X-Closedlost-Signature": f"v0={digest}", "Content-Type": "application/json"}


def run_fake_slack(pipe: Any) -> None:
    """Answers the methods the bot and Bolt call with ok JSON, and counts the calls."""
    calls: Counter[str] = Counter()
    numbers = iter(range(1, 10**9))

    async def answer(request: web.Request) -> web.Response:
        method = request.match_info["method"]
        calls[method] += 1
        params = dict(await request.post()) if request.content_type != "application/json" else await request.json()
        if method == "auth.test":
            return web.json_response({"ok": True, "user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1", "team": "B"})
        if method == "users.lookupByEmail":
            return web.json_response({"ok": True, "user": {"id": "U00000000", "tz": "UTC"}})
        if method == "users.info":
            return web.json_response({"ok": True, "user": {"id": params.get("user"), "tz": "UTC"}})
        if method == "chat.postMessage":
            channel = "D" + str(params["channel"])[1:]
            return web.json_response({"ok": True, "channel": channel, "ts": f"{1700000000 + next(numbers)}.000100"})
        if method in ("views.open", "views.update"):
            return web.json_response({"ok": True, "view": {"id": f"V{next(numbers):08d}", "hash": "h"}})
        if method == "chat.postEphemeral":
            return web.json_response({"ok": True, "message_ts": f"{1700000000 + next(numbers)}.000200"})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/api/{method}", answer)
    serve(app, pipe, {"calls": lambda: dict(calls)})


def run_bot(pipe: Any, database_url: str, slack_url: str, overrides: dict[str, Any] | None = None) -> None:
    """The bot's app as `closedlost serve` builds it; `overrides` are further Settings fields."""
    from bot.app import create_app
    from bot.settings import Settings
    from storage.migrate import upgrade_to_head

    upgrade_to_head(database_url)
    settings = Settings(
        _env_file=None,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack_url,
        database_url=database_url,
        deals_webhook_secret=DEALS_SECRET,
        log_level="WARNING",
        **(overrides or {}),
    )
    serve(create_app(settings), pipe)


def peak_rss_mib() -> int:
    """This process's own peak resident memory (VmHWM). Not getrusage's ru_maxrss: at exec, Linux
    carries into it the size of the process that spawned this one, here the benchmark itself."""
    status = Path("/proc/self/status").read_text()
    [kib] = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(kib) // 1024


def serve(app: web.Application, pipe: Any, commands: dict[str, Callable[[], Any]] | None = None) -> None:
    """Serves `app` on a free port, sends that port up the pipe, then answers commands ("rss" in MiB,
    "cpu" in seconds, and those given) until told to stop."""

    def cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    answers = {"rss": peak_rss_mib, "cpu": cpu_seconds}
    answers.update(commands or {})

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        pipe.send(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        while (command := await asyncio.to_thread(pipe.recv)) in answers:
            pipe.send(answers[command]())
        await runner.cleanup()

    asyncio.run(main())


class Server:
    def __init__(self, target: Any, *args: Any) -> None:
        self._pipe, child = multiprocessing.Pipe()
        # A daemon: a benchmark that fails half-way exits instead of waiting forever for its servers.
        self._process = multiprocessing.get_context("spawn").Process(target=target, args=(child, *args), daemon=True)
        self._process.start()
        self.port: int = self._pipe.recv()
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def ask(self, command: str) -> Any:
        self._pipe.send(command)
        return self._pipe.recv()

    def stop(self) -> None:
        self._pipe.send("stop")
        self._process.join(timeout=10)
