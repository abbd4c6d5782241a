"""The job watches itself: `model_performance` (how the stored risks did once the outcomes
arrived, per model, horizon and rolling window) and `input_drift` (tonight's lab values
against the training data's), with their `_latest` views and comments (PostgreSQL).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 02:10:00
"""

import sqlalchemy as sa

from alembic import op
from prcrs_batch.results.schema_text import comment_sql, create_views_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("model_performance", "input_drift")
VIEWS = ("model_performance_latest", "input_drift_latest")


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
    figures = (
        "auroc",
        "auroc_low",
        "auroc_high",
        "auprc",
        "brier",
        "mean_predicted",
        "observed_rate",
        "calibration_intercept",
        "calibration_slope",
        "alert_sensitivity",
        "alert_ppv",
        "median_lead_days",
    )
    op.create_table(
        "model_performance",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _run_id("model_performance"),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=16), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("n_predictions", sa.Integer(), nullable=False),
        sa.Column("n_patients", sa.Integer(), nullable=False),
        sa.Column("n_events", sa.Integer(), nullable=False),
        *[sa.Column(name, sa.Float(), nullable=True) for name in figures],
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_performance")),
        sa.UniqueConstraint(
            "as_of",
            "model",
            "horizon_days",
            "window_days",
            name=op.f("uq_model_performance_as_of_model_horizon_days_window_days"),
        ),
    )
    op.create_index(op.f("ix_model_performance_run_id"), "model_performance", ["run_id"])
    op.create_table(
        "input_drift",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _run_id("input_drift"),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("analyte", sa.String(length=32), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("share_observed", sa.Float(), nullable=True),
        sa.Column("train_share_observed", sa.Float(), nullable=True),
        sa.Column("psi", sa.Float(), nullable=True),
        sa.Column("median", sa.Float(), nullable=True),
        sa.Column("train_median", sa.Float(), nullable=True),
        sa.Column("drifting", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_input_drift")),
        sa.UniqueConstraint("as_of", "analyte", name=op.f("uq_input_drift_as_of_analyte")),
    )
    op.create_index(op.f("ix_input_drift_run_id"), "input_drift", ["run_id"])
    for statement in create_views_sql(VIEWS):
        op.execute(statement)
    if op.get_bind().dialect.name == "postgresql":
        for statement in comment_sql(TABLES, VIEWS, bind=op.get_bind()):
            op.execute(statement)


def downgrade() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    for table in TABLES:
        op.drop_table(table)
