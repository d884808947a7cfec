"""Persistence: SQLAlchemy models, query functions that never commit, the engine, migrations."""
