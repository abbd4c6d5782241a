"""Time one night's warehouse read alone and print its figures as one JSON line.

    .venv/bin/python scripts/bench_read.py --url postgresql://postgres@127.0.0.1/prcrs_bench \\
        --as-of 2026-11-26 [--batch-rows 20000] [--save /tmp/night.pkl]

Calls `prcrs_batch.warehouse.queries.read_night` once, with the Window the pipeline builds from
the settings (PRCRS_* variables and a `.env`; --url is the warehouse), and prints: patients
and lab rows read, `seconds` (read_night's wall-clock time), `cpu_seconds`,
`load_average` (before, after), `rss_before_mib` (peak RSS after the imports),
`peak_rss_mib` (ru_maxrss of this process after the read) and `labs_deep_mib` /
`patients_deep_mib` (DataFrame.memory_usage(deep=True): counts every reference to a
shared string again, so it does not show what sharing saves; the peak RSS does).

`--batch-rows N` replaces queries.BATCH_ROWS (how it was chosen); `--save PATH` pickles
the labs and patients frames, to compare two versions' reads.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import sys
import time
from datetime import date, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # also when run by a Python without the package installed


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def read_once(url: str, as_of: date, batch_rows: int = 0, save: Path | None = None) -> dict:
    """Read the night in this process; the figures described at the top of this file."""
    from prcrs_batch.results.engines import make_engine
    from prcrs_batch.settings import load_settings
    from prcrs_batch.warehouse import queries

    if batch_rows:
        queries.BATCH_ROWS = batch_rows
    settings = load_settings(warehouse_url=url)
    window = queries.Window(
        as_of=as_of,
        active_days=settings.active_days,
        lookback_hours=settings.lookback_hours,
        timezone=settings.timezone,
        now=datetime.now(settings.zone).replace(tzinfo=None),  # as pipeline.run_nightly
        source=queries.Source.from_settings(settings),
    )
    engine = make_engine(url)
    rss_before = _rss_mib()
    load_before = os.getloadavg()[0]
    cpu_before = time.process_time()
    start = time.perf_counter()
    night = queries.read_night(engine, window)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_before
    peak = _rss_mib()
    engine.dispose()
    if save is not None:
        save.write_bytes(pickle.dumps({"labs": night.labs, "patients": night.patients}))
    return {
        "batch_rows": getattr(queries, "BATCH_ROWS", None),
        "patients": len(night.patients),
        "lab_rows": len(night.labs),
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "load_average": [load_before, os.getloadavg()[0]],
        "rss_before_mib": round(rss_before),
        "peak_rss_mib": round(peak),
        "labs_deep_mib": round(night.labs.memory_usage(deep=True).sum() / 2**20),
        "patients_deep_mib": round(night.patients.memory_usage(deep=True).sum() / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="warehouse database URL")
    parser.add_argument("--as-of", type=date.fromisoformat, required=True, help="night to read")
    parser.add_argument("--batch-rows", type=int, default=0, help="replace queries.BATCH_ROWS")
    parser.add_argument("--save", type=Path, help="pickle the labs and patients frames here")
    args = parser.parse_args()
    print(json.dumps(read_once(args.url, args.as_of, args.batch_rows, args.save)))


if __name__ == "__main__":
    main()
