"""The `prcrs-batch` command: thin commands that build Settings and call the library."""

from __future__ import annotations

import logging
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from prcrs_batch.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:  # the library is imported by the commands that use it: --help stays quick
    from prcrs_batch.pipeline import RunSummary

log = logging.getLogger("prcrs_batch")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("apscheduler.executors", "matplotlib", "PIL", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
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


@main.command("init-db")
def init_db() -> None:
    """Create or upgrade the results schema (Alembic migrations)."""
    from prcrs_batch.db import migrate
    from prcrs_batch.errors import redact_url

    settings = _settings()
    migrate(settings.results_database_url)
    click.echo(f"results schema is up to date in {redact_url(settings.results_database_url)}")


@main.command("load-cohort")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def load_cohort_command(path: Path) -> None:
    """Load a cohort file in the cart_dev.csv format into the warehouse tables (idempotent)."""
    from prcrs_batch.cohort import load_cohort, read_cohort
    from prcrs_batch.db import make_engine

    settings = _settings()
    try:
        cohort = read_cohort(path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    counts = load_cohort(make_engine(settings.warehouse_url), cohort)
    click.echo(
        f"loaded {cohort['patient_id'].nunique()} patients from {path.name}; warehouse holds:"
    )
    for table, n in counts.items():
        click.echo(f"  {table}: {n} rows")


def _echo_summary(summary: RunSummary) -> None:
    click.echo(f"run {summary.run_id}  as of {summary.as_of.isoformat()}  {summary.status.upper()}")
    click.echo(f"  patients  {summary.n_patients}")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.status_counts.items()))
    click.echo(f"  scores    {summary.n_scores}" + (f" ({counts})" if counts else ""))
    click.echo(f"  alerts    {summary.n_alerts}")
    top = ", ".join(
        f"{n} {r}" for r, n in sorted(summary.data_issue_counts.items(), key=lambda kv: -kv[1])[:4]
    )
    click.echo(
        f"  data      {summary.n_data_issues} lab values set aside or bounded"
        + (f" ({top})" if top else "")
    )
    click.echo(f"  models    {summary.model_version or '-'}")
    click.echo("  time      " + ", ".join(f"{k} {v:.1f}s" for k, v in summary.seconds.items()))
    if summary.report_path:
        click.echo(f"  report    {summary.report_path}")
    click.echo(f"  email     {summary.email}")
    if summary.error:
        click.echo(f"  error     {summary.error}")


def _run_dates(settings: Settings, dates: list[date], send_email: bool) -> bool:
    """Run the nights, printing each one's summary; True when every night went well."""
    from prcrs_batch import pipeline

    all_ok = True
    try:
        for summary in pipeline.run_nights(settings, dates, send_email=send_email):
            _echo_summary(summary)
            all_ok = all_ok and summary.ok
    except pipeline.ModelsUnavailableError as exc:
        raise click.ClickException(str(exc)) from None
    return all_ok


@main.command()
@click.option(
    "--as-of",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Night to score (default: today in PRCRS_TIMEZONE).",
)
@click.option("--no-email", is_flag=True, help="Write the report but do not send it.")
def run(as_of: datetime | None, no_email: bool) -> None:
    """Score all active patients once, store the results, write and email the report."""
    settings = _settings()
    night = as_of.date() if as_of else settings.today()
    if not _run_dates(settings, [night], send_email=not no_email):
        sys.exit(1)


@main.command()
@click.option(
    "--start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First night (inclusive)."
)
@click.option(
    "--end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last night (inclusive)."
)
@click.option("--email", is_flag=True, help="Also email each night's report (off by default).")
def backfill(start: datetime, end: datetime, email: bool) -> None:
    """Score every night in a date range with the models loaded once (validation on history)."""
    settings = _settings()
    if end < start:
        raise click.BadParameter("--end is before --start")
    days = (end.date() - start.date()).days + 1
    dates = [start.date() + timedelta(days=i) for i in range(days)]
    if not _run_dates(settings, dates, send_email=email):
        sys.exit(1)


@main.command()
def schedule() -> None:
    """Run the nightly job on PRCRS_SCHEDULE_CRON until stopped (SIGTERM finishes cleanly)."""
    from prcrs_batch import scheduler

    scheduler.serve(_settings())


@main.command()
@click.option("--seed", default=20261126, show_default=True, help="Seed for a reproducible run.")
def demo(seed: int) -> None:
    """Fill the embedded SQLite warehouse with the development cohort in treatment today; run."""
    from prcrs_batch import pipeline

    settings = _settings()
    today = settings.today()
    try:
        counts = pipeline.prepare_demo(settings, today=today, seed=seed)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"demo warehouse {settings.warehouse_url}: "
        + ", ".join(f"{n} {t}" for t, n in counts.items())
    )
    sys.exit(0 if _run_dates(settings, [today], send_email=True) else 1)


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
    from prcrs_batch import training

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
    from prcrs_batch import evaluation

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
