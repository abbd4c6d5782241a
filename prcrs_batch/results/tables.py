"""The results schema: typed SQLAlchemy tables, their views, and the comment on every table,
view and column (PostgreSQL stores them with COMMENT ON; the README's "Results schema" is
generated from the same text, schema_text.py). Alembic migrations create and upgrade it.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ColumnElement,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
)

from prcrs_batch.nightly.alert_states import ALERT_STATES
from prcrs_batch.nightly.alerts import TIERS
from prcrs_batch.task.panel import FACTOR_SETS, HORIZONS

MODELS = tuple(FACTOR_SETS)

SCORE_STATUSES = ("ok", "insufficient_inputs", "error", "already_severe")
SUPERSEDED = "superseded"  # a later run of the night is its current one
RUN_STATUSES = ("running", "succeeded", "failed", "stale_data", SUPERSEDED)
REPORTED = ("succeeded", "stale_data")  # run statuses whose night was reported
# What became of a night's report (scoring_runs.report_status; outbox.py decides).
REPORT_WRITTEN_ONLY = "written_only"
REPORT_PENDING = "pending"
REPORT_SENT = "sent"
REPORT_SENT_DELAYED = "sent_delayed"
REPORT_EXPIRED = "expired"
REPORT_FAILED = "failed"
REPORT_STATUSES = (
    REPORT_WRITTEN_ONLY,
    REPORT_PENDING,
    REPORT_SENT,
    REPORT_SENT_DELAYED,
    REPORT_EXPIRED,
    REPORT_FAILED,
)
REPORT_STATUS_COMMENT = (
    "what became of the report: written_only (not to be mailed: --no-email, a backfill "
    "without --email, or no SMTP server set), pending (sending failed; kept for a later night "
    "to resend), sent, sent_delayed (resent by a later night, its subject marked DELAYED), "
    "expired (still unsent after PRCRS_MAX_RESEND_HOURS: never mailed) or failed (sending "
    "failed and no copy was kept to resend); NULL: no report"
)

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


def _run_id() -> Column:
    return Column(
        "run_id",
        String(36),
        ForeignKey("scoring_runs.run_id", ondelete="CASCADE"),
        nullable=False,
        comment="the scoring_runs row that wrote it",
    )


MODEL_COMMENT = "factor set: all, no_cytokines, cytokines, biochem_blood, biochem, blood_routine"

scoring_runs = Table(
    "scoring_runs",
    metadata,
    Column("run_id", String(36), primary_key=True, comment="primary key (UUID)"),
    Column("as_of", Date, nullable=False, comment="night scored; data cut-off is its end"),
    Column("started_at", DateTime(timezone=True), nullable=False, comment="run start"),
    Column("finished_at", DateTime(timezone=True), comment="run end"),
    Column(
        "status",
        String(16),
        nullable=False,
        comment="running, succeeded, failed, stale_data (scored and reported, but the warehouse "
        "feed looked dead) or superseded (a later run of the same night is its current one; "
        "its rows are kept beside that run's when its report was emailed, report_sent_at "
        "set, else replaced)",
    ),
    Column("n_patients", Integer, nullable=False, default=0, comment="active patients read"),
    Column("n_scores", Integer, nullable=False, default=0, comment="crs_risk_scores rows"),
    Column("n_alerts", Integer, nullable=False, default=0, comment="patients flagged"),
    Column("n_data_issues", Integer, nullable=False, default=0, comment="data_quality_issues rows"),
    Column("model_version", String(64), comment="short hash of models/manifest.json"),
    Column(
        "error",
        Text,
        comment="why a failed night failed, or why a stale_data night's data looked stale",
    ),
    Column("report_path", Text, comment="where the HTML report was written"),
    Column("report_sent_at", DateTime(timezone=True), comment="when the report was emailed"),
    Column("report_status", String(16), comment=REPORT_STATUS_COMMENT),
    CheckConstraint(_in("status", RUN_STATUSES), name="status"),
    CheckConstraint(_in("report_status", REPORT_STATUSES), name="report_status"),
    Index(None, "as_of"),
    comment="One row per run of a night: a rerun marks the earlier run superseded",
)

crs_risk_scores = Table(
    "crs_risk_scores",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="surrogate key"),
    _run_id(),
    Column("as_of", Date, nullable=False, comment="night scored (data cut-off: end of this day)"),
    Column("patient_id", Text, nullable=False, comment="as in the warehouse"),
    Column("model", String(16), nullable=False, comment=MODEL_COMMENT),
    Column("horizon_days", Integer, nullable=False, comment="1, 2 or 3"),
    Column(
        "target_date",
        Date,
        nullable=False,
        comment="as_of + horizon_days: the last day of the window the risk is about",
    ),
    Column(
        "probability", Float, comment="the networks' raw probability (NULL unless status is ok)"
    ),
    Column(
        "calibrated_risk",
        Float,
        comment="calibrated probability that CRS grade >= 3 starts within horizon_days days "
        "(days as_of + 1 .. target_date) for a patient not yet severe; never lower at 2 days "
        "than at 1, nor at 3 than at 2 (NULL unless status is ok)",
    ),
    Column(
        "status",
        String(24),
        nullable=False,
        comment="ok, insufficient_inputs (fewer than 5 observed inputs), already_severe "
        "(latest CRS grade on or before as_of is >= 3: not scored as a warning) or error",
    ),
    Column("inputs_observed", Integer, nullable=False, comment="model inputs observed"),
    Column("inputs_expected", Integer, nullable=False, comment="model inputs in all"),
    Column("model_version", String(64), comment="as on the run"),
    Column("detail", Text, comment="why a row is not ok, or the calibration used"),
    Column("created_at", DateTime(timezone=True), nullable=False, comment="when written"),
    UniqueConstraint("as_of", "patient_id", "model", "horizon_days", "run_id"),
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
    # crs_risk_newest_per_patient; run_id: the current-run test without reading the rows
    Index(None, "patient_id", "model", "horizon_days", "as_of", "run_id"),
    comment="One row per patient, model and horizon of each night's current run (and of an "
    "earlier run of the night whose report was emailed)",
)

crs_patient_nights = Table(
    "crs_patient_nights",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="surrogate key"),
    _run_id(),
    Column("as_of", Date, nullable=False, comment="night scored"),
    Column("patient_id", Text, nullable=False, comment="as in the warehouse"),
    Column("day_since_infusion", Integer, comment="days since the CAR-T infusion"),
    Column("crs_grade", Integer, comment="latest CRS grade on or before as_of (NULL: none)"),
    Column(
        "recommended_model",
        String(16),
        comment="the model the report used: the first of all, no_cytokines, cytokines, "
        "biochem_blood, biochem, blood_routine with enough inputs (NULL: not scorable)",
    ),
    Column("max_risk", Float, comment="highest calibrated_risk of the recommended model"),
    Column(
        "alert",
        Boolean,
        nullable=False,
        comment="max_risk reached the recommended model's alert_threshold: emailed as an alert",
    ),
    Column(
        "tier",
        String(8),
        comment="alert, or watch (under alert_threshold, at or over the model's watch "
        "threshold: listed one line each under the alerts); NULL: neither",
    ),
    Column(
        "alert_threshold",
        Float,
        comment="the recommended model's alert threshold that night (its manifest's, or "
        "PRCRS_ALERT_THRESHOLD); NULL: not scorable",
    ),
    Column(
        "alert_state",
        String(16),
        nullable=False,
        comment="new (first night over the threshold on this model), rising / falling (over, "
        "highest risk up / down by >= 5 points since the previous night), continuing, none, "
        "already_severe, not_scorable",
    ),
    Column(
        "previous_max_risk",
        Float,
        comment="max_risk of the latest earlier night within 7 days on the same model",
    ),
    Column("labs_latest_at", DateTime, comment="collection time of the newest result used"),
    Column(
        "n_inputs_set_aside",
        Integer,
        nullable=False,
        comment="this patient's lab values set aside tonight (see data_quality_issues)",
    ),
    UniqueConstraint("as_of", "patient_id", "run_id"),
    CheckConstraint(_in("alert_state", ALERT_STATES), name="alert_state"),
    CheckConstraint(_in("tier", TIERS), name="tier"),
    Index(None, "run_id"),
    Index(None, "patient_id", "as_of"),
    comment="One row per active patient and night's current run (and emailed earlier run): "
    "what the report said about the patient",
)

crs_risk_explanations = Table(
    "crs_risk_explanations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="surrogate key"),
    _run_id(),
    Column("as_of", Date, nullable=False, comment="night scored"),
    Column("patient_id", Text, nullable=False, comment="as in the warehouse"),
    Column("model", String(16), nullable=False, comment="the recommended model explained"),
    Column("horizon_days", Integer, nullable=False, comment="1, 2 or 3"),
    Column("rank", Integer, nullable=False, comment="1 = the lab that raised the risk most"),
    Column("analyte", String(32), nullable=False, comment="panel code, e.g. il6"),
    Column("value", Float, nullable=False, comment="the value used, in unit"),
    Column("unit", String(32), nullable=False, comment="the model's unit for the analyte"),
    Column(
        "contribution",
        Float,
        nullable=False,
        comment="calibrated_risk minus the risk with this lab not measured (0.12 = 12 points)",
    ),
    UniqueConstraint("as_of", "patient_id", "model", "horizon_days", "rank", "run_id"),
    Index(None, "run_id"),
    comment="Top 5 labs that raised each flagged patient's risk (every scored patient with "
    "PRCRS_EXPLAIN_ALL), by occlusion on the recommended model",
)

data_quality_issues = Table(
    "data_quality_issues",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="surrogate key"),
    _run_id(),
    Column("patient_id", Text, comment="as in the warehouse (NULL when missing there)"),
    Column("analyte", Text, comment="the analyte as written in the warehouse"),
    Column("collected_at", DateTime, comment="collection time, warehouse wall clock"),
    Column("raw_value", Text, comment="the value as written (long text cut to an excerpt)"),
    Column("unit", Text, comment="the unit as written"),
    Column("reason", String(64), nullable=False, comment="the decision, e.g. unknown_unit"),
    Index(None, "run_id"),
    comment="One row per lab value or patient the night set aside or bounded, and why",
)

prediction_outcomes = Table(
    "prediction_outcomes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="surrogate key"),
    _run_id(),
    Column("as_of", Date, nullable=False, comment="night of the prediction"),
    Column("patient_id", Text, nullable=False, comment="as in the warehouse"),
    Column("model", String(16), nullable=False, comment="factor set"),
    Column("horizon_days", Integer, nullable=False, comment="days ahead: 1, 2 or 3"),
    Column("target_date", Date, nullable=False, comment="as_of + horizon_days"),
    Column("calibrated_risk", Float, nullable=False, comment="the stored ok risk judged"),
    Column(
        "outcome",
        Integer,
        comment="1: severe CRS began by target_date; 0: it did not (a day without a grade "
        "reads as not severe, as in training); NULL: the patient turned out already severe "
        "that night by grades charted later (not judged)",
    ),
    Column("judged_on", Date, nullable=False, comment="the night that judged it"),
    UniqueConstraint("as_of", "patient_id", "model", "horizon_days"),
    Index(None, "target_date", "model"),
    Index(None, "run_id"),
    comment="Each stored ok prediction judged once, by the first night after its target "
    "date (run_id: that night's run); model_performance's windows are computed from these. "
    "A rerun of a night drops its predictions' outcomes, to be judged again",
)

model_performance = Table(
    "model_performance",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="surrogate key"),
    _run_id(),
    Column("as_of", Date, nullable=False, comment="night that computed it"),
    Column("model", String(16), nullable=False, comment=MODEL_COMMENT),
    Column("horizon_days", Integer, nullable=False, comment="1, 2 or 3"),
    Column(
        "window_days",
        Integer,
        nullable=False,
        comment="predictions whose target window ended in the last window_days days",
    ),
    Column("n_predictions", Integer, nullable=False, comment="stored ok risks judged"),
    Column("n_patients", Integer, nullable=False, comment="patients among them"),
    Column("n_events", Integer, nullable=False, comment="predictions followed by an onset"),
    Column("auroc", Float, comment="AUROC (NULL: fewer than 5 events or 5 non-events)"),
    Column(
        "auroc_low",
        Float,
        comment="95% interval, a patient's nights clustered (Obuchowski 1997), low",
    ),
    Column(
        "auroc_high",
        Float,
        comment="95% interval, a patient's nights clustered (Obuchowski 1997), high",
    ),
    Column("auprc", Float, comment="average precision (NULL as auroc)"),
    Column("brier", Float, comment="Brier score of calibrated_risk"),
    Column("mean_predicted", Float, comment="mean calibrated_risk: the expected event rate"),
    Column("observed_rate", Float, comment="share of predictions followed by an onset"),
    Column("calibration_intercept", Float, comment="calibration-in-the-large (NULL as auroc)"),
    Column("calibration_slope", Float, comment="calibration slope, 1 is ideal (NULL as auroc)"),
    Column("alert_sensitivity", Float, comment="share of events at or over the threshold"),
    Column(
        "alert_ppv", Float, comment="share of risks at or over the threshold followed by an onset"
    ),
    Column(
        "median_lead_days",
        Float,
        comment="median days from first crossing the threshold to the onset, flagged onsets",
    ),
    UniqueConstraint("as_of", "model", "horizon_days", "window_days"),
    Index(None, "run_id"),
    comment="How the stored risks did once the outcomes arrived (performance.py), per night",
)

input_drift = Table(
    "input_drift",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="surrogate key"),
    _run_id(),
    Column("as_of", Date, nullable=False, comment="night"),
    Column("analyte", String(32), nullable=False, comment="panel code, e.g. il6"),
    Column("n", Integer, nullable=False, comment="active patients with a value tonight"),
    Column("share_observed", Float, comment="share of active patients with a value"),
    Column("train_share_observed", Float, comment="share of training patient-days with one"),
    Column(
        "psi",
        Float,
        comment="population stability index against the training deciles (NULL: < 20 values)",
    ),
    Column("median", Float, comment="median value tonight, model unit"),
    Column("train_median", Float, comment="median training value, model unit"),
    Column("drifting", Boolean, nullable=False, comment="psi over 0.25 (a major shift)"),
    UniqueConstraint("as_of", "analyte"),
    Index(None, "run_id"),
    comment="Tonight's lab values against the training data's, per analyte (drift.py)",
)

# One row per scored night claimed by a scheduler: the primary key is the lock that
# stops two schedulers on two hosts from scoring the same night.
night_claims = Table(
    "night_claims",
    metadata,
    Column("as_of", Date, primary_key=True, comment="night claimed"),
    Column("claimed_by", String(128), nullable=False, comment="scheduler host"),
    Column("claimed_at", DateTime(timezone=True), nullable=False, comment="when"),
    comment="Which scheduler host claimed which night (the lock between schedulers)",
)


def current_runs() -> Select:
    """The run ids whose rows are their night's current ones: every run but a superseded
    one (whose rows are kept only when its report was emailed). Readers that mean "the
    night's rows" filter with `in_current_run`; the views with CURRENT_RUNS_SQL."""
    return select(scoring_runs.c.run_id).where(scoring_runs.c.status != SUPERSEDED)


