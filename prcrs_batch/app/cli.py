"""The `prcrs-batch` command: thin commands that build Settings and call the library."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click

from prcrs_batch.settings import Settings, SettingsError, load_settings
from prcrs_batch.task.data_day import current_data_day, data_cutoff

if TYPE_CHECKING:  # the library is imported by the commands that use it: --help stays quick
    from collections.abc import Iterator

    from prcrs_batch.app.pipeline import RunSummary

log = logging.getLogger("prcrs_batch")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("apscheduler.executors", "matplotlib", "PIL", "alembic.runtime"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(strict=True, **{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="prcrs-batch")
def main(verbose: bool) -> None:
    """Nightly PrCRS scoring of severe CRS risk for CAR-T patients.

    Configuration comes from PRCRS_* environment variables or a .env file (see README).
    """
    _setup_logging(verbose)


@contextmanager
def _setup_errors() -> Iterator[None]:
    """A database set-up mistake as one line (the setting, what to do), never a traceback."""
    from prcrs_batch.results.engines import DatabaseSetupError

    try:
        yield
    except DatabaseSetupError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("init-db")
def init_db() -> None:
    """Create or upgrade the results schema (Alembic migrations), as PRCRS_MIGRATOR_URL
    when set, else PRCRS_RESULTS_URL; says what it did."""
    from prcrs_batch.errors import redact_url
    from prcrs_batch.results.engines import explained
    from prcrs_batch.results.migrations import migrate

    settings = _settings()
    url = settings.migration_url
    setting = "PRCRS_MIGRATOR_URL" if settings.migrator_url else "PRCRS_RESULTS_URL"
    with _setup_errors(), explained(setting, url):
        migration = migrate(url, settings.results_schema)
    schema = f" (schema {settings.results_schema})" if settings.results_schema else ""
    click.echo(migration.describe(redact_url(url) + schema))


@main.command()
@click.option(
    "--as-of",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Judge the data as the night of this data day would (a CDM refreshed now and then: "
    "its last day). Default: last night's, yesterday.",
)
def check(as_of: datetime | None) -> None:
    """Check the installation; one line per check, exit 0 only when all pass.

    Settings (every effective value, passwords masked), the warehouse contract, the results
    schema's revision, the models' checksums, SMTP (EHLO, STARTTLS, login: nothing is
    sent), the report folder and the data's freshness.
    """
    from prcrs_batch.app import checks

    try:
        settings = load_settings()
    except SettingsError as exc:
        click.echo(checks.Check("settings", False, str(exc)).line())
        sys.exit(1)
    click.echo("effective settings:")
    for name, value in checks.effective_settings(settings):
        click.echo(f"  {name:<28} {value}")
    results = []
    moment = data_cutoff(as_of.date()) if as_of else None  # the end of that data day
    for result in checks.run_checks(settings, now=moment):
        click.echo(result.line())
        results.append(result)
    failed = [r.name for r in results if not r.ok]
    click.echo(f"{len(failed)} of {len(results)} checks failed: {', '.join(failed)}" if failed
               else f"all {len(results)} checks passed")  # fmt: skip
    sys.exit(1 if failed else 0)


@main.command("load-cohort")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "model",
    type=click.Choice(["contract", "omop"]),
    help="The contract tables or OMOP CDM v5.4 tables (default: PRCRS_WAREHOUSE_MODEL).",
)
@click.option(
    "--concept-ids",
    metavar="FIRST-LAST",
    help="OMOP: ids for the loader's own concepts (default: above 2,000,000,000).",
)
def load_cohort_command(path: Path, model: str | None, concept_ids: str | None) -> None:
    """Load a cohort file in the cart_dev.csv format into the warehouse tables (idempotent),
    in PRCRS_WAREHOUSE_SCHEMA's schemas; log in as a login that may write there, never the
    nightly job's read-only one."""
    from prcrs_batch.devdata.cohort import read_cohort
    from prcrs_batch.devdata.omop import load_cohort_as
    from prcrs_batch.results.engines import explained, make_engine

    settings = _settings()
    try:
        first, last = (int(n) for n in concept_ids.split("-")) if concept_ids else (0, -1)
    except ValueError:
        raise click.BadParameter(f"not FIRST-LAST: {concept_ids!r}") from None
    try:
        cohort = read_cohort(path)
        with _setup_errors(), explained("PRCRS_WAREHOUSE_URL", settings.warehouse_url):
            engine, codes = make_engine(settings.warehouse_url), settings.omop_codes_dir
            counts = load_cohort_as(
                engine, cohort, model or settings.warehouse_model, codes,
                schema=settings.warehouse_schema,
                local_ids=range(first, last + 1) if concept_ids else None,
            )  # fmt: skip
    except ValueError as exc:  # a bad file, or a CDM that cannot take it (one line)
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"loaded {cohort['patient_id'].nunique()} patients from {path.name}; warehouse holds:"
    )
    for table, n in counts.items():
        click.echo(f"  {table}: {n} rows")


