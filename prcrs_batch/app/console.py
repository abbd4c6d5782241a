"""What the run commands print: a night's one-screen summary, and backfill's progress bar."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click
import pandas as pd

from prcrs_batch.nightly.alerts import records

if TYPE_CHECKING:  # console is part of the CLI, the top: it prints the pipeline's summaries
    from prcrs_batch.app.pipeline import RunSummary


def echo_summary(summary: RunSummary) -> None:
    """One screen: status, counts, stage times, report, email, notes."""
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
    if summary.report_path or summary.report_error:
        click.echo(f"  report    {summary.report_error or summary.report_path}")
    click.echo(f"  email     {summary.email}")
    for note in summary.notes:  # CRS grades unavailable, models in error
        click.echo(f"  note      {note}")
    if summary.error:
        click.echo(f"  {'stale' if summary.status == 'stale_data' else 'error':<9} {summary.error}")


def with_progress(nights: Iterator[RunSummary], total: int) -> Iterator[RunSummary]:
    """One progress bar on a terminal (night n of N, time left), with a line for each night
    that did not go well; elsewhere (a log) one short line per night."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    started = time.perf_counter()
    bar = tqdm(total=total, desc="backfill", unit="night", file=sys.stderr, disable=None)
    with bar, logging_redirect_tqdm():
        for n, summary in enumerate(nights, start=1):
            bar.set_postfix_str(f"{summary.as_of} {summary.status}", refresh=False)
            bar.update()
            if bar.disable or not summary.ok:
                left = (time.perf_counter() - started) / n * (total - n)
                why = f": {summary.error}" if summary.error else ""
                tqdm.write(
                    f"night {n}/{total} {summary.as_of} {summary.status} "
                    f"({summary.n_alerts} alerts, email {summary.email}){why}; "
                    f"about {left:.0f} s left",
                    file=sys.stderr,
                )
            yield summary


def echo_monitor(performance: pd.DataFrame, drifted: pd.DataFrame, breaches: list[str]) -> None:
    """The monitoring tables, short: per model and horizon the windows' figures; the analytes
    drifting; the limits crossed."""
    if performance.empty and drifted.empty:
        click.echo("no monitoring yet: it is written by each night (prcrs-batch run)")
        return
    night = performance["as_of"].max() if len(performance) else drifted["as_of"].max()
    click.echo(
        f"monitoring as of {night}: model, horizon, window, predictions, events, AUROC "
        "(95% CI), observed vs expected, calibration slope, sensitivity, PPV, median lead"
    )
    for r in records(performance):
        auroc = _num(r["auroc"])
        if auroc != "-":
            auroc += f" ({_num(r['auroc_low'])}-{_num(r['auroc_high'])})"
        click.echo(
            f"  {r['model']:<13} {r['horizon_days']}d {r['window_days']:>4}d  "
            f"n={r['n_predictions']:<6} events={r['n_events']:<4} AUROC {auroc:<17} "
            f"obs {_pct(r['observed_rate'])} vs exp {_pct(r['mean_predicted'])}  "
            f"slope {_num(r['calibration_slope'])}  sens {_pct(r['alert_sensitivity'])}  "
            f"PPV {_pct(r['alert_ppv'])}  lead {_num(r['median_lead_days'])}"
        )
    for r in records(drifted):
        if r["drifting"]:
            click.echo(
                f"  drift: {r['analyte']} PSI {_num(r['psi'])} (median {_num(r['median'])} "
                f"vs {_num(r['train_median'])} in training)"
            )
    for line in breaches:
        click.echo(f"  LIMIT: {line}")


def _pct(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.1%}"


def _num(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.2f}"
