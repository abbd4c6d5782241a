"""Monitoring in bounded work per night: `prediction_outcomes`, each stored ok prediction
judged once, by the first night after its target date; model_performance's windows are
computed from it rather than by judging every stored prediction again each night. And an
index for the crs_risk_newest_per_patient view: crs_risk_scores (patient_id, model,
horizon_days, as_of).

Existing predictions are judged by the next night (those whose target date is inside its
windows), as new ones are.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 18:30:00
"""

import sqlalchemy as sa

from alembic import op
from prcrs_batch.results.schema_text import comment_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction_outcomes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column(
            "run_id",
            sa.String(length=36),
            sa.ForeignKey(
                "scoring_runs.run_id",
                name=op.f("fk_prediction_outcomes_run_id_scoring_runs"),
                ondelete="CASCADE",
            ),
            nullable=False,
        ),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("patient_id", sa.Text(), nullable=False),
        sa.Column("model", sa.String(length=16), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("target_date", sa.Date(), nullable=False),
        sa.Column("calibrated_risk", sa.Float(), nullable=False),
        sa.Column("outcome", sa.Integer(), nullable=True),
        sa.Column("judged_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction_outcomes")),
        sa.UniqueConstraint(
            "as_of",
            "patient_id",
            "model",
            "horizon_days",
            name=op.f("uq_prediction_outcomes_as_of_patient_id_model_horizon_days"),
        ),
    )
    op.create_index(
        op.f("ix_prediction_outcomes_target_date_model"),
        "prediction_outcomes",
        ["target_date", "model"],
    )
    op.create_index(op.f("ix_prediction_outcomes_run_id"), "prediction_outcomes", ["run_id"])
    op.create_index(
        op.f("ix_crs_risk_scores_patient_id_model_horizon_days_as_of"),
        "crs_risk_scores",
        ["patient_id", "model", "horizon_days", "as_of"],
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in comment_sql(("prediction_outcomes",), (), bind=op.get_bind()):
            op.execute(statement)


def downgrade() -> None:
    op.drop_index(
        op.f("ix_crs_risk_scores_patient_id_model_horizon_days_as_of"), table_name="crs_risk_scores"
    )
    op.drop_table("prediction_outcomes")
