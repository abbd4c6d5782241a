"""What was mailed stays queryable: a rerun or backfill of a night keeps the rows of an
earlier run whose report was emailed (crs_risk_scores, crs_patient_nights,
crs_risk_explanations, data_quality_issues) beside its own, so their unique keys gain
run_id; the views read the night's current run only (every run but a superseded one), and
`crs_patient_nights_sent` shows what on-call received. The crs_risk_newest_per_patient
index gains run_id (the current-run test from the index alone).

Existing rows: unchanged (an emailed night rerun before this revision has no kept rows).
Downgrade drops the kept rows of superseded runs, as the older releases would.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 10:00:00
"""

from alembic import op
from prcrs_batch.results.schema_text import comment_sql, create_views_sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# table -> its unique key before this revision (run_id is appended to it)
UNIQUE_KEYS = {
    "crs_risk_scores": ["as_of", "patient_id", "model", "horizon_days"],
    "crs_patient_nights": ["as_of", "patient_id"],
    "crs_risk_explanations": ["as_of", "patient_id", "model", "horizon_days", "rank"],
}
NEWEST_INDEX = ["patient_id", "model", "horizon_days", "as_of"]  # 0007's, run_id appended
CHANGED_VIEWS = ("crs_risk_latest", "crs_risk_newest_per_patient")
NEW_VIEWS = ("crs_patient_nights_sent",)
OLD_VIEWS_SQL = (  # 0007's views, frozen here (tables.VIEWS holds the current ones)
    """CREATE VIEW crs_risk_latest AS
SELECT s.* FROM crs_risk_scores AS s WHERE s.as_of = (SELECT MAX(as_of) FROM scoring_runs
WHERE status IN ('succeeded', 'stale_data'))""",
    """CREATE VIEW crs_risk_newest_per_patient AS
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
 AND s.as_of = newest.as_of""",
)


def _name(kind: str, table: str, columns: list[str]) -> str:
    return op.f(f"{kind}_{table}_{'_'.join(columns)}")


def _keys(before: list[str], after: list[str], table: str) -> None:
    """Swap `table`'s unique key (batch mode: SQLite rebuilds the table)."""
    with op.batch_alter_table(table) as batch_op:
        batch_op.drop_constraint(_name("uq", table, before), type_="unique")
        batch_op.create_unique_constraint(_name("uq", table, after), after)


def _newest_index(before: list[str], after: list[str]) -> None:
    op.drop_index(_name("ix", "crs_risk_scores", before), table_name="crs_risk_scores")
    op.create_index(_name("ix", "crs_risk_scores", after), "crs_risk_scores", after)


def _drop_views() -> None:
    for view in (*CHANGED_VIEWS, *NEW_VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {view}")


def upgrade() -> None:
    _drop_views()  # they read the tables batch mode rebuilds
    for table, key in UNIQUE_KEYS.items():
        _keys(key, [*key, "run_id"], table)
    _newest_index(NEWEST_INDEX, [*NEWEST_INDEX, "run_id"])
    for statement in create_views_sql((*CHANGED_VIEWS, *NEW_VIEWS)):
        op.execute(statement)
    if op.get_bind().dialect.name == "postgresql":
        tables = (*UNIQUE_KEYS, "scoring_runs")
        for statement in comment_sql(tables, (*CHANGED_VIEWS, *NEW_VIEWS), bind=op.get_bind()):
            op.execute(statement)


def downgrade() -> None:
    _drop_views()
    for table in (*UNIQUE_KEYS, "data_quality_issues"):
        op.execute(
            f"DELETE FROM {table} WHERE run_id IN "
            "(SELECT run_id FROM scoring_runs WHERE status = 'superseded')"
        )
    for table, key in UNIQUE_KEYS.items():
        _keys([*key, "run_id"], key, table)
    _newest_index([*NEWEST_INDEX, "run_id"], NEWEST_INDEX)
    for statement in OLD_VIEWS_SQL:
        op.execute(statement)
    if op.get_bind().dialect.name == "postgresql":
        for statement in comment_sql(tuple(UNIQUE_KEYS), CHANGED_VIEWS, bind=op.get_bind()):
            op.execute(statement)
