"""Render a sample alert report from synthetic data, and screenshot it at phone width.

    python scripts/render_report_screenshot.py [--out build/report-sample]
        [--png docs/report-screenshot.png]

Writes the self-contained HTML (images inlined) and, when headless Chromium is
installed (`apt-get install -y chromium`), a 420 px wide PNG of it for the README.
All ids and values are synthetic; nothing here touches a database or the network.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import tempfile
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from prcrs_batch import alerts
from prcrs_batch.outbox import write_html
from prcrs_batch.panel import FACTOR_SETS, HORIZONS, inputs_for, min_observed
from prcrs_batch.report import build_report
from prcrs_batch.resources import SOURCE_ROOT as REPO
from prcrs_batch.results import RunInfo

AS_OF = date(2026, 11, 26)
THRESHOLD = 0.30
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def synthetic_night(seed: int = 7) -> dict[str, Any]:
    """A small synthetic night: 3 alerts, 8 quiet patients, 2 not scorable."""
    rng = random.Random(seed)
    plans = (
        # (patient, day, grade, base risk, observed fraction of `all`)
        ("SYN-0417", 3, 2, 0.71, 0.95),
        ("SYN-0388", 6, 1, 0.48, 0.05),  # `all` lacks inputs: falls to no_cytokines
        ("SYN-0452", 1, None, 0.33, 0.9),
        ("SYN-0301", 12, 1, 0.24, 0.9),
        ("SYN-0415", 2, None, 0.12, 0.85),
        ("SYN-0399", 9, None, 0.08, 0.05),
        ("SYN-0420", 5, 0, 0.06, 0.9),
        ("SYN-0366", 17, 0, 0.04, 0.8),
        ("SYN-0350", 21, None, 0.03, 0.9),
        ("SYN-0431", 4, None, 0.02, 0.95),
        ("SYN-0359", 25, 0, 0.01, 0.9),
        ("SYN-0444", 0, None, None, 0.0),  # infused today, no labs yet
        ("SYN-0398", 28, None, None, 0.02),
    )
    patients, scores, history = [], [], []
    for pid, day, grade, base, fraction in plans:
        patients.append(
            {
                "patient_id": pid,
                "infusion_date": AS_OF - timedelta(days=day),
                "day_since_infusion": day,
                "crs_grade": grade,
            }
        )
        for model in FACTOR_SETS:
            expected = len(inputs_for(model))
            share = fraction if model == "all" else min(1.0, fraction + 0.8 * (base is not None))
            observed = int(expected * share)
            ok = base is not None and observed >= min_observed(model)
            offset = rng.uniform(-0.08, 0.08)
            for horizon in HORIZONS:
                risk = min(0.99, max(0.005, (base or 0) + offset + 0.04 * (horizon - 1)))
                scores.append(
                    {
                        "patient_id": pid,
                        "model": model,
                        "horizon_days": horizon,
                        "probability": risk if ok else None,
                        "calibrated_risk": risk if ok else float("nan"),
                        "status": "ok" if ok else "insufficient_inputs",
                        "inputs_observed": observed,
                        "inputs_expected": expected,
                        "detail": None if ok else "too few inputs",
                    }
                )
                if ok:
                    for back in range(1, 8):
                        drift = 0.06 * back * (1 if (base or 0) > 0.3 else 0.3)
                        history.append(
                            {
                                "patient_id": pid,
                                "as_of": AS_OF - timedelta(days=back),
                                "model": model,
                                "horizon_days": horizon,
                                "calibrated_risk": max(
                                    0.005, risk - drift + rng.uniform(-0.02, 0.02)
                                ),
                            }
                        )
    patients_df = pd.DataFrame(patients)
    patients_df["crs_grade"] = patients_df["crs_grade"].astype("Int64")
    issues = {"implausible_value": 7, "unknown_unit": 3, "unparseable_text": 2, "duplicate": 1}
    run = RunInfo(
        run_id="demo-2026-11-26",
        as_of=AS_OF,
        started_at=datetime.combine(AS_OF, time(2, 0)),
        data_cutoff=datetime.combine(AS_OF, time(23, 59, 59)),
        model_version="prcrs-synthetic-demo",
        n_patients=len(patients_df),
        n_scores=len(scores),
        n_data_issues=sum(issues.values()),
    )
    recent = alerts.recent_history(pd.DataFrame(history), AS_OF)
    summaries = alerts.summarise_patients(
        patients=patients_df, scores=pd.DataFrame(scores), threshold=THRESHOLD
    )
    return {
        "run": run,
        "summaries": alerts.with_previous(summaries, recent),
        "history": recent,
        "data_issues": issues,
    }


def screenshot(html_path: Path, png_path: Path, chromium: str, width: int, height: int) -> None:
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={png_path.resolve()}",
                f"--window-size={width},{height}",
                html_path.resolve().as_uri(),
            ],
            check=True,
            timeout=120,
            capture_output=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "report-sample")
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "report-screenshot.png")
    parser.add_argument("--width", type=int, default=420)
    parser.add_argument("--height", type=int, default=1400)
    args = parser.parse_args()

    night = synthetic_night()
    report = build_report(**night, threshold=THRESHOLD)
    html_path = write_html(report, args.out, AS_OF, night["run"].run_id)
    print(f"{report.subject}: {html_path}")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium not found; skipped the screenshot (apt-get install -y chromium)")
        return 0
    screenshot(html_path, args.png, chromium, args.width, args.height)
    print(f"screenshot: {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
