"""What became of each night's report: `scoring_runs.report_status` (written_only, pending,
sent, sent_delayed, expired, failed). An undelivered report is resent by a later night only
while younger than PRCRS_MAX_RESEND_HOURS; an older one is `expired`, never mailed.

Existing rows: `sent` where report_sent_at is set; `pending` where a reported night's report
was written but not sent (the next night resends or expires it, as for a new one).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:00:00
"""

import sqlalchemy as sa

from alembic import op
from prcrs_batch.results.schema_text import comment_sql, create_views_sql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

REPORT_STATUSES = (
    "report_status IN ('written_only', 'pending', 'sent', 'sent_delayed', 'expired', 'failed')"
)
# They read scoring_runs (the views are created with tables.py's SQL, which since 0008 reads
# it in both): SQLite's batch mode recreates it.
DEPENDENT_VIEWS = ("crs_risk_latest", "crs_risk_newest_per_patient")


def upgrade() -> None:
    for view in DEPENDENT_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    with op.batch_alter_table("scoring_runs") as batch_op:
        batch_op.add_column(sa.Column("report_status", sa.String(length=16), nullable=True))
        batch_op.create_check_constraint(op.f("ck_scoring_runs_report_status"), REPORT_STATUSES)
    op.execute("UPDATE scoring_runs SET report_status = 'sent' WHERE report_sent_at IS NOT NULL")
    op.execute(
        "UPDATE scoring_runs SET report_status = 'pending' WHERE report_sent_at IS NULL "
        "AND report_path IS NOT NULL AND status IN ('succeeded', 'stale_data')"
    )
    for statement in create_views_sql(DEPENDENT_VIEWS):
        op.execute(statement)
    if op.get_bind().dialect.name == "postgresql":
        for statement in comment_sql(("scoring_runs",), DEPENDENT_VIEWS, bind=op.get_bind()):
            op.execute(statement)


def downgrade() -> None:
    for view in DEPENDENT_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    with op.batch_alter_table("scoring_runs") as batch_op:
        batch_op.drop_constraint(op.f("ck_scoring_runs_report_status"), type_="check")
        batch_op.drop_column("report_status")
    for statement in create_views_sql(DEPENDENT_VIEWS):
        op.execute(statement)
    if op.get_bind().dialect.name == "postgresql":
        for statement in comment_sql(("scoring_runs",), DEPENDENT_VIEWS, bind=op.get_bind()):
            op.execute(statement)