def in_current_run(table: Table) -> ColumnElement[bool]:
    """A WHERE clause keeping `table`'s rows of their night's current run only."""
    return table.c.run_id.in_(current_runs())


CURRENT_RUNS_SQL = " ".join(
    str(current_runs().compile(compile_kwargs={"literal_binds": True})).split()
)
_LATEST_REPORTED = (
    "SELECT MAX(as_of) FROM scoring_runs WHERE status IN "
    + "("
    + ", ".join(repr(s) for s in REPORTED)
    + ")"
)


class View(NamedTuple):
    """A view of the results schema, with what its comments and the README say of it."""

    comment: str
    sql: str
    source: str  # the table whose columns (and comments) the view shows
    added: tuple[tuple[str, str], ...] = ()  # (column, comment) it adds after them


VIEWS = {
    "crs_risk_latest": View(
        "The current rows of the latest night that was reported (status succeeded or "
        "stale_data) only",
        f"""SELECT s.* FROM crs_risk_scores AS s
WHERE s.as_of = ({_LATEST_REPORTED})
  AND s.run_id IN ({CURRENT_RUNS_SQL})""",
        "crs_risk_scores",
    ),
    "crs_risk_newest_per_patient": View(
        "Each patient's newest current row per model and horizon, however old (stale patients too)",
        f"""SELECT s.*
FROM crs_risk_scores AS s
JOIN (
    SELECT patient_id, model, horizon_days, MAX(as_of) AS as_of
    FROM crs_risk_scores
    WHERE run_id IN ({CURRENT_RUNS_SQL})
    GROUP BY patient_id, model, horizon_days
) AS newest
  ON s.patient_id = newest.patient_id
 AND s.model = newest.model
 AND s.horizon_days = newest.horizon_days
 AND s.as_of = newest.as_of
WHERE s.run_id IN ({CURRENT_RUNS_SQL})""",
        "crs_risk_scores",
    ),
    "crs_patient_nights_sent": View(
        "What on-call received: the crs_patient_nights rows of every run whose report was "
        "emailed, kept when a rerun or backfill of the night replaced them",
        f"""SELECT n.*, r.report_sent_at, r.report_status,
       r.status <> '{SUPERSEDED}' AS still_current
FROM crs_patient_nights AS n
JOIN scoring_runs AS r ON r.run_id = n.run_id
WHERE r.report_sent_at IS NOT NULL""",
        "crs_patient_nights",
        (
            ("report_sent_at", "when the run's report was emailed"),
            ("report_status", "sent, or sent_delayed (resent by a later night)"),
            (
                "still_current",
                "true: the night's current run; false: a later run of the night replaced "
                "it (superseded), its rows kept here because on-call received them",
            ),
        ),
    ),
}

for _table in ("model_performance", "input_drift"):
    VIEWS[f"{_table}_latest"] = View(
        f"The {_table} rows of the latest night that computed them",
        f"SELECT * FROM {_table} WHERE as_of = (SELECT MAX(as_of) FROM {_table})",
        _table,
    )