_NIGHTS_JSON = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per night (JSON lines on standard output) instead of the summary.",
)


def _run_dates(
    settings: Settings,
    dates: list[date],
    send_email: bool,
    *,
    as_json: bool = False,
    progress: bool = False,
) -> bool:
    """Run the nights, printing each one's summary (or JSON line, or a progress bar and a
    total); True when every night went well."""
    from prcrs_batch.app import pipeline

    nights = pipeline.run_nights(settings, dates, send_email=send_email)
    return _show_nights(settings, nights, dates, as_json=as_json, progress=progress)


def _show_nights(
    settings: Settings,
    nights: Iterator[RunSummary],
    dates: list[date],
    *,
    as_json: bool = False,
    progress: bool = False,
) -> bool:
    """Print each night's summary as `nights` yields it (`dates`: the nights it runs)."""
    from prcrs_batch.app import console
    from prcrs_batch.monitoring.run_metrics import record

    started = time.perf_counter()
    done: list[RunSummary] = []
    with _setup_errors():
        for summary in console.with_progress(nights, len(dates)) if progress else nights:
            done.append(summary)
            if as_json:
                click.echo(json.dumps(record(summary)))
            elif not progress:
                console.echo_summary(summary)
    if progress and dates:
        statuses = ", ".join(f"{n} {s}" for s, n in Counter(s.status for s in done).items())
        click.echo(
            f"{len(done)} nights from {dates[0]} to {dates[-1]} in "
            f"{time.perf_counter() - started:.0f} s: {statuses}; "
            f"{sum(s.n_alerts for s in done)} alerts; reports in {settings.report_dir}",
            err=as_json,  # stdout stays JSON lines only
        )
    return all(s.ok for s in done)


@main.command()
@click.option(
    "--as-of",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Data day to score (default: yesterday in PRCRS_TIMEZONE, the last complete day).",
)
@click.option("--no-email", is_flag=True, help="Write the report but do not send it.")
@_NIGHTS_JSON
def run(as_of: datetime | None, no_email: bool, as_json: bool) -> None:
    """Score all active patients once, store the results, write and email the report."""
    settings = _settings()
    night = as_of.date() if as_of else current_data_day(settings.zone)
    if not _run_dates(settings, [night], send_email=not no_email, as_json=as_json):
        sys.exit(1)


