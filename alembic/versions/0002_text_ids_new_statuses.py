"""Warehouse text kept whole, and two statuses: patient ids, analyte codes and units as TEXT
(the warehouse contract's type; varchar(64) failed a whole night on one long id); score
status `already_severe` (a patient at grade >= 3 is not scored as a warning) and run
status `stale_data` (the night ran on a feed that looks dead).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 23:05:00
"""

import sqlalchemy as sa

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LATEST_VIEW_SQL = """
CREATE VIEW crs_risk_latest AS
SELECT s.*
FROM crs_risk_scores AS s
JOIN (
    SELECT patient_id, model, horizon_days, MAX(as_of) AS as_of
    FROM crs_risk_scores
    GROUP BY patient_id, model, horizon_days
) AS newest
  ON s.patient_id = newest.patient_id
 AND s.model = newest.model
 AND s.horizon_days = newest.horizon_days
 AND s.as_of = newest.as_of
"""  # this revision's view, frozen here (tables.VIEWS holds the current ones)

SCORE_STATUSES = {
    "old": "status IN ('ok', 'insufficient_inputs', 'error')",
    "new": "status IN ('ok', 'insufficient_inputs', 'error', 'already_severe')",
}
RUN_STATUSES = {
    "old": "status IN ('running', 'succeeded', 'failed')",
    "new": "status IN ('running', 'succeeded', 'failed', 'stale_data')",
}


def _migrate(version: str) -> None:
    text_or_short = (lambda n: sa.Text()) if version == "new" else sa.String
    before = (lambda n: sa.String(length=n)) if version == "new" else (lambda n: sa.Text())
    op.execute("DROP VIEW IF EXISTS crs_risk_latest")  # it depends on the altered columns
    with op.batch_alter_table("crs_risk_scores") as batch_op:
        batch_op.alter_column(
            "patient_id", type_=text_or_short(64), existing_type=before(64), existing_nullable=False
        )
        batch_op.drop_constraint(op.f("ck_crs_risk_scores_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_crs_risk_scores_status"), SCORE_STATUSES[version])
    with op.batch_alter_table("data_quality_issues") as batch_op:
        for column, length in (("patient_id", 64), ("analyte", 64), ("unit", 32)):
            batch_op.alter_column(column, type_=text_or_short(length), existing_type=before(length))
    with op.batch_alter_table("scoring_runs") as batch_op:
        batch_op.drop_constraint(op.f("ck_scoring_runs_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_scoring_runs_status"), RUN_STATUSES[version])
    op.execute(LATEST_VIEW_SQL)


def upgrade() -> None:
    _migrate("new")


def downgrade() -> None:
    _migrate("old")
