"""Benchmark of the nightly run on a synthetic PostgreSQL warehouse.

Builds a fresh database (dropped and re-created; default `prcrs_bench`) holding N active
CAR-T patients, each with daily labs from infusion day 0 to today (0-30 days since
infusion), loads it with COPY, indexes and analyses it, migrates the results schema into
the same database, then runs `prcrs_batch.pipeline.run_nightly` once in a fresh child
process (email off, report into a temporary folder) and prints the machine, the data
volume, the time of each stage, end-to-end seconds, scores per second and the peak RSS of
the child process.

The labs are drawn from the development cohort (prcrs_batch/data/cart_dev.csv): each
synthetic patient follows one development patient's daily rows (cycled past its last
day), so values, CRS grades and their correlations look like the real cohort, including
its known entry errors. On top of that:

- missingness per panel and day: coagulation/tumour-load panel missing together on 35 %
  of days, biochemistry on 30 %, the blood count on 2 %, cytokines on 35-48 % (panel
  35 % plus 0-20 % per cytokine), and 2 % of any single result;
- about 0.2 % of results are text: "<0.5", "< 2.0", ">5000", "hemolyzed", "see comment";
- about 2 % of glucose, creatinine, haemoglobin, albumin, calcium and uric acid results
  are in US units (mg/dL, g/dL), converted accordingly.

Indexes created after loading (what the nightly queries in sql/ use):

- cart_infusions(infusion_date): the active-cohort range filter;
- lab_results(collected_at): the lookback-window filter of latest_labs.sql;
- the contract's unique keys, lab_results(patient_id, analyte, collected_at) and
  crs_assessments(patient_id, assessed_on), rebuilt after COPY (latest_crs_grades.sql).

Usage (PostgreSQL reachable as a superuser or a role with CREATEDB):

    .venv/bin/python scripts/benchmark.py --patients 10000
    .venv/bin/python scripts/benchmark.py --patients 1000 --history-nights 7 --keep

`--history-nights K` also stores K earlier nights of scores (copies of the first run,
shifted back a day each) and runs the night again: the steady state of a site, where the
report reads a week of history and the write replaces an existing night.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

try:
    import psycopg
    from sqlalchemy import make_url
except ImportError:  # --networks-only needs torch alone (e.g. on a GPU machine)
    psycopg = None  # type: ignore[assignment]

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from prcrs_batch.panel import ANALYTE_CODES, BY_CODE  # noqa: E402

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CHUNK_PATIENTS = 1000
MAX_DAYS_SINCE = 30  # PRCRS_ACTIVE_DAYS default: active patients are 0-30 days after infusion

# Share of patient-days on which a whole panel is missing (group numbers from analytes.csv).
PANEL_MISSING = {1: 0.35, 2: 0.02, 3: 0.30, 4: 0.35}
CYTOKINE_EXTRA_MISSING = (0.0, 0.20)  # per cytokine, spread evenly: 35-48 % missing overall
SINGLE_MISSING = 0.02
TEXT_RATE = 0.002
US_UNIT_RATE = 0.02
# analyte -> (unit written, factor from the model unit): value_us = value / factor
US_UNITS = {
    "glucose": ("mg/dL", 1 / 18.016),
    "creatinine": ("mg/dL", 88.42),
    "hemoglobin": ("g/dL", 10.0),
    "albumin": ("g/dL", 10.0),
    "calcium": ("mg/dL", 1 / 4.008),
    "uric_acid": ("mg/dL", 59.48),
}
LOW_CENSORED = {
    "procalcitonin",
    "crp",
    "d_dimer",
    "il2",
    "il4",
    "il6",
    "il10",
    "tnf_alpha",
    "ifn_gamma",
    "il17a",
}
HIGH_CENSORED = {"il6", "ferritin", "bnp", "il10", "ifn_gamma"}
# Panel draw times (minutes after midnight): blood count, biochemistry and coagulation in
# the morning round, cytokines from a separate sample later in the morning.
PANEL_MINUTES = {1: 360, 2: 360, 3: 360, 4: 540}
PANEL_JITTER_MINUTES = 120

GROUP = np.array([BY_CODE[c].group for c in ANALYTE_CODES])
UNITS = [BY_CODE[c].unit for c in ANALYTE_CODES]


# ----------------------------------------------------------------------------- machine


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": f"{usable} usable ({os.cpu_count()} online)",
        "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


# ----------------------------------------------------------------------------- data


class Templates:
    """The development cohort as arrays: one row per patient-day, values kept as text."""

    def __init__(self) -> None:
        from prcrs_batch.cohort import read_cohort
        from prcrs_batch.resources import bundled_data

        cohort = read_cohort(bundled_data("cart_dev.csv")).sort_values(["patient_id", "day"])
        cohort = cohort.reset_index(drop=True)
        self.values = cohort[list(ANALYTE_CODES)].astype(object).to_numpy()  # (R, 42)
        missing = pd.isna(cohort[list(ANALYTE_CODES)]).to_numpy()
        self.values[missing] = None
        self.pools = [self.values[~missing[:, j], j] for j in range(len(ANALYTE_CODES))]
        self.grades = cohort["crs_grade"].to_numpy(dtype=float)
        starts = cohort.groupby("patient_id", sort=False).indices
        self.starts = np.array([v[0] for v in starts.values()])
        self.lengths = np.array([len(v) for v in starts.values()])
        first = cohort.drop_duplicates("patient_id")
        self.sex = first["sex"].astype(object).where(first["sex"].notna(), None).to_numpy()
        self.age = first["age"].to_numpy(dtype=float)


def _copy_text(columns: list[np.ndarray]) -> str:
    """Rows for COPY ... FROM STDIN (text format); None becomes \\N."""
    frame = pd.DataFrame({str(i): c for i, c in enumerate(columns)})
    return frame.to_csv(sep="\t", header=False, index=False, na_rep="\\N", lineterminator="\n")


def generate_chunk(
    rng: np.random.Generator,
    templates: Templates,
    first_id: int,
    n: int,
    as_of: date,
    active: bool,
) -> dict[str, str]:
    """COPY text for n patients: infusions, lab results and daily CRS assessments."""
    ids = np.array([f"BENCH-{i:07d}" for i in range(first_id, first_id + n)], dtype=object)
    template = rng.integers(0, len(templates.starts), n)
    if active:
        days_since = rng.integers(0, MAX_DAYS_SINCE + 1, n)
    else:  # finished their 31-day course months ago
        days_since = rng.integers(MAX_DAYS_SINCE + 1, 400, n)
    n_days = np.minimum(days_since, MAX_DAYS_SINCE) + 1
    infusion = np.datetime64(as_of, "D") - days_since.astype("timedelta64[D]")

    # One row per patient-day: r indexes patient-days.
    patient = np.repeat(np.arange(n), n_days)  # (D,)
    day = np.arange(n_days.sum()) - np.repeat(np.cumsum(n_days) - n_days, n_days)
    source = templates.starts[template[patient]] + day % templates.lengths[template[patient]]
    values = templates.values[source].copy()  # (D, 42) object
    for j, pool in enumerate(templates.pools):  # template gaps filled from the column
        empty = np.flatnonzero(pd.isna(values[:, j]))
        values[empty, j] = pool[rng.integers(0, len(pool), len(empty))]

    n_pd = len(patient)
    present = np.ones((n_pd, len(ANALYTE_CODES)), dtype=bool)
    for group, rate in PANEL_MISSING.items():
        present[:, GROUP == group] &= (rng.random(n_pd) >= rate)[:, None]
    cytokines = np.flatnonzero(GROUP == 4)
    for k, j in enumerate(cytokines):
        extra = np.interp(k, [0, len(cytokines) - 1], CYTOKINE_EXTRA_MISSING)
        present[:, j] &= rng.random(n_pd) >= extra
    present &= rng.random(present.shape) >= SINGLE_MISSING

    units = np.array(UNITS, dtype=object)[None, :].repeat(n_pd, axis=0)
    for code, (unit, factor) in US_UNITS.items():
        j = ANALYTE_CODES.index(code)
        rows = np.flatnonzero(present[:, j] & (rng.random(n_pd) < US_UNIT_RATE))
        numbers = pd.to_numeric(pd.Series(values[rows, j]), errors="coerce").to_numpy()
        ok = ~np.isnan(numbers)
        values[rows[ok], j] = [f"{v:.4g}" for v in numbers[ok] / factor]
        units[rows[ok], j] = unit
    r, c = np.nonzero(present & (rng.random(present.shape) < TEXT_RATE))
    for row, col in zip(r, c):
        code = ANALYTE_CODES[col]
        choices = ["hemolyzed", "see comment"]
        if code in LOW_CENSORED:
            choices += ["<0.5", "< 2.0"] * 2
        if code in HIGH_CENSORED:
            choices += [">5000"] * 2
        values[row, col] = choices[rng.integers(0, len(choices))]

    # Draw time of each panel on each patient-day.
    day_start = infusion[patient] + day.astype("timedelta64[D]")  # (D,) datetime64[D]
    minutes = {
        g: PANEL_MINUTES[g] + rng.integers(0, PANEL_JITTER_MINUTES, n_pd) for g in PANEL_MINUTES
    }
    r, c = np.nonzero(present)
    group_minutes = np.stack([minutes[g] for g in GROUP], axis=1)  # (D, 42)
    collected = day_start[r].astype("datetime64[m]") + group_minutes[r, c].astype("timedelta64[m]")
    labs = _copy_text(
        [
            ids[patient[r]],
            np.datetime_as_string(collected, unit="s"),
            np.array(ANALYTE_CODES, dtype=object)[c],
            values[r, c],
            units[r, c],
        ]
    )

    age = templates.age[template]
    infusions = _copy_text(
        [
            ids,
            np.datetime_as_string(infusion, unit="D"),
            templates.sex[template],
            np.array([None if np.isnan(a) else str(int(a)) for a in age], dtype=object),
        ]
    )
    grades = templates.grades[source]
    graded = ~np.isnan(grades)
    assessments = _copy_text(
        [
            ids[patient[graded]],
            np.datetime_as_string(day_start[graded], unit="D"),
            grades[graded].astype(int),
        ]
    )
    return {
        "cart_infusions": infusions,
        "lab_results": labs,
        "crs_assessments": assessments,
        "n_labs": str(len(r)),
    }


COPY_COLUMNS = {
    "cart_infusions": "patient_id, infusion_date, sex, age",
    "lab_results": "patient_id, collected_at, analyte, value, unit",
    "crs_assessments": "patient_id, assessed_on, grade",
}
INDEXES = [
    "CREATE INDEX ix_bench_cart_infusions_infusion_date ON cart_infusions (infusion_date)",
    "CREATE INDEX ix_bench_lab_results_collected_at ON lab_results (collected_at)",
]


def psycopg_url(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def recreate_database(admin_url: str, name: str) -> None:
    with psycopg.connect(psycopg_url(admin_url), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(psycopg_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def build_warehouse(url: str, patients: int, inactive: int, as_of: date, seed: int) -> dict:
    """Create the contract tables, COPY the synthetic cohort in, then index and analyse."""
    from prcrs_batch.cohort import create_warehouse_tables
    from prcrs_batch.db import make_engine

    timings: dict[str, float] = {}
    start = time.perf_counter()
    engine = make_engine(url)
    create_warehouse_tables(engine)  # the contract's own DDL (types, unique keys)
    engine.dispose()
    rng = np.random.default_rng(seed)
    templates = Templates()
    counts = {"cart_infusions": 0, "lab_results": 0, "crs_assessments": 0}
    generate = copy = 0.0
    with psycopg.connect(psycopg_url(url)) as conn:
        # The unique keys are dropped during COPY and rebuilt afterwards (one sort each).
        keys = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE contype = 'u' AND conrelid::regclass::text = ANY(%s)",
            (list(COPY_COLUMNS),),
        ).fetchall()
        for table, name, _ in keys:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        next_id = 1
        for active, total in ((True, patients), (False, inactive)):
            for first in range(0, total, CHUNK_PATIENTS):
                n = min(CHUNK_PATIENTS, total - first)
                t0 = time.perf_counter()
                chunk = generate_chunk(rng, templates, next_id, n, as_of, active)
                next_id += n
                t1 = time.perf_counter()
                with conn.cursor() as cur:
                    for table, columns in COPY_COLUMNS.items():
                        with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as pipe:
                            pipe.write(chunk[table])
                counts["lab_results"] += int(chunk["n_labs"])
                counts["cart_infusions"] += n
                generate += t1 - t0
                copy += time.perf_counter() - t1
        conn.commit()
        timings["generate data"] = generate
        timings["COPY"] = copy
        t0 = time.perf_counter()
        for table, name, definition in keys:
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for statement in INDEXES:
            conn.execute(statement)
        conn.commit()
        timings["unique keys + indexes"] = time.perf_counter() - t0
        counts["crs_assessments"] = conn.execute("SELECT count(*) FROM crs_assessments").fetchone()[
            0
        ]
        size = conn.execute(
            "SELECT pg_size_pretty(pg_database_size(current_database()))"
        ).fetchone()[0]
    t0 = time.perf_counter()
    with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    timings["VACUUM ANALYZE"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    return {"counts": counts, "timings": timings, "database_size": size}


def seed_history(url: str, as_of: date, nights: int) -> None:
    """Store `nights` earlier nights: the as-of night's run and scores, shifted back by k days."""
    with psycopg.connect(psycopg_url(url)) as conn:
        for k in range(1, nights + 1):
            run = f"history-{k:02d}"
            conn.execute(
                "INSERT INTO scoring_runs (run_id, as_of, started_at, finished_at, status, n_patients,"
                " n_scores, n_alerts, n_data_issues, model_version)"
                " SELECT %s, as_of - %s, started_at, finished_at, status, n_patients, n_scores,"
                " n_alerts, n_data_issues, model_version FROM scoring_runs WHERE as_of = %s",
                (run, k, as_of),
            )
            conn.execute(
                "INSERT INTO crs_risk_scores (run_id, as_of, patient_id, model, horizon_days,"
                " target_date, probability, calibrated_risk, status, inputs_observed,"
                " inputs_expected, model_version, detail, created_at)"
                " SELECT %s, as_of - %s, patient_id, model, horizon_days, target_date - %s,"
                " probability, calibrated_risk, status, inputs_observed, inputs_expected,"
                " model_version, detail, created_at FROM crs_risk_scores WHERE as_of = %s",
                (run, k, k, as_of),
            )
        conn.commit()
    with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE crs_risk_scores")
        conn.execute("VACUUM ANALYZE scoring_runs")