@main.command()
@click.option(
    "--start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First night (inclusive)."
)
@click.option(
    "--end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last night (inclusive)."
)
@click.option("--email", is_flag=True, help="Also email each night's report (off by default).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes scoring the range, each a contiguous share; then one finishes it.",
)
@click.option(
    "--shards", type=click.IntRange(1, 1000), help="With --shard-index or --finish: shares."
)
@click.option(
    "--shard-index",
    type=click.IntRange(0, 999),
    help="Score only this share of --shards (a Job's completion index), not monitored.",
)
@click.option("--finish", is_flag=True, help="After every --shard-index ran: the monitoring pass.")
@_NIGHTS_JSON
def backfill(
    start: datetime,
    end: datetime,
    email: bool,
    workers: int,
    shards: int | None,
    shard_index: int | None,
    finish: bool,
    as_json: bool,
) -> None:
    """Score every night in a date range with the models loaded once (validation on history).

    A progress bar (night n of N, time left) on standard error, then the total. --workers N:
    N processes score contiguous shares of the range, then this one finishes it in date
    order (app/backfill.py). --shards N --shard-index I runs pass 1 for share I alone (one
    pod of a Kubernetes Indexed Job); --shards N --finish, run once after all of them, is
    pass 2.
    """
    from prcrs_batch.app import backfill as passes

    settings = _settings()
    if end < start:
        raise click.BadParameter("--end is before --start")
    if (shard_index is not None or finish) != (shards is not None) or (
        finish and shard_index is not None
    ):
        raise click.UsageError("--shards goes with exactly one of --shard-index and --finish")
    if email and (workers > 1 or shards):
        raise click.UsageError("--email mails each night as it runs: one worker, no shards")
    days = (end.date() - start.date()).days + 1
    dates = [start.date() + timedelta(days=i) for i in range(days)]
    try:
        nights, shown = passes.plan(
            settings,
            dates,
            workers=workers,
            shards=shards,
            shard_index=shard_index,
            finish=finish,
            send_email=email,
        )
    except IndexError:
        raise click.BadParameter(f"--shard-index is not under --shards {shards}") from None
    try:
        ok = _show_nights(settings, nights, shown, as_json=as_json, progress=True)
    except passes.WorkerError as exc:
        raise click.ClickException(str(exc)) from None
    if not ok:
        sys.exit(1)


@main.command()
@click.argument("source", required=False, type=click.File("rb"))
@click.option(
    "--format",
    "kind",
    type=click.Choice(["csv", "jsonl"]),
    default="csv",
    show_default=True,
    help="Format of SOURCE (a file, or - for standard input).",
)
@click.option("--lab", "labs", multiple=True, help='One value, e.g. il6=1240 or "crp=85 mg/L".')
@click.option("--patient", default="patient", show_default=True, help="Patient id for --lab.")
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), help="Night (default: today).")
@click.option("--infusion-date", type=click.DateTime(["%Y-%m-%d"]), help="Default: --as-of.")
@click.option("--grade", type=click.IntRange(0, 4), help="Latest CRS grade on the as-of date.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list, one object per patient.")
def score(
    source: BinaryIO | None,
    kind: str,
    labs: tuple[str, ...],
    patient: str,
    as_of: datetime | None,
    infusion_date: datetime | None,
    grade: int | None,
    as_json: bool,
) -> None:
    """Score patients from lab rows (patient_id, collected_at, analyte, value, unit) given
    here, not from the warehouse, exactly as the nightly job would; nothing is stored."""
    from prcrs_batch.app import score_command

    settings = _settings()
    night = as_of.date() if as_of else settings.today()
    try:
        when = score_command.default_collected_at(settings, night)
        frame = score_command.gather_rows(
            source.read() if source else None, kind, labs, patient, when, _name(source)
        )
        infused = infusion_date.date() if infusion_date else None
        with _setup_errors():
            answer = score_command.answer(
                settings, score_command.Request(frame, night, infused, grade), as_json
            )
    except score_command.InputError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(answer)


def _name(source: BinaryIO | None) -> str:
    """The file's name as given ("<stdin>" for -)."""
    name = getattr(source, "name", None)
    return name if isinstance(name, str) and name != "-" else "<stdin>"


