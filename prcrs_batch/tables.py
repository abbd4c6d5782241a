"""The results schema: typed SQLAlchemy tables. Alembic migrations create and upgrade it.

BI tools read `crs_risk_scores` and the view `crs_risk_latest`; see README "Results schema".
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from prcrs_batch.panel import FACTOR_SETS, HORIZONS

MODELS = tuple(FACTOR_SETS)

SCORE_STATUSES = ("ok", "insufficient_inputs", "error", "already_severe")
RUN_STATUSES = ("running", "succeeded", "failed", "stale_data")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _in(column: str, values: tuple) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


scoring_runs = Table(
    "scoring_runs",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("as_of", Date, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False),
    Column("n_patients", Integer, nullable=False, default=0),
    Column("n_scores", Integer, nullable=False, default=0),
    Column("n_alerts", Integer, nullable=False, default=0),
    Column("n_data_issues", Integer, nullable=False, default=0),
    Column("model_version", String(64)),
    Column("error", Text),
    Column("report_path", Text),
    Column("report_sent_at", DateTime(timezone=True)),
    CheckConstraint(_in("status", RUN_STATUSES), name="status"),
    Index(None, "as_of"),
)

crs_risk_scores = Table(
    "crs_risk_scores",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "run_id", String(36), ForeignKey("scoring_runs.run_id", ondelete="CASCADE"), nullable=False
    ),
    Column("as_of", Date, nullable=False),
    Column("patient_id", Text, nullable=False),
    Column("model", String(16), nullable=False),
    Column("horizon_days", Integer, nullable=False),
    Column("target_date", Date, nullable=False),
    Column("probability", Float),
    Column("calibrated_risk", Float),
    Column("status", String(24), nullable=False),
    Column("inputs_observed", Integer, nullable=False),
    Column("inputs_expected", Integer, nullable=False),
    Column("model_version", String(64)),
    Column("detail", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("as_of", "patient_id", "model", "horizon_days"),
    CheckConstraint(_in("model", MODELS), name="model"),
    CheckConstraint(_in("horizon_days", HORIZONS), name="horizon_days"),
    CheckConstraint(_in("status", SCORE_STATUSES), name="status"),
    CheckConstraint(
        "calibrated_risk IS NULL OR (calibrated_risk >= 0 AND calibrated_risk <= 1)",
        name="risk_range",
    ),
    Index(None, "run_id"),
    Index(None, "patient_id", "as_of"),
    Index(None, "target_date"),
)

data_quality_issues = Table(
    "data_quality_issues",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "run_id", String(36), ForeignKey("scoring_runs.run_id", ondelete="CASCADE"), nullable=False
    ),
    Column("patient_id", Text),
    Column("analyte", Text),
    Column("collected_at", DateTime),
    Column("raw_value", Text),
    Column("unit", Text),
    Column("reason", String(64), nullable=False),
    Index(None, "run_id"),
)

# One row per scored night claimed by a scheduler: the primary key is the lock that
# stops two schedulers on two hosts from scoring the same night.
night_claims = Table(
    "night_claims",
    metadata,
    Column("as_of", Date, primary_key=True),
    Column("claimed_by", String(128), nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
)

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
"""
