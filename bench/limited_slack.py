"""A fake Slack Web API that enforces Slack's rate limits, for the burst benchmark (bench/burst.py).

Limits (https://docs.slack.dev/apis/web-api/rate-limits):

- chat.postMessage: one message a second per channel, with short bursts of POST_BURST allowed
  (a token bucket per channel);
- Tier 3 (users.lookupByEmail, chat.update, conversations.open, conversations.history,
  conversations.replies): 50 calls a minute per method;
- Tier 4 (users.info, views.*): 100 calls a minute per method;

past them it answers 429 `ratelimited` with `Retry-After`: the whole seconds until the window (or
the bucket) frees a call. Methods not listed (auth.test, chat.postEphemeral, …) are not limited.

It counts every call per method and per rep (the email, user or DM channel the call is about), the
429s among them, and every message it delivered per channel, with the outbox message its metadata
names (`event_payload.message_id`), which conversations.history lists back as Slack does (newest
first, metadata only with `include_all_metadata`; `ts` is the time of the post, as Slack's is), so
that the bot can look for a post whose outcome it does not know. A delivered prompt is read back for
the deals it covers: the total a bulk prompt announces ("N of your deals were closed lost
together", or "N deals closed together — a pipeline clean-up?"), or the one deal of a single
prompt, and the deal names listed on its first page, so that the benchmark can tell lost deals from
duplicated ones.
"""

import json
import math
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from harness import serve

WINDOW_SECONDS = 60.0
POST_PER_SECOND = 1.0
POST_BURST = 3
TIER_3 = ("users.lookupByEmail", "chat.update", "conversations.open", "conversations.history", "conversations.replies")
TIER_4 = ("users.info", "views.open", "views.update", "views.push", "views.publish")
PER_MINUTE = {**dict.fromkeys(TIER_3, 50), **dict.fromkeys(TIER_4, 100)}

DEAL_NAME = "Burst deal {number:05d}"
DEAL_NAME_PATTERN = re.compile(r"Burst deal (\d{5})")
# The count a bulk prompt announces: in its intro, or in the clean-up question that replaces it for
# CLEAN_UP_MIN_DEALS deals or more (bot/views/prompt.py).
BULK_TOTAL_PATTERN = re.compile(r"([\d,]+) (?:of your deals were closed lost|deals closed) together")


def rep_email(rep: int) -> str:
    return f"rep{rep}@example.com"


def rep_user_id(rep: int) -> str:
    return f"UREP{rep:05d}"


@dataclass
class Limiter:
    """Slack's limits, as one clock reads them; `retry_after` is None when the call may go."""

    windows: dict[str, deque[float]] = field(default_factory=dict)
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # channel: (tokens, at)

    def retry_after(self, method: str, channel: str | None, now: float) -> int | None:
        if method == "chat.postMessage" and channel:
            tokens, at = self.buckets.get(channel, (float(POST_BURST), now))
            tokens = min(float(POST_BURST), tokens + (now - at) * POST_PER_SECOND)
            if tokens < 1.0:
                self.buckets[channel] = (tokens, now)
                return max(1, math.ceil((1.0 - tokens) / POST_PER_SECOND))
            self.buckets[channel] = (tokens - 1.0, now)
            return None
        limit = PER_MINUTE.get(method)
        if limit is None:
            return None
        window = self.windows.setdefault(method, deque())
        while window and window[0] <= now - WINDOW_SECONDS:
            window.popleft()
        if len(window) >= limit:
            return max(1, math.ceil(window[0] + WINDOW_SECONDS - now))
        window.append(now)
        return None


@dataclass
class Delivered:
    channel: str
    ts: str
    rep: int | None
    thread_ts: str | None
    text: str
    blocks_json: str
    posted_at: float
    metadata: dict[str, Any] | None
    updates: int = 0

    @property
    def message_id(self) -> Any:
        """The outbox message the post's metadata names (bot.services.delivery.POST_EVENT_TYPE)."""
        return ((self.metadata or {}).get("event_payload") or {}).get("message_id")


def covered_deals(text: str, blocks_json: str) -> tuple[int, list[int]]:
    """How many deals a prompt covers, and the deal numbers it shows (a bulk prompt's first page)."""
    shown = sorted({int(number) for number in DEAL_NAME_PATTERN.findall(blocks_json)})
    total = BULK_TOTAL_PATTERN.search(blocks_json)
    return (int(total.group(1).replace(",", "")) if total else len(shown)), shown


