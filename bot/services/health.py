"""Whether the bot can do its job: for `GET /healthz`."""

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import engine


async def database_answers(session_factory: async_sessionmaker[AsyncSession]) -> bool:
    try:
        async with session_factory() as session:
            await engine.ping(session)
    except (SQLAlchemyError, OSError):
        return False
    return True
