"""The nightly job: the only module that knows the order of the stages, and the nights loop.

read warehouse -> [compute.py: clean labs -> features -> score -> alerts -> explain]
-> write results -> report -> send
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine

from prcrs_batch.devdata import cohort
from prcrs_batch.errors import SafeMessage, describe, in_full
from prcrs_batch.modeling import device, store
from prcrs_batch.monitoring import watch
from prcrs_batch.monitoring.run_metrics import export_metrics
from prcrs_batch.nightly import alert_states, alerts
from prcrs_batch.nightly.compute import ScoredNight, night_tiers, score_night
from prcrs_batch.report import outbox, render
from prcrs_batch.resources import bundled_data
from prcrs_batch.results import locks, nights
from prcrs_batch.results.engines import DatabaseSetupError, make_engine, with_db_retries
from prcrs_batch.results.migrations import migrate, require_usable
from prcrs_batch.results.nights import RunInfo
from prcrs_batch.settings import Settings
from prcrs_batch.task.data_day import data_day
from prcrs_batch.warehouse.freshness import FeedState, assess_feed
from prcrs_batch.warehouse.queries import Window, read_night

log = logging.getLogger(__name__)

ALREADY_RUNNING = "already_running"  # a summary's status only: another run holds the night


class ModelsUnavailableError(SafeMessage, RuntimeError):
    """The model folder cannot be used at all (no manifest, unreadable): no night can run."""


@dataclass
class RunSummary(RunInfo):
    """What one night did: the run row plus what the CLI prints on one screen."""

    status_counts: dict[str, int] = field(default_factory=dict)
    data_issue_counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    report_path: Path | None = None
    email: str = "not sent"
    report_error: str | None = None  # why the report was not built or its HTML not written
    n_model_errors: int = 0
    feed: FeedState | None = None  # the warehouse feed's freshness (stale_data)
    stage: str = "start"  # the stage running (a failure names it)
    warehouse_read: bool = False  # False: a failure is a set-up failure (PRCRS_OPS_TO)

    @property
    def ok(self) -> bool:
        delivered = not self.email.startswith("failed") and self.report_error is None
        complete = self.status == "succeeded" and delivered and not self.n_model_errors
        return complete or self.status == ALREADY_RUNNING  # stopped cleanly: not a failure


@contextmanager
def _stage(summary: RunSummary, name: str) -> Iterator[None]:
    start = time.perf_counter()
    summary.stage = name
    try:
        yield
    finally:
        summary.seconds[name] = summary.seconds.get(name, 0.0) + time.perf_counter() - start


def run_nightly(
    settings: Settings,
    *,
    as_of: date,
    warehouse: Engine,
    results_db: Engine,
    bundle: store.ModelBundle | None = None,
    send_email: bool = True,
    now: datetime | None = None,
    monitor: bool = True,
) -> RunSummary:
    """Score every active patient for one data day (`as_of`: task.data_day), store the night,
    write and send the report. `now` is the site's wall-clock time of the run (default: the
    clock); results dated after it are set aside as from the future. `monitor=False`: the
    night's input drift only, no outcomes judged nor performance measured (they read the
    nights before: `monitor_stored_night` does them later, in date order).

    Never raises for a failed night: the summary says what failed, the failure is stored
    on a scoring_runs row, and nothing partial is left in crs_risk_scores. A run of a
    night that another run is doing stops at once (status already_running): nothing is
    written or sent.
    """
    wall_clock = now or datetime.now(settings.zone).replace(tzinfo=None)  # the warehouse's
    window = Window.for_night(settings, as_of, now=wall_clock)
    summary = RunSummary(
        run_id=str(uuid.uuid4()),
        as_of=as_of,
        started_at=datetime.now(timezone.utc),
        data_cutoff=window.end - timedelta(seconds=1),
        read_at=window.now,
    )
    with ExitStack() as stack:
        summary.stage = "take the run lock"
        try:
            held = stack.enter_context(locks.night_lock(results_db, as_of))
        except Exception as exc:  # no night without its lock: it fails, as a set-up failure
            _fail(settings, results_db, summary, exc, send_email)
            return summary
        if held:
            return _run_locked(
                settings, summary, window, warehouse, results_db, bundle, send_email, monitor
            )
    log.warning("night %s is already running in another run: nothing done", as_of.isoformat())
    summary.status = ALREADY_RUNNING
    summary.email = "not sent (night already running)"
    return summary


def _run_locked(
    settings: Settings,
    summary: RunSummary,
    window: Window,
    warehouse: Engine,
    results_db: Engine,
    bundle: store.ModelBundle | None,
    send_email: bool,
    monitor: bool = True,
) -> RunSummary:
    as_of = window.as_of
    log.info("run %s: scoring as of %s", summary.run_id, as_of.isoformat())
    try:
        if bundle is None:  # run_nights loads them once for all the nights it runs
            with _stage(summary, "load models"):
                bundle = _load_models(settings)
        summary.model_version = bundle.model_version
        summary.n_model_errors = len(bundle.errors())
        summary.notes += [
            f"model {m} {h}d in error: {why}" for (m, h), why in bundle.errors().items()
        ]
        with _stage(summary, "read warehouse"):
            night = with_db_retries(lambda: read_night(warehouse, window), "read warehouse")
        summary.warehouse_read = True
        with _stage(summary, "read feed"):
            summary.feed, stale = with_db_retries(
                lambda: assess_feed(warehouse, settings, as_of), "read feed freshness"
            )
        summary.notes += night.notes
        scored = score_night(
            settings,
            bundle,
            night,
            window,
            read_history=lambda ids: with_db_retries(
                lambda: _read_history(results_db, as_of, ids), "read score history"
            ),
            stage=lambda name: _stage(summary, name),
        )
        scores, issues, summaries = scored.scores, scored.issues, scored.summaries
        summary.n_patients = len(night.patients)
        summary.n_scores = len(scores)
        summary.n_alerts = len(alerts.alert_ids(summaries))
        summary.n_data_issues = len(issues)
        summary.status_counts = dict(Counter(scores["status"]))
        summary.data_issue_counts = dict(Counter(issues["reason"]))
        with _stage(summary, "write results"):
            summary.status = "stale_data" if stale else "succeeded"
            summary.error = "; ".join(stale) or None  # a stale night says why on its run row
            summary.finished_at = datetime.now(timezone.utc)

            def write() -> None:
                with results_db.begin() as connection:
                    nights.replace_night(
                        connection=connection,
                        run=summary,
                        scores=scores,
                        issues=issues,
                        patient_nights=alerts.night_rows(summaries),
                        explanations=scored.explained,
                    )

            with_db_retries(write, "write results")
    except Exception as exc:  # a failed night is recorded and reported, never half-written
        _fail(settings, results_db, summary, exc, send_email)
        return summary
    night_watch = _watch(settings, bundle, scored, window, warehouse, results_db, summary, monitor)

    try:
        with _stage(summary, "build report"):
            alert_report = render.build_report(
                run=summary,
                summaries=summaries,
                history=scored.recent,
                reasons=scored.reasons(),
                data_issues=summary.data_issue_counts,
                threshold=scored.tiers,
                language=settings.report_language,
                watch=night_watch,
                silent=settings.alert_mode == "silent",
                max_cards=settings.max_alert_cards,
            )
    except Exception as exc:  # the scores are stored; only the report is missing
        summary.report_error = f"report not built: {describe(exc)}"
        summary.email = "not sent: no report"
        log.error("run %s: %s", summary.run_id, summary.report_error)
    else:
        with _stage(summary, "write and send report"):
            published = outbox.publish(
                settings,
                results_db,
                alert_report,
                as_of=as_of,
                run_id=summary.run_id,
                send_email=send_email,
            )
        summary.report_path, summary.email = published.report_path, published.email
        summary.report_error = published.report_error
    log.info(
        "run %s %s: %d patients, %d scores, %d alerts, %d data-quality decisions",
        summary.run_id,
        summary.status,
        summary.n_patients,
        summary.n_scores,
        summary.n_alerts,
        summary.n_data_issues,
    )
    return summary


def run_nights(
    settings: Settings,
    dates: list[date],
    *,
    send_email: bool,
    monitor: bool = True,
    stored: Collection[date] = (),
) -> Iterator[RunSummary]:
    """Run each night in turn with the models loaded once; yields each night's summary.

    `monitor=False`: each night stores its input drift only (run_nightly). `stored`: nights
    of `dates` already scored whose monitoring is all that is left: in their turn, their
    outcomes are judged and performance measured (`monitor_stored_night`), nothing yielded.

    Models that cannot be loaded at all fail each night like any other failure (a
    recorded failed run and a failure notice), each night trying them again. A database
    set-up mistake (`require_usable`) raises DatabaseSetupError before anything loads,
    after the failure notice to the operators.
    """
    try:
        require_usable(settings)  # a set-up mistake stops here, before the models load
    except DatabaseSetupError as exc:
        if dates:
            _setup_failure(settings, dates[0], exc, send_email)
        raise
    device.set_torch_threads(settings.torch_threads)
    log.info("loading the models from %s (device %s)", settings.model_dir, settings.device)
    bundle: store.ModelBundle | None
    try:
        bundle = _load_models(settings)
    except ModelsUnavailableError as exc:
        log.error("%s: each night records the failure", exc)
        bundle = None
    warehouse = make_engine(settings.warehouse_url)
    results_db = make_engine(settings.results_database_url, settings.results_schema)
    try:
        for as_of in dates:
            if as_of in stored:
                if bundle is not None:  # no models: the nights failed, nothing to measure
                    monitor_stored_night(settings, bundle, as_of, warehouse, results_db)
                continue
            summary = run_nightly(
                settings,
                as_of=as_of,
                warehouse=warehouse,
                results_db=results_db,
                bundle=bundle,
                send_email=send_email,
                monitor=monitor,
            )
            export_metrics(settings, summary)
            yield summary
    finally:
        warehouse.dispose()
        results_db.dispose()


def run_claimed_night(
    settings: Settings, host: str, now: datetime | None = None
) -> RunSummary | None:
    """The scheduler's night: claim the current data day (at 02:00, yesterday: task.data_day)
    for `host`, then run it; None when another scheduler already claimed it (the claim is
    the lock between hosts). `now`: the site's wall-clock time (default: the clock). A
    database set-up mistake fails the night at once (logged, the operators told), nothing
    claimed."""
    now = now or datetime.now(settings.zone).replace(tzinfo=None)
    as_of = data_day(now)
    try:
        require_usable(settings)
    except DatabaseSetupError as exc:  # the scheduler keeps going: tomorrow may be fixed
        log.error("night %s cannot start: %s", as_of.isoformat(), exc)
        return _setup_failure(settings, as_of, exc, send_email=True)
    warehouse = make_engine(settings.warehouse_url)
    results_db = make_engine(settings.results_database_url, settings.results_schema)
    try:
        with results_db.begin() as connection:
            claimed = locks.claim_night(
                connection=connection, as_of=as_of, claimed_by=host, now=datetime.now(timezone.utc)
            )
        if not claimed:
            log.info("night %s already claimed by another scheduler; skipping", as_of.isoformat())
            return None
        summary = run_nightly(
            settings, as_of=as_of, warehouse=warehouse, results_db=results_db, now=now
        )
        export_metrics(settings, summary)
        log.info("night %s: %s (%d alerts)", as_of.isoformat(), summary.status, summary.n_alerts)
        return summary
    finally:
        warehouse.dispose()
        results_db.dispose()


def prepare_demo(settings: Settings, *, today: date, seed: int) -> dict[str, int]:
    """The embedded SQLite warehouse refilled with the development cohort in treatment on
    `today`, and the results schema migrated; returns the warehouse's row counts."""
    if not settings.warehouse_url.startswith("sqlite"):
        raise ValueError(
            "demo runs on the embedded SQLite warehouse only; unset PRCRS_WAREHOUSE_URL"
        )
    engine = make_engine(settings.warehouse_url)
    cohort.reset_warehouse(engine)
    development = cohort.read_cohort(bundled_data("cart_dev.csv"))
    counts = cohort.load_cohort(engine, cohort.place_in_treatment(development, today, seed=seed))
    engine.dispose()
    migrate(settings.results_database_url, settings.results_schema)
    return counts


