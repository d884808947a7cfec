"""Ingest speed of POST /webhooks/deals, beside a bare aiohttp endpoint measured in the same run.

    .venv/bin/python bench/webhook.py [--requests 3000] [--array-events 20000]
                                      [--database-url postgresql+asyncpg://…] [--smoke]

Each server runs in its own process (the load generator in this one), so the two cores of a small
machine are split the same way for the bot and for the baseline. Prints requests/s, p50/p99 response
times for single-event requests at 50 concurrent connections, events/s for arrays of 100, the
ratio to the baseline, and the bot's peak RSS. Every closed-lost event also queues a DM, sent to a
fake Slack in a third process.
"""

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from harness import Server, parse_arguments, run_bot, run_fake_slack, serve, sign_deals

CONCURRENCY = 50


def event(number: int) -> dict[str, Any]:
    return {
        "deal_id": f"D{number:08d}",
        "name": f"Deal {number}",
        "stage": "closed_lost",
        "amount": 1000 + number,
        "currency": "USD",
        "owner_slack_id": f"U{number % 50:08d}",
        "changed_at": "2026-11-20T15:04:05Z",
    }


# --- servers, each in its own process --------------------------------------------------------


def run_bare(port_out: Any) -> None:
    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"accepted": 1, "duplicates": 0}, status=202)

    app = web.Application()
    app.router.add_post("/webhooks/deals", accept)
    serve(app, port_out)


# --- load -------------------------------------------------------------------------------------


async def single_events(url: str, count: int, offset: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(offset, offset + count):
        queue.put_nowait(number)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as http:

        async def worker() -> None:
            while not queue.empty():
                body = json.dumps(event(queue.get_nowait())).encode()
                started = time.perf_counter()
                async with http.post(f"{url}/webhooks/deals", data=body, headers=sign_deals(body)) as response:
                    await response.read()
                    assert response.status == 202, response.status
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.perf_counter() - started, latencies


async def arrays(url: str, count: int, offset: int) -> float:
    batches = [[event(n) for n in range(start, start + 100)] for start in range(offset, offset + count, 100)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)) as http:

        async def send(batch: list[dict[str, Any]]) -> None:
            body = json.dumps(batch).encode()
            async with http.post(f"{url}/webhooks/deals", data=body, headers=sign_deals(body)) as response:
                await response.read()
                assert response.status == 202, response.status

        started = time.perf_counter()
        for chunk in range(0, len(batches), 4):
            await asyncio.gather(*(send(batch) for batch in batches[chunk : chunk + 4]))
        return time.perf_counter() - started


def describe(name: str, seconds: float, latencies: list[float]) -> float:
    rate = len(latencies) / seconds
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    print(f"  {name:<34} {rate:8.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="single-event requests per server")
    parser.add_argument("--array-events", type=int, default=20000, help="events sent as arrays of 100")
    parser.add_argument("--database-url", help="defaults to a SQLite file in a temporary folder")
    arguments = parse_arguments(parser, smoke={"requests": 100, "array_events": 200})

    with tempfile.TemporaryDirectory() as folder:
        database_url = arguments.database_url or f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        print(f"webhook ingest, {CONCURRENCY} connections, database {database_url.split(':')[0]}")
        bare = Server(run_bare)
        seconds, latencies = asyncio.run(single_events(bare.url, arguments.requests, 0))
        bare_rate = describe("bare aiohttp endpoint", seconds, latencies)
        bare.stop()

        slack = Server(run_fake_slack)
        bot = Server(run_bot, database_url, f"{slack.url}/api/")
        seconds, latencies = asyncio.run(single_events(bot.url, arguments.requests, 0))
        bot_rate = describe("closedlost, one event a request", seconds, latencies)
        print(f"  ratio to bare: {bot_rate / bare_rate:.2f}x (budget >= 0.15x)")
        seconds = asyncio.run(arrays(bot.url, arguments.array_events, 10**6))
        print(
            f"  closedlost, arrays of 100:         {arguments.array_events / seconds:8.0f} events/s (budget >= 10,000)"
        )
        print(f"  closedlost peak RSS: {bot.ask('rss')} MiB (budget < 150 MiB)")
        bot.stop()
        slack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
