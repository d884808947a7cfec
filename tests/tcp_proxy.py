"""A TCP proxy for tests: forwards a port on 127.0.0.1 to a server byte for byte, and can be cut.

Put between the bot and a server (PostgreSQL, the fake Slack), it stands in for a network or a
server that fails: `cut()` drops every open connection and refuses new ones (they are accepted and
closed at once, as a server that is restarting does) until `restore()`.
"""

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, to_host: str, to_port: int) -> None:
        self.to_host, self.to_port = to_host, to_port
        self.port = 0
        self.cut_connections = 0
        """Connections dropped or refused while cut."""
        self._server: asyncio.Server | None = None
        self._cut = False
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Drops every open connection, and refuses new ones until `restore`."""
        self._cut = True
        for writer in list(self._open):
            self.cut_connections += 1
            writer.transport.abort()
        self._open.clear()

    def restore(self) -> None:
        self._cut = False

    async def _forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._cut:
            self.cut_connections += 1
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(self.to_host, self.to_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._open.update((client_writer, server_writer))
        try:
            await asyncio.gather(_relay(client_reader, server_writer), _relay(server_reader, client_writer))
        finally:
            for writer in (client_writer, server_writer):
                self._open.discard(writer)
                writer.transport.abort()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