def _read_history(results_db: Engine, as_of: date, trend_patients: list[str]) -> pd.DataFrame:
    with results_db.connect() as connection:
        return nights.score_history(
            connection=connection,
            since=as_of - timedelta(days=alert_states.HISTORY_DAYS),
            before=as_of,
            trend_patients=trend_patients,
        )


def _watch(
    settings: Settings,
    bundle: store.ModelBundle,
    scored: ScoredNight,
    window: Window,
    warehouse: Engine,
    results_db: Engine,
    summary: RunSummary,
    monitor: bool = True,
) -> watch.Watch | None:
    """The stored night measures the earlier ones (watch.py); a failure here is a note on
    the report, never a failed night. `monitor=False`: tonight's input drift only, and no
    footer on the report."""
    try:
        with _stage(summary, "monitor"):
            if not monitor:
                drifted = watch.night_drift(bundle, scored.features)
                with results_db.begin() as connection:
                    watch.store(
                        connection,
                        watch.Watch(pd.DataFrame(), drifted),
                        summary.run_id,
                        window.as_of,
                        parts=(watch.DRIFT,),
                    )
                return None
            night_watch = watch.watch_night(
                settings, bundle, scored.features, window, warehouse, results_db, summary.run_id
            )
            with results_db.begin() as connection:
                watch.store(connection, night_watch, summary.run_id, window.as_of)
        return night_watch
    except Exception as exc:
        summary.notes.append(f"monitoring not updated: {describe(exc)}")
        log.error("run %s: monitoring not updated: %s", summary.run_id, describe(exc))
        return None


