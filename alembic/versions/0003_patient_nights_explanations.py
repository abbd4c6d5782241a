"""What the report said, for BI: one row per patient and night (`crs_patient_nights`, with
its alert state), the labs behind each flagged risk (`crs_risk_explanations`), run status
`superseded` (a rerun of a night keeps the earlier run's row and whether it was emailed),
`crs_risk_latest` narrowed to the latest reported night (the old view, each patient's
newest rows however old, is `crs_risk_newest_per_patient`), and a comment on every table,
view and column (PostgreSQL).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 01:30:00
"""

import sqlalchemy as sa

from alembic import op
from prcrs_batch.results.schema_text import comment_sql, create_views_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RUN_STATUSES = {
    "old": "status IN ('running', 'succeeded', 'failed', 'stale_data')",
    "new": "status IN ('running', 'succeeded', 'failed', 'stale_data', 'superseded')",
}
ALERT_STATES = (
    "alert_state IN ('new', 'rising', 'continuing', 'falling', 'none', 'already_severe', "
    "'not_scorable')"
)
# This revision's tables and views (later revisions add their own; the texts are tables.py's)
TABLES = (
    "scoring_runs",
    "crs_risk_scores",
    "crs_patient_nights",
    "crs_risk_explanations",
    "data_quality_issues",
    "night_claims",
)
VIEWS = ("crs_risk_latest", "crs_risk_newest_per_patient")
OLD_VIEW_SQL = """
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
"""


def _run_id(table: str) -> sa.Column:
    return sa.Column(
        "run_id",
        sa.String(length=36),
        sa.ForeignKey(
            "scoring_runs.run_id",
            name=op.f(f"fk_{table}_run_id_scoring_runs"),
            ondelete="CASCADE",
        ),
        nullable=False,
    )


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS crs_risk_latest")
    op.create_table(
        "crs_patient_nights",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _run_id("crs_patient_nights"),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("patient_id", sa.Text(), nullable=False),
        sa.Column("day_since_infusion", sa.Integer(), nullable=True),
        sa.Column("crs_grade", sa.Integer(), nullable=True),
        sa.Column("recommended_model", sa.String(length=16), nullable=True),
        sa.Column("max_risk", sa.Float(), nullable=True),
        sa.Column("alert", sa.Boolean(), nullable=False),
        sa.Column("alert_state", sa.String(length=16), nullable=False),
        sa.Column("previous_max_risk", sa.Float(), nullable=True),
        sa.Column("labs_latest_at", sa.DateTime(), nullable=True),
        sa.Column("n_inputs_set_aside", sa.Integer(), nullable=False),
        sa.CheckConstraint(ALERT_STATES, name=op.f("ck_crs_patient_nights_alert_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crs_patient_nights")),
        sa.UniqueConstraint(
            "as_of", "patient_id", name=op.f("uq_crs_patient_nights_as_of_patient_id")
        ),
    )
    op.create_index(op.f("ix_crs_patient_nights_run_id"), "crs_patient_nights", ["run_id"])
    op.create_index(
        op.f("ix_crs_patient_nights_patient_id_as_of"),
        "crs_patient_nights",
        ["patient_id", "as_of"],
    )
    op.create_table(
        "crs_risk_explanations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _run_id("crs_risk_explanations"),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("patient_id", sa.Text(), nullable=False),
        sa.Column("model", sa.String(length=16), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("analyte", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("contribution", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crs_risk_explanations")),
        sa.UniqueConstraint(
            "as_of",
            "patient_id",
            "model",
            "horizon_days",
            "rank",
            name=op.f("uq_crs_risk_explanations_as_of_patient_id_model_horizon_days_rank"),
        ),
    )
    op.create_index(op.f("ix_crs_risk_explanations_run_id"), "crs_risk_explanations", ["run_id"])
    with op.batch_alter_table("scoring_runs") as batch_op:
        batch_op.drop_constraint(op.f("ck_scoring_runs_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_scoring_runs_status"), RUN_STATUSES["new"])
    for statement in create_views_sql(VIEWS):
        op.execute(statement)
    if op.get_bind().dialect.name == "postgresql":
        for statement in comment_sql(TABLES, VIEWS, bind=op.get_bind()):
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS crs_risk_latest")
    op.execute("DROP VIEW IF EXISTS crs_risk_newest_per_patient")
    op.execute("DELETE FROM scoring_runs WHERE status = 'superseded'")
    with op.batch_alter_table("scoring_runs") as batch_op:
        batch_op.drop_constraint(op.f("ck_scoring_runs_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_scoring_runs_status"), RUN_STATUSES["old"])
    op.drop_table("crs_risk_explanations")
    op.drop_table("crs_patient_nights")
    op.execute(OLD_VIEW_SQL)
