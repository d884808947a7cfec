"""closed_summary: closed deals counted per month (UTC), and the triggers that mark a month changed

`closed_summary_change` gets a row for a month whenever a deal, loss or reason entry of that month
is inserted, updated in a column the figures use, or deleted: database triggers write it, in the
writing transaction, so no write path (the webhooks, the sweep, the import, a manager's re-coding,
plain SQL) can forget it. Stats read a changed month from the deals themselves until the bot's
scheduler has recomputed its summary (`bot.services.summary`). The upgrade marks every month that
holds a deal or a loss as changed: the first refresh computes their summary from the rows.

A later migration that rebuilds `deal`, `loss` or `reason_entry` on SQLite (batch mode's copy and
rename, for a dropped or altered column) drops their triggers with the old table, and must create
them again (`create_triggers` below); tests/test_closed_summary.py would show the summary drifting.

Revision ID: 0017_closed_summary
Revises: 0016_recodes
Create Date: 2026-12-05 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_closed_summary"
down_revision: str | None = "0016_recodes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What each table's figures depend on: an update that changes none of these leaves every month as it was.
WATCHED = {
    "deal": ("stage", "stage_changed_at", "amount", "currency"),
    "loss": ("state", "lost_at", "deal_id"),
    "reason_entry": ("loss_id", "revision", "reason_code", "source"),
}

# The months a row counts in, as a query of `moment` rows: a deal's won month and the months of
# its losses (whose amounts are the deal's); a loss's month; a reason entry's loss's month. Written
# once for one row ({row} is OLD or NEW), once for the rows of a statement ({rows} is a table).
MOMENTS = {
    "deal": "SELECT {row}.stage_changed_at AS moment UNION SELECT lost_at FROM loss WHERE deal_id = {row}.id",
    "loss": "SELECT {row}.lost_at AS moment",
    "reason_entry": "SELECT lost_at AS moment FROM loss WHERE id = {row}.loss_id",
}
MOMENTS_OF_ROWS = {
    "deal": "SELECT stage_changed_at AS moment FROM {rows} UNION SELECT lost_at FROM loss WHERE deal_id IN "
    "(SELECT id FROM {rows})",
    "loss": "SELECT lost_at AS moment FROM {rows}",
    "reason_entry": "SELECT lost_at AS moment FROM loss WHERE id IN (SELECT loss_id FROM {rows})",
}

SQLITE_MARK = """INSERT OR IGNORE INTO closed_summary_change (month, tx)
    SELECT date(moment, 'start of month'), 0 FROM ({moments}) AS changed;"""

POSTGRESQL_MARK = """INSERT INTO closed_summary_change (month, tx)
        SELECT DISTINCT date_trunc('month', moment AT TIME ZONE 'UTC')::date, txid_current()
        FROM ({moments}) AS changed
        ON CONFLICT DO NOTHING;"""

# On PostgreSQL, inserts and deletes are marked once a statement, from its transition table: a
# batch of a hundred deals is one trigger call, not a hundred. Updates are marked row by row, so
# that the WHEN clause skips, without a call, the many updates that change no figure (reminders,
# prompts, owners).
POSTGRESQL_STATEMENTS = (
    """CREATE FUNCTION closed_summary_mark_{table}_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {inserted}
    ELSE
        {deleted}
    END IF;
    RETURN NULL;
END $$""",
    """CREATE FUNCTION closed_summary_mark_{table}_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {old}
    {new}
    RETURN NULL;
END $$""",
    """CREATE TRIGGER closed_summary_{table}_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION closed_summary_mark_{table}_rows()""",
    """CREATE TRIGGER closed_summary_{table}_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION closed_summary_mark_{table}_rows()""",
    """CREATE TRIGGER closed_summary_{table}_update AFTER UPDATE ON {table}
    FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION closed_summary_mark_{table}_update()""",
)


def create_triggers(table: str) -> None:
    """The triggers that mark the months of `table`'s changed rows, on this database's dialect."""
    moments = MOMENTS[table]
    if op.get_bind().dialect.name == "postgresql":
        parts = {
            "table": table,
            "inserted": POSTGRESQL_MARK.format(moments=MOMENTS_OF_ROWS[table].format(rows="new_rows")),
            "deleted": POSTGRESQL_MARK.format(moments=MOMENTS_OF_ROWS[table].format(rows="old_rows")),
            "old": POSTGRESQL_MARK.format(moments=moments.format(row="OLD")),
            "new": POSTGRESQL_MARK.format(moments=moments.format(row="NEW")),
            "changed": " OR ".join(f"OLD.{column} IS DISTINCT FROM NEW.{column}" for column in WATCHED[table]),
        }
        for statement in POSTGRESQL_STATEMENTS:
            op.execute(statement.format(**parts))
        return
    changed = " OR ".join(f"OLD.{column} IS NOT NEW.{column}" for column in WATCHED[table])
    old, new = (
        SQLITE_MARK.format(moments=moments.format(row="OLD")),
        SQLITE_MARK.format(moments=moments.format(row="NEW")),
    )
    op.execute(f"CREATE TRIGGER closed_summary_{table}_insert AFTER INSERT ON {table} BEGIN {new} END")
    op.execute(f"CREATE TRIGGER closed_summary_{table}_delete AFTER DELETE ON {table} BEGIN {old} END")
    op.execute(
        f"CREATE TRIGGER closed_summary_{table}_update AFTER UPDATE ON {table} WHEN {changed} BEGIN {old} {new} END"
    )


def drop_triggers(table: str) -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for event in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER closed_summary_{table}_{event}" + (f" ON {table}" if postgresql else ""))
    if postgresql:
        op.execute(f"DROP FUNCTION closed_summary_mark_{table}_rows()")
        op.execute(f"DROP FUNCTION closed_summary_mark_{table}_update()")


def upgrade() -> None:
    op.create_table(
        "closed_summary",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("outcome", sa.String(length=4), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=True),
        sa.Column("reason_code", sa.String(length=64), nullable=True),
        sa.Column("imported_from", sa.String(length=32), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("deals", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=24, scale=2), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_closed_summary_month"), "closed_summary", ["month"], unique=False)
    op.create_table(
        "closed_summary_change",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("tx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("month", "tx"),
    )
    for table in WATCHED:
        create_triggers(table)
    # Every month that holds closed deals is to be computed: stats read it from the deals until then.
    moments = "SELECT lost_at AS moment FROM loss UNION SELECT stage_changed_at FROM deal"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "INSERT INTO closed_summary_change (month, tx) SELECT DISTINCT "
            f"date_trunc('month', moment AT TIME ZONE 'UTC')::date, 0 FROM ({moments}) AS closed"
        )
    else:
        op.execute(SQLITE_MARK.format(moments=moments))


def downgrade() -> None:
    for table in WATCHED:
        drop_triggers(table)
    op.drop_table("closed_summary_change")
    op.drop_index(op.f("ix_closed_summary_month"), table_name="closed_summary")
    op.drop_table("closed_summary")