def monitor_stored_night(
    settings: Settings,
    bundle: store.ModelBundle,
    as_of: date,
    warehouse: Engine,
    results_db: Engine,
) -> bool:
    """Judge the outcomes and measure the performance of a night already stored with its
    input drift only (`monitor=False`), under the run id it was stored with; False when
    there is no stored night (it failed) or the monitoring failed (logged, as in a night)."""
    with results_db.connect() as connection:
        run_id = nights.stored_run(connection=connection, as_of=as_of)
    if run_id is None:
        log.warning("night %s: no stored night to monitor", as_of.isoformat())
        return False
    window = Window.for_night(settings, as_of)
    try:
        with locks.night_lock(results_db, as_of) as held:
            if not held:
                log.warning("night %s is running in another run: not monitored", as_of)
                return False
            judged = watch.judge_night(settings, bundle, window, warehouse, results_db, run_id)
            with results_db.begin() as connection:
                watch.store(connection, judged, run_id, as_of, parts=(watch.JUDGED,))
    except Exception as exc:
        log.error("run %s: monitoring not updated: %s", run_id, describe(exc))
        return False
    return True


def _load_models(settings: Settings) -> store.ModelBundle:
    """The models, with thresholds for each (night_tiers refuses a manifest without)."""
    try:
        bundle = store.load_models(settings.model_dir, device=settings.device)
        night_tiers(settings, bundle)
        return bundle
    except Exception as exc:
        raise ModelsUnavailableError(
            f"cannot load the models from {settings.model_dir}: {describe(exc, values=True)}"
        ) from None


