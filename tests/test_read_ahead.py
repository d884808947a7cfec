"""`read_ahead`, which lets the import fetch a CRM's next page while it stores the one it has."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from bot.services.imports import read_ahead


async def test_the_next_page_is_read_while_the_caller_works_on_this_one() -> None:
    log: list[str] = []

    async def pages() -> AsyncIterator[int]:
        for number in range(3):
            log.append(f"read {number}")
            yield number

    async for page in read_ahead(pages()):
        await asyncio.sleep(0)  # storing the page: the read-ahead runs meanwhile
        log.append(f"stored {page}")

    assert log == ["read 0", "read 1", "stored 0", "read 2", "stored 1", "stored 2"]


async def test_a_failure_to_read_a_page_comes_after_the_pages_before_it() -> None:
    async def pages() -> AsyncIterator[int]:
        yield 0
        raise ConnectionError("the CRM went away")

    stored = []
    with pytest.raises(ConnectionError, match="the CRM went away"):
        async for page in read_ahead(pages()):
            stored.append(page)

    assert stored == [0]


async def test_a_caller_that_stops_stops_the_reading() -> None:
    reading, stopped = asyncio.Event(), asyncio.Event()

    async def pages() -> AsyncIterator[int]:
        yield 0
        reading.set()
        try:
            await asyncio.Event().wait()  # a page that takes long to come
        finally:
            stopped.set()
        yield 1

    async with aclosing(read_ahead(pages())) as read:
        async for _ in read:
            await reading.wait()
            break
    await asyncio.wait_for(stopped.wait(), timeout=1)