@main.command()
@click.option("--days", default=90, show_default=True, help="Longest window shown.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead.")
def monitor(days: int, as_json: bool) -> None:
    """The latest model_performance and input_drift; exit code 2 when the `all` model's
    discrimination or calibration crosses a limit (README, "Monitoring")."""
    from prcrs_batch.app import console
    from prcrs_batch.monitoring import watch
    from prcrs_batch.results.engines import explained, make_engine
    from prcrs_batch.results.migrations import require_results_schema

    settings = _settings()
    url, schema = settings.results_database_url, settings.results_schema
    with _setup_errors(), explained("PRCRS_RESULTS_URL", url):
        require_results_schema(url, schema)  # before init-db, or a wrong URL: one line
        performance, drifted = watch.latest(make_engine(url, schema), days)
    breaches = watch.breaches(performance)
    if as_json:
        records = {"performance": performance, "input_drift": drifted}
        out = {
            k: json.loads(v.to_json(orient="records", date_format="iso"))
            for k, v in records.items()
        }
        click.echo(json.dumps(out | {"breaches": breaches}, indent=2))
    else:
        console.echo_monitor(performance, drifted, breaches)
    if breaches:
        sys.exit(2)


@main.command()
def schedule() -> None:
    """Run the nightly job on PRCRS_SCHEDULE_CRON until stopped (SIGTERM finishes cleanly)."""
    from prcrs_batch.app import scheduler
    from prcrs_batch.results.migrations import require_usable

    settings = _settings()
    with _setup_errors():
        require_usable(settings)  # a set-up mistake stops the start, not the first night
    scheduler.serve(settings)


@main.command()
@click.option("--seed", default=20261126, show_default=True, help="Seed for a reproducible run.")
def demo(seed: int) -> None:
    """Fill the embedded SQLite warehouse with the development cohort in treatment today (labs
    up to yesterday), then run last night: the data day yesterday, as the scheduler would."""
    from prcrs_batch.app import pipeline
    from prcrs_batch.results.engines import explained

    settings = _settings()
    today = settings.today()
    night = current_data_day(settings.zone)
    setting = "PRCRS_RESULTS_URL" if settings.results_url else "PRCRS_WAREHOUSE_URL"
    try:
        with _setup_errors(), explained(setting, settings.results_database_url):
            counts = pipeline.prepare_demo(settings, today=today, seed=seed)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"demo warehouse {settings.warehouse_url}: "
        + ", ".join(f"{n} {t}" for t, n in counts.items())
    )
    sys.exit(0 if _run_dates(settings, [night], send_email=True) else 1)


@main.command()
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the models (default: PRCRS_MODEL_DIR).",
)
@click.option(
    "--seed", default=0, show_default=True, help="Seed: the same seed gives the same models."
)
@click.option("--quick", is_flag=True, help="Tiny settings for tests: seconds, not minutes.")
def train(output: Path | None, seed: int, quick: bool) -> None:
    """Pre-train on COVID-19, fine-tune on CAR-T, calibrate, and write the 18 models."""
    from prcrs_batch.offline import training

    if quick and output is None:
        raise click.ClickException(
            "--quick trains toy models for tests: name where they go with --output "
            "(they never replace PRCRS_MODEL_DIR unless --output names it)"
        )
    settings = _settings()
    target = output or settings.model_dir
    started = time.perf_counter()
    manifest = training.train(target, seed=seed, quick=quick)
    click.echo(
        f"{len(manifest['models'])} models written to {target} "
        f"in {time.perf_counter() - started:.0f} s"
    )


@main.command()
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Default: PRCRS_MODEL_DIR.",
)
@click.option(
    "--seeds",
    default="0,1,2,3,4",
    show_default=True,
    help="Comma-separated seeds of the repeated 5-fold CV.",
)
@click.option("--quick", is_flag=True, help="Tiny settings for tests.")
def evaluate(model_dir: Path | None, seeds: str, quick: bool) -> None:
    """Patient-grouped cross-validation against baselines; writes EVALUATION.md and plots."""
    from prcrs_batch.offline import evaluation

    settings = _settings()
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"not a comma-separated list of integers: {seeds!r}") from None
    command = "prcrs-batch evaluate " + " ".join(sys.argv[2:])
    path = evaluation.evaluate(
        model_dir or settings.model_dir, seeds=seed_list, quick=quick, command=command.strip()
    )
    click.echo(f"evaluation written to {path}")