def _fail(
    settings: Settings, results_db: Engine, summary: RunSummary, exc: Exception, send_email: bool
) -> None:
    """Store the failed night's run row and send a failure notice: to the operators when
    the night never read the warehouse (a set-up failure), else to the night's list.

    The row, the log and the notice get the stage and `errors.describe` (no data values);
    the whole text is logged at DEBUG only.
    """
    summary.status = "failed"
    summary.error = f"{summary.stage}: {describe(exc)}"
    summary.finished_at = datetime.now(timezone.utc)
    summary.n_patients = summary.n_scores = summary.n_alerts = summary.n_data_issues = 0
    log.error("run %s failed: %s", summary.run_id, summary.error)
    log.debug("run %s failed in %s:\n%s", summary.run_id, summary.stage, in_full(exc))

    def record() -> None:
        with results_db.begin() as connection:
            nights.record_failed_run(connection=connection, run=summary)

    try:
        with_db_retries(record, "record failed run")
    except Exception as record_exc:  # the results database itself may be what failed
        log.error("run %s: could not record the failure: %s", summary.run_id, describe(record_exc))
    if send_email and settings.email_enabled:
        summary.email = outbox.send_failure_notice(
            settings, summary, setup=not summary.warehouse_read
        )


def _setup_failure(
    settings: Settings, as_of: date, exc: DatabaseSetupError, send_email: bool
) -> RunSummary:
    """A night that cannot start (a database set-up mistake): nothing is recorded (the
    results database may be what is wrong); the operators get the failure notice."""
    now = datetime.now(timezone.utc)
    summary = RunSummary(
        run_id=str(uuid.uuid4()),
        as_of=as_of,
        started_at=now,
        data_cutoff=datetime.combine(as_of + timedelta(days=1), datetime.min.time())
        - timedelta(seconds=1),
        status="failed",
        finished_at=now,
        error=f"check the databases: {exc}",
        stage="check the databases",
    )
    if send_email and settings.email_enabled:
        summary.email = outbox.send_failure_notice(settings, summary, setup=True)
    return summary
