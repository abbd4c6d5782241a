"""Benchmark of `prcrs-batch backfill` over a year, with 1 and more worker processes.

Builds a PostgreSQL database (dropped and re-created for each run; default
`prcrs_bench_backfill`) holding N development-cohort patients (prcrs_batch/data/cart_dev.csv,
drawn without replacement, seeded; past its 152 patients, drawn copies under new ids) whose
infusions are spread evenly over the range and the days before it, so that every night has
patients in treatment, as at a site treating N patients in the range. Migrates the results
schema into the same database, then runs `prcrs-batch backfill --start --end --workers W`
in a child process for each W (shipped models, email off, reports into a temporary folder)
and prints the machine, the load, the wall-clock seconds, the total line the command
printed, the nights that had active patients, the seconds of each pass (more than one
worker) and the speed-up over one worker.

Usage (PostgreSQL reachable as a superuser or a role with CREATEDB):

    .venv/bin/python scripts/bench_backfill.py --patients 50 --nights 365 --workers 1,2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # also when run by a Python without the package installed
sys.path.insert(0, str(REPO_ROOT / "scripts"))

CLI = "import sys; from prcrs_batch.app.cli import main; sys.argv[0] = 'prcrs-batch'; main()"


def build(admin_url: str, name: str, patients: int, start: date, nights: int, seed: int) -> str:
    """Re-create the database with the cohort in its warehouse and the results schema."""
    import numpy as np
    import pandas as pd
    from bench_load import psycopg_url, recreate_database

    from prcrs_batch.devdata.cohort import load_cohort, read_cohort
    from prcrs_batch.resources import bundled_data
    from prcrs_batch.results.engines import make_engine
    from prcrs_batch.results.migrations import migrate

    recreate_database(admin_url, name)
    url = psycopg_url(admin_url, name)
    development = read_cohort(bundled_data("cart_dev.csv"))
    rng = np.random.default_rng(seed)
    pool = sorted(development["patient_id"].unique())
    if patients <= len(pool):
        ids = rng.choice(pool, size=patients, replace=False)
        cohort = development[development["patient_id"].isin(ids)].copy()
    else:  # more than the cohort: copies of drawn patients, each under its own id
        drawn = rng.choice(pool, size=patients, replace=True)
        ids = np.array([f"{pid}-{i}" for i, pid in enumerate(drawn)])
        by_id = dict(iter(development.groupby("patient_id")))
        cohort = pd.concat(
            [by_id[pid].assign(patient_id=f"{pid}-{i}") for i, pid in enumerate(drawn)],
            ignore_index=True,
        )
    lead = int(cohort["day"].max())  # infused before the range: in treatment on its first night
    span = nights + lead
    infused = {pid: start - timedelta(days=lead) + timedelta(days=i * span // patients)
               for i, pid in enumerate(rng.permutation(ids))}  # fmt: skip
    cohort["infusion_date"] = cohort["patient_id"].map(infused)
    engine = make_engine(url)
    load_cohort(engine, cohort)
    engine.dispose()
    migrate(url)
    return url


def run_backfill(
    url: str, start: date, end: date, workers: int, model_dir: Path, threads: int
) -> dict:
    """`prcrs-batch backfill` in a child process; its wall-clock seconds and total line."""
    with tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRCRS_")}
        env |= {
            "PRCRS_WAREHOUSE_URL": url,
            "PRCRS_RESULTS_URL": url,
            "PRCRS_MODEL_DIR": str(model_dir),
            "PRCRS_REPORT_DIR": str(Path(folder) / "reports"),
            "PRCRS_DEVICE": "cpu",
            "PRCRS_TORCH_THREADS": str(threads),  # 0: torch's default; shared out by workers
            "PYTHONPATH": str(REPO_ROOT),
        }
        command = [sys.executable, "-c", CLI, "backfill", "--start", str(start), "--end",
                   str(end), "--workers", str(workers)]  # fmt: skip
        began = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True)
        seconds = time.perf_counter() - began
    total = [line for line in done.stdout.splitlines() if " nights from " in line]
    passes = [
        line.split(": ", 1)[1] for line in done.stderr.splitlines() if "backfill pass" in line
    ]
    return {
        "seconds": seconds,
        "returncode": done.returncode,
        "total": total[-1] if total else done.stderr[-2000:],
        "passes": passes,
    }


def active_nights(url: str) -> tuple[int, int]:
    """(nights with at least one patient scored, patients scored summed over the nights)."""
    from sqlalchemy import func, select

    from prcrs_batch.results.engines import make_engine
    from prcrs_batch.results.tables import REPORTED, scoring_runs

    engine = make_engine(url)
    r = scoring_runs.c
    stored = (r.status.in_(REPORTED), r.n_patients > 0)
    with engine.connect() as connection:
        nights = connection.execute(select(func.count()).where(*stored)).scalar_one()
        patients = connection.execute(select(func.sum(r.n_patients)).where(*stored)).scalar_one()
    engine.dispose()
    return nights, int(patients or 0)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    from bench_load import drop_database, postgres_info
    from benchmark import DEFAULT_ADMIN_URL, machine, print_items

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--nights", type=int, default=365)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2025, 1, 1))
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    parser.add_argument("--database", default="prcrs_bench_backfill")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="PRCRS_TORCH_THREADS (0: torch's default)"
    )
    args = parser.parse_args()
    end = args.start + timedelta(days=args.nights - 1)
    print_items("Machine", machine() | postgres_info(args.admin_url))
    threads = args.torch_threads or "torch's default"
    print(f"\n{args.patients} patients, {args.nights} nights from {args.start} to {end}, "
          f"PRCRS_TORCH_THREADS {threads}\n")  # fmt: skip
    print("| workers | wall-clock s | nights per minute | speed-up | load before | load after |")
    print("|---:|---:|---:|---:|---|---|")
    rows, first = [], None
    try:
        for workers in (int(w) for w in args.workers.split(",")):
            url = build(
                args.admin_url, args.database, args.patients, args.start, args.nights, args.seed
            )
            before = load()
            run = run_backfill(url, args.start, end, workers, args.model_dir, args.torch_threads)
            first = first or run["seconds"]
            rows.append((workers, run, active_nights(url)))
            print(
                f"| {workers} | {run['seconds']:.0f} | {args.nights / run['seconds'] * 60:.1f} | "
                f"{first / run['seconds']:.2f}x | {before} | {load()} |",
                flush=True,
            )
    finally:
        drop_database(args.admin_url, args.database)
    print()
    for workers, run, (nights, patients) in rows:
        print(f"- {workers} worker(s), exit {run['returncode']}: {run['total']}")
        print(f"  {nights} nights had active patients ({patients} patient-nights scored)")
        for line in run["passes"]:  # app/backfill.py's log: the two passes of --workers > 1
            print(f"  {line}")


if __name__ == "__main__":
    main()