def run_limited_slack(pipe: Any, reps: int) -> None:
    """Serves the fake in this process (see harness.serve); commands "progress" and "report"."""
    users = {rep_email(rep): rep_user_id(rep) for rep in range(reps)}
    rep_of_user = {user: rep for rep, user in enumerate(users.values())}
    limiter = Limiter()
    calls: Counter[str] = Counter()
    throttled: Counter[str] = Counter()
    calls_by_rep: dict[int, Counter[str]] = {}
    messages: dict[tuple[str, str], Delivered] = {}
    numbers = iter(range(1, 10**9))
    last_call = [0.0]

    def rep_of(method: str, params: dict[str, Any]) -> int | None:
        if method == "users.lookupByEmail":
            user = users.get(str(params.get("email", "")))
        else:
            user = str(params.get("user") or params.get("users") or params.get("channel") or "")
        if user[:1] == "D":
            user = "U" + user[1:]
        return rep_of_user.get(user)

    async def answer(request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _read_params(request)
        now = time.time()
        last_call[0] = now
        calls[method] += 1
        rep = rep_of(method, params)
        if rep is not None:
            calls_by_rep.setdefault(rep, Counter())[method] += 1
        channel = _dm(str(params.get("channel", "")))
        wait = limiter.retry_after(method, channel, now)
        if wait is not None:
            throttled[method] += 1
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(wait)}
            )
        if method == "auth.test":
            return web.json_response({"ok": True, "user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1", "team": "B"})
        if method in ("users.lookupByEmail", "users.info"):
            user = users.get(str(params.get("email", ""))) if method == "users.lookupByEmail" else params.get("user")
            if user not in rep_of_user:
                return web.json_response({"ok": False, "error": "users_not_found"})
            return web.json_response({"ok": True, "user": {"id": user, "tz": "America/New_York"}})
        if method == "conversations.open":
            return web.json_response({"ok": True, "channel": {"id": _dm(str(params.get("users", "")))}})
        if method == "chat.postMessage":
            ts = f"{int(now)}.{next(numbers):06d}"
            messages[(channel, ts)] = Delivered(
                channel=channel,
                ts=ts,
                rep=rep,
                thread_ts=params.get("thread_ts"),
                text=str(params.get("text", "")),
                blocks_json=json.dumps(params.get("blocks", []), sort_keys=True),
                posted_at=now,
                metadata=params.get("metadata"),
            )
            return web.json_response({"ok": True, "channel": channel, "ts": ts})
        if method == "conversations.history":
            return web.json_response(history(channel, params))
        if method == "chat.update":
            message = messages.get((channel, str(params.get("ts", ""))))
            if message is None:
                return web.json_response({"ok": False, "error": "message_not_found"})
            message.text = str(params.get("text", ""))
            message.blocks_json = json.dumps(params.get("blocks", []), sort_keys=True)
            message.updates += 1
            return web.json_response({"ok": True, "channel": message.channel, "ts": message.ts})
        if method in ("views.open", "views.update", "views.push", "views.publish"):
            return web.json_response({"ok": True, "view": {"id": f"V{next(numbers):08d}", "hash": "h"}})
        if method == "chat.postEphemeral":
            return web.json_response({"ok": True, "message_ts": f"{1700000000 + next(numbers)}.000200"})
        return web.json_response({"ok": True})

    def history(channel: str, params: dict[str, Any]) -> dict[str, Any]:
        """The channel's messages (not thread replies) after `oldest`, newest first, paged."""
        listed = sorted(
            (
                message
                for message in messages.values()
                if message.channel == channel
                and message.thread_ts is None
                and float(message.ts) > float(params.get("oldest") or 0)
            ),
            key=lambda message: float(message.ts),
            reverse=True,
        )
        start = int(params.get("cursor") or 0)
        end = start + int(params.get("limit") or 100)
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        page = [
            {
                "type": "message",
                "ts": message.ts,
                "text": message.text,
                "bot_id": "BBOT",
                **({"metadata": message.metadata} if with_metadata and message.metadata else {}),
            }
            for message in listed[start:end]
        ]
        more = end < len(listed)
        return {
            "ok": True,
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": str(end) if more else ""},
        }

    def prompts() -> list[Delivered]:
        return [message for message in messages.values() if message.rep is not None and message.thread_ts is None]

    def progress() -> dict[str, Any]:
        """Cheap enough to poll: reps with a prompt, deals the prompts cover, the last call's time."""
        first_dm: dict[int, float] = {}
        covered = 0
        for message in prompts():
            assert message.rep is not None
            first_dm[message.rep] = min(first_dm.get(message.rep, math.inf), message.posted_at)
            covered += covered_deals(message.text, message.blocks_json)[0]
        return {"reps_with_dm": first_dm, "deals_covered": covered, "last_call": last_call[0]}

    def report() -> dict[str, Any]:
        delivered = []
        for message in messages.values():
            total, shown = covered_deals(message.text, message.blocks_json)
            delivered.append(
                {
                    "channel": message.channel,
                    "rep": message.rep,
                    "thread_ts": message.thread_ts,
                    "posted_at": message.posted_at,
                    "updates": message.updates,
                    "message_id": message.message_id,
                    "covers": total,
                    "shown": shown,
                    "content_key": hash((message.channel, message.thread_ts, message.text, message.blocks_json)),
                }
            )
        return {
            "calls": dict(calls),
            "throttled": dict(throttled),
            "calls_by_rep": {rep: dict(counter) for rep, counter in calls_by_rep.items()},
            "delivered": delivered,
        }

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/api/{method}", answer)
    serve(app, pipe, {"progress": progress, "report": report})


def _dm(channel: str) -> str:
    """A DM posted to a user id lands in their DM channel, as Slack answers it."""
    return "D" + channel[1:] if channel[:1] in ("U", "W") else channel


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
