"""Benchmark of the nightly run on a synthetic PostgreSQL warehouse.

Builds a fresh database (dropped and re-created; default `prcrs_bench`) holding N active
CAR-T patients, each with daily labs from infusion day 0 to today (0-30 days since
infusion), loads it with COPY, indexes and analyses it, migrates the results schema into
the same database, then runs `prcrs_batch.app.pipeline.run_nightly` once in a fresh child
process (email off, report into a temporary folder) and prints the machine, the data
volume, the time of each stage, end-to-end seconds, scores per second and the peak RSS of
the child process.

Usage (PostgreSQL reachable as a superuser or a role with CREATEDB):

    .venv/bin/python scripts/benchmark.py --patients 10000
    .venv/bin/python scripts/benchmark.py --patients 10000,100000
    .venv/bin/python scripts/benchmark.py --patients 1000 --history-nights 7 --keep
    .venv/bin/python scripts/benchmark.py --networks-only cpu --patients 10000 --repeats 1

`--history-nights K` also stores K earlier nights (copies of the first run's scores and
patient nights, shifted back a day each, with the outcomes earlier nights would have
judged: bench_load.seed_history), removes the first run, and runs the night again as a new
night: the steady state of a site, where monitoring judges one night's predictions and
reads its windows' outcomes, the report reads a week of history and the write adds a night
to tables that hold 90.

The parts, each usable alone:
- bench_generate.py: the synthetic rows (development-cohort draws, missingness, text
  values, US units);
- bench_load.py: the database (COPY, unique keys and indexes, VACUUM ANALYZE, results
  schema, seeded history nights);
- bench_night.py: one night in this checkout's job, printing its figures as JSON (run
  here in a fresh process);
- bench_networks.py: the forward passes alone (`--networks-only`).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import date, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # also when run by a Python without the package installed

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


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


def print_items(title: str, items: dict[str, str]) -> None:
    print(f"## {title}\n")
    for key, value in items.items():
        print(f"- {key}: {value}")


def print_build(args: argparse.Namespace, patients: int, database: str, built: dict) -> None:
    print(
        f"- as of {args.as_of.isoformat()}, seed {args.seed}, database {database} "
        f"({built['database_size']})"
    )
    print(f"- active patients: {patients:,}; inactive patients: {args.inactive_patients:,}")
    for table, n in built["counts"].items():
        print(f"- {table}: {n:,} rows")
    print("- build: " + ", ".join(f"{k} {v:.1f} s" for k, v in built["timings"].items()))


def print_run(title: str, figures: dict) -> None:
    """One night's figures (bench_night.py's JSON) as the section docs/benchmarks.md quotes."""
    print(f"\n### {title}\n")
    print(f"- status: {figures['status']}" + (f" ({figures['error']})" if figures["error"] else ""))
    print(f"- models: {figures['model_version']}; torch {figures['torch']}")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(figures["status_counts"].items()))
    print(
        f"- patients scored: {figures['n_patients']:,}; scores: {figures['n_scores']:,} ({counts})"
    )
    print(
        f"- alerts: {figures['n_alerts']:,}; "
        f"lab values set aside or bounded: {figures['n_data_issues']:,}"
    )
    print("\n| stage (RunSummary.seconds) | seconds | peak RSS at its end, MiB |\n|---|---:|---:|")
    peaks = figures.get("peak_rss_after", {})
    for stage, seconds in figures["stages"].items():
        peak = f"{peaks[stage]:,.0f}" if stage in peaks else ""
        print(f"| {stage} | {seconds:.2f} | {peak} |")
    total = figures["run_nightly_seconds"]
    print(f"| **run_nightly end-to-end** | **{total:.2f}** | |")
    print(
        f"| process incl. Python start and imports ({figures['import_seconds']:.1f} s) "
        f"| {figures['process_seconds']:.2f} | |"
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


def benchmark_networks(args: argparse.Namespace) -> None:
    from bench_networks import time_forward_passes  # torch only: no database client needed

    print_items("Machine", machine())
    print("\n## Forward passes only\n")
    timed = time_forward_passes(args.patients[0], args.model_dir, args.networks_only, args.repeats)
    print(f"- networks: {timed.source}")
    print(f"- device: {timed.device}")
    print(f"- rows per model: {timed.rows:,}; torch {timed.torch_version}")
    print(
        f"- {timed.forwards} forward passes of {timed.rows:,} rows: best of {len(timed.seconds)} "
        f"{min(timed.seconds):.2f} s (all: {', '.join(f'{t:.2f}' for t in timed.seconds)})"
    )
    print(f"- scores per second, forward passes only: {timed.scores_per_second:,.0f}")


def benchmark_night(args: argparse.Namespace) -> None:
    from bench_load import postgres_info

    if not (args.model_dir / "manifest.json").is_file():
        raise SystemExit(f"no manifest.json in {args.model_dir}: train the models first")
    print_items("Machine", machine() | postgres_info(args.admin_url))
    first_nights = {}
    for n in args.patients:
        database = args.database if len(args.patients) == 1 else f"{args.database}_{n}"
        heading = "" if len(args.patients) == 1 else f" ({n:,} active patients)"
        first_nights[n] = benchmark_size(args, n, database, heading)
    if len(first_nights) > 1:
        print_scaling(first_nights)


def benchmark_size(args: argparse.Namespace, patients: int, database: str, heading: str) -> dict:
    """Build (or reuse) one warehouse, run its night(s); the first night's figures."""
    from bench_load import build_database, drop_database, psycopg_url, seed_history
    from bench_night import run_in_fresh_process

    url = psycopg_url(args.admin_url, database)
    print(f"\n## Synthetic warehouse{heading}\n")
    if args.reuse:
        print(f"- reusing database {database}")
    else:
        built = build_database(
            args.admin_url, database, patients, args.inactive_patients, args.as_of, args.seed
        )
        print_build(args, patients, database, built)
    try:
        first = run_in_fresh_process(url, args.as_of, args.model_dir, args.profile)
        print_run(f"Nightly run (empty results tables){heading}", first)
        if args.history_nights:
            seed_history(url, args.as_of, args.history_nights)
            again = run_in_fresh_process(url, args.as_of, args.model_dir, args.profile)
            print_run(
                f"Same night again, {args.history_nights} earlier nights stored "
                f"(monitoring judges and reads them, the report reads history){heading}",
                again,
            )
    finally:
        if not args.keep:
            drop_database(args.admin_url, database)
    return first


