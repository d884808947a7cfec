"""Applies the Alembic migrations that ship inside this package."""

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def upgrade_to_head(database_url: str) -> None:
    """Bring the database at `database_url` up to the newest schema. Synchronous: Alembic's env.py
    runs its own event loop, so call it before the server's loop starts or from a worker thread."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url)
    command.upgrade(config, "head")
