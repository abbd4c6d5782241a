"""Run one night of the job against a database and print its figures as one JSON line.

    .venv/bin/python scripts/bench_night.py --url postgresql://postgres@127.0.0.1/prcrs_bench \\
        --as-of 2026-11-25 --report-dir /tmp/reports [--model-dir models] [--profile 30]

Calls `prcrs_batch.app.pipeline.run_nightly` once (warehouse and results both at --url,
device cpu, email off, report into --report-dir) and prints: status, error, counts,
model version, `stages` (RunSummary.seconds), `run_nightly_seconds` (its wall-clock
time), `peak_rss_after` (ru_maxrss in MiB at the end of each stage: the stage where it
jumps is the one that needed the memory), `cpu_seconds`, `load_average` (before, after),
`import_seconds` (torch and the package), `torch`, `peak_rss_mib` (ru_maxrss of this
process) and `profile` (cProfile lines, with --profile N). Other settings come from PRCRS_*
variables and a `.env` in the working directory.

scripts/benchmark.py runs it through `run_in_fresh_process`, so that the peak RSS is the
job's own and not the data generator's.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # also when run by a Python without the package installed


def run_night(url: str, as_of: date, model_dir: Path, report_dir: Path, profile: int = 0) -> dict:
    """Run the night in this process; the figures described at the top of this file."""
    t_import = time.perf_counter()
    import torch

    from prcrs_batch.app.pipeline import run_nightly
    from prcrs_batch.results.engines import make_engine
    from prcrs_batch.settings import load_settings

    import_seconds = time.perf_counter() - t_import
    settings = load_settings(
        warehouse_url=url,
        results_url=url,
        model_dir=model_dir,
        report_dir=report_dir,
        device="cpu",
        smtp_host=None,
        alert_to=[],
    )
    warehouse = make_engine(url)
    results_db = make_engine(url)
    peak_after = _record_peak_rss_per_stage()
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    load_before = os.getloadavg()[0]
    cpu_before = time.process_time()
    start = time.perf_counter()
    summary = run_nightly(
        settings,
        as_of=as_of,
        warehouse=warehouse,
        results_db=results_db,
        bundle=None,
        send_email=False,
    )
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_before
    top = [] if profiler is None else _top_functions(profiler, profile)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "status": summary.status,
        "error": summary.error,
        "n_patients": summary.n_patients,
        "n_scores": summary.n_scores,
        "n_alerts": summary.n_alerts,
        "n_data_issues": summary.n_data_issues,
        "status_counts": summary.status_counts,
        "data_issue_counts": summary.data_issue_counts,
        "model_version": summary.model_version,
        "stages": summary.seconds,
        "peak_rss_after": peak_after,
        "run_nightly_seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "load_average": [load_before, os.getloadavg()[0]],
        "import_seconds": import_seconds,
        "torch": f"{torch.__version__}, {torch.get_num_threads()} threads",
        "peak_rss_mib": rss_kib / 1024,
        "profile": top,
    }


def _record_peak_rss_per_stage() -> dict[str, float]:
    """Wrap pipeline's stage timer so that each stage also notes ru_maxrss (MiB) at its end."""
    from contextlib import contextmanager

    from prcrs_batch.app import pipeline

    timed = pipeline._stage
    peaks: dict[str, float] = {}

    @contextmanager
    def stage(summary, name):
        with timed(summary, name):
            yield
        peaks[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    pipeline._stage = stage
    return peaks


def _top_functions(profiler: cProfile.Profile, n: int) -> list[str]:
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(n)
    return out.getvalue().splitlines()


def run_in_fresh_process(url: str, as_of: date, model_dir: Path, profile: int = 0) -> dict:
    """Run this script in a new Python process (report into a temporary folder).

    Returns its figures plus `process_seconds` (including Python's start and the imports)
    and `stderr_tail`. The child runs in the empty report folder, so a `.env` in the
    caller's working directory does not apply (PRCRS_* variables do).
    """
    with tempfile.TemporaryDirectory(prefix="prcrs_bench_reports_") as reports:
        command = [
            sys.executable, str(Path(__file__).resolve()), "--url", url,
            "--as-of", as_of.isoformat(), "--model-dir", str(model_dir.resolve()),
            "--report-dir", reports, "--profile", str(profile),
        ]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=reports)
        process_seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"the nightly run failed (exit {done.returncode})")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["process_seconds"] = process_seconds
    figures["stderr_tail"] = done.stderr.strip().splitlines()[-5:]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="PostgreSQL URL of warehouse and results")
    parser.add_argument("--as-of", type=date.fromisoformat, required=True, help="night to score")
    parser.add_argument("--report-dir", type=Path, required=True, help="where the report goes")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="cProfile; print the top N functions"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    figures = run_night(args.url, args.as_of, args.model_dir, args.report_dir, args.profile)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