def print_scaling(nights: dict[int, dict]) -> None:
    """Each stage's seconds per size and its growth per patient (1.00x: linear)."""
    sizes = sorted(nights)
    small, large = sizes[0], sizes[-1]
    stages = list(dict.fromkeys(k for n in sizes for k in nights[n]["stages"]))
    print(f"\n## Scaling, first night: {small:,} to {large:,} patients\n")
    print("Growth per patient: (seconds at the largest / at the smallest) / (size ratio);")
    print("1.00x is linear in the cohort, above 1 grows faster than it.\n")
    print("| stage | " + " | ".join(f"{n:,} s" for n in sizes) + " | growth per patient |")
    print("|---|" + "---:|" * (len(sizes) + 1))
    rows = [(stage, [nights[n]["stages"].get(stage, 0.0) for n in sizes]) for stage in stages]
    rows.append(("**end-to-end**", [nights[n]["run_nightly_seconds"] for n in sizes]))
    rows.append(("peak RSS MiB", [nights[n]["peak_rss_mib"] for n in sizes]))
    for stage, values in rows:
        growth = values[-1] / values[0] / (large / small) if values[0] > 0 else float("nan")
        cells = " | ".join(f"{v:,.2f}" if "RSS" not in stage else f"{v:,.0f}" for v in values)
        print(f"| {stage} | {cells} | {growth:.2f}x |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--patients",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[10_000],
        help="active patients, or several sizes separated by commas: one warehouse each "
        "(database NAME_N), then a table of each stage's growth (default 10000)",
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
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.networks_only:
        benchmark_networks(args)
    else:
        benchmark_night(args)


if __name__ == "__main__":
    main()
