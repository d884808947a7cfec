"""A SQLite write lock held by a second process, as another program (a backup, a migration, a
person with the sqlite3 shell) would hold it."""

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


@asynccontextmanager
async def write_lock_held_by_another_process(path: str) -> AsyncIterator[None]:
    """A second process that holds SQLite's write lock (BEGIN EXCLUSIVE) until told to let go."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sqlite3, sys\n"
        f"connection = sqlite3.connect({path!r}, isolation_level=None)\n"
        "connection.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "connection.execute('ROLLBACK')\n",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert await asyncio.wait_for(holder.stdout.readline(), 10) == b"locked\n"
        yield
    finally:
        holder.stdin.write(b"done\n")
        await holder.stdin.drain()
        await asyncio.wait_for(holder.wait(), 10)