def postgres_info(url: str) -> dict[str, str]:
    with psycopg.connect(psycopg_url(url)) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        shared = conn.execute("SHOW shared_buffers").fetchone()[0]
        work = conn.execute("SHOW work_mem").fetchone()[0]
        host = make_url(url).host or "local socket"
    return {"postgresql": f"{version} on {host} (shared_buffers {shared}, work_mem {work})"}


# ----------------------------------------------------------------------------- the run


def child_run(url: str, as_of: date, model_dir: Path, report_dir: Path, profile: int) -> None:
    """Run one night in this (fresh) process and print its figures as one JSON line."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t_import = time.perf_counter()
    import torch

    from prcrs_batch.db import make_engine
    from prcrs_batch.pipeline import run_nightly
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
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    load_before = os.getloadavg()[0]
    cpu_before = time.process_time()
    start = time.perf_counter()
    summary = run_nightly(
        settings, as_of=as_of, warehouse=warehouse, results_db=results_db, send_email=False
    )
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_before
    top: list[str] = []
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(profile)
        top = out.getvalue().splitlines()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
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
                "run_nightly_seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "load_average": [load_before, os.getloadavg()[0]],
                "import_seconds": import_seconds,
                "torch": f"{torch.__version__}, {torch.get_num_threads()} threads",
                "peak_rss_mib": rss_kib / 1024,
                "profile": top,
            }
        )
    )


def run_night(url: str, as_of: date, model_dir: Path, profile: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="prcrs_bench_reports_") as reports:
        command = [
            sys.executable, __file__, "--child", "--url", url, "--as-of", as_of.isoformat(),
            "--model-dir", str(model_dir), "--report-dir", reports, "--profile", str(profile),
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


def print_run(title: str, figures: dict) -> None:
    print(f"\n### {title}\n")
    print(f"- status: {figures['status']}" + (f" ({figures['error']})" if figures["error"] else ""))
    print(f"- models: {figures['model_version']}; torch {figures['torch']}")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(figures["status_counts"].items()))
    print(
        f"- patients scored: {figures['n_patients']:,}; scores: {figures['n_scores']:,} ({counts})"
    )
    print(
        f"- alerts: {figures['n_alerts']:,}; lab values set aside or bounded: {figures['n_data_issues']:,}"
    )
    print("\n| stage (RunSummary.seconds) | seconds |\n|---|---:|")
    for stage, seconds in figures["stages"].items():
        print(f"| {stage} | {seconds:.2f} |")
    total = figures["run_nightly_seconds"]
    print(f"| **run_nightly end-to-end** | **{total:.2f}** |")
    print(
        f"| process incl. Python start and imports ({figures['import_seconds']:.1f} s) "
        f"| {figures['process_seconds']:.2f} |"
    )
    rate = figures["n_scores"] / total if total else 0.0
    print(f"\n- scores per second (end-to-end): {rate:,.0f}")
    print(
        f"- CPU time of the job process: {figures['cpu_seconds']:.1f} s (PostgreSQL's not included)"
    )
    before, after = figures["load_average"]
    print(f"- 1-minute load average before / after the run: {before:.2f} / {after:.2f}")
    print(f"- peak RSS of the job process (ru_maxrss): {figures['peak_rss_mib']:,.0f} MiB")
    if figures["profile"]:
        print("\ncProfile (cumulative):\n```")
        print("\n".join(figures["profile"]))
        print("```")


def networks_only(patients: int, model_dir: Path, device: str, repeats: int = 3) -> None:
    """Time the scoring stage's forward passes alone: every model's networks, random weights.

    The architecture comes from models/manifest.json (each model's network config and
    number of ensemble members), or PrCRSConfig's defaults with 3 members when there is
    no manifest. No database, no data: a floor for the `score` stage, and a way to time
    it on another device.
    """
    import torch

    from prcrs_batch.networks import PrCRSConfig, build

    manifest = model_dir / "manifest.json"
    if manifest.is_file():
        entries = json.loads(manifest.read_text())["models"]
        specs = [(e["name"], PrCRSConfig.from_dict(e["network"]), e["n_members"], len(e["inputs"]))
                 for e in entries]  # fmt: skip
        source = f"{manifest} ({len(specs)} models)"
    else:
        specs = [(f"default_{k}", PrCRSConfig(), 3, len(ANALYTE_CODES)) for k in range(18)]
        source = "PrCRSConfig defaults, 18 models x 3 members (no manifest.json)"
    dev = torch.device(device)
    generator = torch.Generator().manual_seed(0)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    print(f"- networks: {source}")
    print(f"- device: {device}" + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else
          f", {torch.get_num_threads()} threads"))  # fmt: skip
    print(f"- rows per model: {patients:,}; torch {torch.__version__}")
    models = []
    for name, config, members, n_inputs in specs:
        nets = [build(config).eval().to(dev) for _ in range(members)]
        values = torch.randn(patients, n_inputs, generator=generator).to(dev)
        observed = (torch.rand(patients, n_inputs, generator=generator) > 0.3).to(dev)
        models.append((name, nets, values, observed))
    timings = []
    with torch.inference_mode():
        for _, nets, values, observed in models:  # warm-up: kernels, allocator, oneDNN
            for net in nets:
                net(values[:64], observed[:64])
        sync()
        for _ in range(repeats):
            start = time.perf_counter()
            for _, nets, values, observed in models:
                for net in nets:
                    torch.softmax(net(values, observed), dim=1)[:, 1].cpu()
            sync()
            timings.append(time.perf_counter() - start)
    best = min(timings)
    forwards = sum(len(nets) for _, nets, _, _ in models)
    print(f"- {forwards} forward passes of {patients:,} rows: best of {repeats} "
          f"{best:.2f} s (all: {', '.join(f'{t:.2f}' for t in timings)})")  # fmt: skip
    print(f"- scores per second, forward passes only: {len(models) * patients / best:,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--patients", type=int, default=10_000, help="active patients (default 10000)"
    )
    parser.add_argument(
        "--inactive-patients",
        type=int,
        default=0,
        help="extra patients whose course ended months ago (default 0)",
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("PRCRS_BENCH_ADMIN_URL", DEFAULT_ADMIN_URL),
        help=f"PostgreSQL URL of a role that may create databases (default {DEFAULT_ADMIN_URL})",
    )
    parser.add_argument(
        "--database", default="prcrs_bench", help="scratch database, dropped and re-created"
    )
    parser.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=date.today() - timedelta(days=1),
        help="night to score (default yesterday, so no lab is in the future)",
    )
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument(
        "--history-nights",
        type=int,
        default=0,
        help="also run the night again with this many earlier nights stored",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="cProfile the run and print the top N functions (slows it down)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--reuse", action="store_true", help="skip the build: reuse a kept database"
    )
    parser.add_argument(
        "--networks-only",
        metavar="DEVICE",
        help="only time the models' forward passes (random weights) on cpu or cuda; no database",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of --networks-only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--report-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        child_run(args.url, args.as_of, args.model_dir, args.report_dir, args.profile)
        return
    if args.networks_only:
        print("## Machine\n")
        for key, value in machine().items():
            print(f"- {key}: {value}")
        print("\n## Forward passes only\n")
        networks_only(args.patients, args.model_dir, args.networks_only, args.repeats)
        return
    if not (args.model_dir / "manifest.json").is_file():
        raise SystemExit(f"no manifest.json in {args.model_dir}: train the models first")

    url = psycopg_url(args.admin_url, args.database)
    print("## Machine\n")
    for key, value in (machine() | postgres_info(args.admin_url)).items():
        print(f"- {key}: {value}")

    print("\n## Synthetic warehouse\n")
    if args.reuse:
        print(f"- reusing database {args.database}")
    else:
        recreate_database(args.admin_url, args.database)
        built = build_warehouse(url, args.patients, args.inactive_patients, args.as_of, args.seed)
        from prcrs_batch.db import migrate

        migrate(url)
        counts = built["counts"]
        print(
            f"- as of {args.as_of.isoformat()}, seed {args.seed}, database {args.database} "
            f"({built['database_size']})"
        )
        print(
            f"- active patients: {args.patients:,}; inactive patients: {args.inactive_patients:,}"
        )
        for table, n in counts.items():
            print(f"- {table}: {n:,} rows")
        print("- build: " + ", ".join(f"{k} {v:.1f} s" for k, v in built["timings"].items()))

    try:
        first = run_night(url, args.as_of, args.model_dir, args.profile)
        print_run("Nightly run (empty results tables)", first)
        if args.history_nights:
            seed_history(url, args.as_of, args.history_nights)
            again = run_night(url, args.as_of, args.model_dir, args.profile)
            print_run(
                f"Same night again, {args.history_nights} earlier nights stored "
                "(report reads history, write replaces the night)",
                again,
            )
    finally:
        if not args.keep:
            drop_database(args.admin_url, args.database)


if __name__ == "__main__":
    main()
