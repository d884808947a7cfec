"""`closedlost serve` started before its database: it waits up to DATABASE_WAIT, one line per try,
then exits 2 with the driver's error; a database that comes up meanwhile is served."""

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from tests.bot_client import eventually
from tests.bot_process import REPOSITORY, bot_environment, free_port
from tests.fake_slack import FakeSlack

PASSWORD = "hunter2-not-to-be-shown"


async def serve_until_it_exits(database_url: str, slack_url: str, **settings: str) -> tuple[int, list[str], float]:
    """Runs `closedlost serve`; returns its exit status, its stderr lines, and the seconds from its
    first line to its exit (start-up itself, importing the bot, is left out)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        cwd=REPOSITORY,
        env=bot_environment(database_url, slack_url, free_port(), **settings),
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        first = await asyncio.wait_for(process.stderr.readline(), 60)
        first_at = time.monotonic()
        rest = await asyncio.wait_for(process.stderr.read(), 60)
        status = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return status, (first + rest).decode().splitlines(), time.monotonic() - first_at


async def test_a_closed_port_is_tried_once_a_line_until_database_wait_then_exit_2(fake_slack: FakeSlack) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://closedlost:{PASSWORD}@127.0.0.1:{port}/closedlost"

    status, lines, seconds = await serve_until_it_exits(url, fake_slack.url, DATABASE_WAIT="3s")

    refused = f"[Errno 111] Connect call failed ('127.0.0.1', {port})"
    assert lines == [
        f"closedlost: waiting for the database at 127.0.0.1:{port}: {refused}; trying again in 2 s",
        f"closedlost: the database at 127.0.0.1:{port} (DATABASE_URL) cannot be reached, "
        f"after waiting 3 s (DATABASE_WAIT): {refused}",
    ]
    assert status == 2
    assert seconds < 3  # the second try, 2 s after the first, is the last one within 3 s
    assert not any(PASSWORD in line for line in lines)


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A port that accepts connections and never says a word; yields the port."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_port_that_accepts_but_never_answers_gives_up_after_10_s_saying_so(fake_slack: FakeSlack) -> None:
    async with silent_server() as port:
        url = f"postgresql://closedlost:{PASSWORD}@127.0.0.1:{port}/closedlost"
        status, lines, _ = await serve_until_it_exits(url, fake_slack.url, DATABASE_WAIT="3s")

    assert lines == [
        f"closedlost: the database at 127.0.0.1:{port} (DATABASE_URL) cannot be reached, "
        "after waiting 3 s (DATABASE_WAIT): no answer within 10 s"
    ]
    assert status == 2


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


class DatabaseComingUp:
    """A port in front of the real PostgreSQL that hangs up on every connection until `up` is set,
    as a server still starting does, and then forwards connections byte for byte."""

    def __init__(self, to_host: str, to_port: int) -> None:
        self.to_host, self.to_port = to_host, to_port
        self.up = False
        self.refused = asyncio.Event()

    async def forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if not self.up:
            self.refused.set()
            client_writer.close()
            return
        server_reader, server_writer = await asyncio.open_connection(self.to_host, self.to_port)
        await asyncio.gather(relay(client_reader, server_writer), relay(server_reader, client_writer))


async def test_a_database_that_comes_up_during_the_wait_is_served(database_url: str, fake_slack: FakeSlack) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite file is not waited for")
    real = make_url(database_url)
    database = DatabaseComingUp(real.host or "localhost", real.port or 5432)
    server = await asyncio.start_server(database.forward, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    through_proxy = real.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    bot_port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        cwd=REPOSITORY,
        env=bot_environment(through_proxy, fake_slack.url, bot_port, DATABASE_WAIT="30s"),
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        first = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
        assert first.startswith(f"closedlost: waiting for the database at 127.0.0.1:{port}: ")
        assert first.endswith("; trying again in 2 s\n")
        assert database.refused.is_set()
        database.up = True

        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{bot_port}/healthz") as response:
                        return response.status == 200
                return False

            await eventually(healthy, what="the bot to serve once its database is up")
    finally:
        process.kill()
        await process.wait()
        server.close()
