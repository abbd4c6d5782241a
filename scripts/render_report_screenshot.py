"""Render the three kinds of alert report from synthetic data, and screenshot them at the
width of a phone (390 px).

    python scripts/render_report_screenshot.py [--out build/report-sample] [--docs docs]

Writes each report's mail HTML (`mail.html`, what the phone shows) and complete report
(as the report folder keeps it and the mail attaches it), images inlined, and, when headless
Chromium is installed (`apt-get install -y chromium`), a PNG of each mail:
docs/report-first-night.png (alerts on a first night: no history, so no charts),
docs/report-screenshot.png (the next night, with history: states and trend charts; the
README shows it), docs/report-all-clear.png, the second night in Chinese,
docs/report-zh.png, and a crowded night, docs/report-crowded.png (30 alerts; cards limited
to 2 so that the compact rows of the further alerts fit in the picture; the default is 12).
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

from prcrs_batch.nightly import alerts
from prcrs_batch.nightly.alert_states import HISTORY_COLUMNS, recent_history, with_previous
from prcrs_batch.nightly.explanations import LabLine
from prcrs_batch.report.outbox import write_html
from prcrs_batch.report.render import build_report, self_contained
from prcrs_batch.resources import SOURCE_ROOT as REPO
from prcrs_batch.results.nights import RunInfo
from prcrs_batch.task.panel import BY_CODE, FACTOR_SETS, HORIZONS, inputs_for, min_observed
from prcrs_batch.task.thresholds import Tiers

AS_OF = date(2026, 11, 26)
TIERS = Tiers.fixed(0.30, 0.15)  # alert at 30 %, watch at 15 % (a model's manifest gives its own)
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


def synthetic_night(kind: str = "second", seed: int = 7) -> dict[str, Any]:
    """A small synthetic night: 3 alerts (none for kind "clear"), 8 quiet patients, 2 not
    scorable, 1 already severe; kind "first" has no earlier nights; kind "crowded" adds 27
    alerts to the second night."""
    rng = random.Random(seed)
    scale = 0.15 if kind == "clear" else 1.0
    crowd = tuple(
        (f"SYN-05{k:02d}", 2 + k % 9, k % 3 if k % 4 else None, 0.30 + 0.015 * k, 0.9)
        for k in range(27 if kind == "crowded" else 0)
    )
    plans = crowd + (
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
        ("SYN-0372", 7, 3, "severe", 0.9),
    )
    patients, scores, history = [], [], []
    for pid, day, grade, base, fraction in plans:
        collected = datetime.combine(AS_OF, time(6, 10)) - timedelta(hours=40 * (pid == "SYN-0452"))
        patients.append(
            {
                "patient_id": pid,
                "infusion_date": AS_OF - timedelta(days=day),
                "day_since_infusion": day,
                "crs_grade": grade,
                "crs_grade_on": AS_OF - timedelta(days=1) if grade is not None else None,
                "labs_from": collected - timedelta(hours=3),
                "labs_to": collected,
                "set_aside": ["IL6: unknown unit"] if pid == "SYN-0388" else [],
            }
        )
        if base == "severe":
            scores += [
                {
                    "patient_id": pid,
                    "model": model,
                    "horizon_days": horizon,
                    "probability": None,
                    "calibrated_risk": float("nan"),
                    "status": "already_severe",
                    "inputs_observed": 30,
                    "inputs_expected": len(inputs_for(model)),
                    "detail": "CRS grade >= 3",
                }
                for model in FACTOR_SETS
                for horizon in HORIZONS
            ]
            continue
        base = None if base is None else base * scale
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
                if ok and kind != "first" and pid != "SYN-0452":  # its first night over
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
    recent = recent_history(pd.DataFrame(history, columns=HISTORY_COLUMNS), AS_OF)
    summaries = alerts.summarise_patients(
        patients=patients_df, scores=pd.DataFrame(scores), threshold=TIERS
    )
    summaries = with_previous(summaries, recent, TIERS)
    return {
        "run": run,
        "summaries": summaries,
        "history": recent,
        "data_issues": issues,
        "reasons": {
            s.patient_id: _reasons(s.patient_id, s.labs_latest_at, rng)
            for s in summaries
            if s.alert
        },
    }


def _reasons(pid: str, morning: datetime | None, rng: random.Random) -> tuple[LabLine, ...]:
    """Synthetic lab lines of the kind explanations.lab_lines gives."""
    morning = morning or datetime.combine(AS_OF, time(6, 10))
    labs = (
        ("il6", 1240.0, 85.0, 0.14),
        ("crp", 96.0, 41.0, 0.08),
        ("ferritin", 2890.0, 2100.0, 0.05),
        ("ldh", 512.0, None, 0.03),
        ("platelet", 41.0, 63.0, 0.02),
    )
    return tuple(
        LabLine(
            analyte=code,
            name=BY_CODE[code].display_name,
            value=value * rng.uniform(0.8, 1.2),
            unit=BY_CODE[code].unit,
            collected_at=morning,
            previous_value=before,
            previous_at=None if before is None else morning - timedelta(days=1),
            contribution=share,
            horizon_days=3,
        )
        for code, value, before, share in labs[: 3 + len(pid) % 3]
    )


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


KINDS = {  # name -> (night, language, PNG name in docs/, alert cards in the mail)
    "first": ("first", "en", "report-first-night.png", 12),
    "second": ("second", "en", "report-screenshot.png", 12),
    "clear": ("clear", "en", "report-all-clear.png", 12),
    "zh": ("second", "zh", "report-zh.png", 12),  # needs a CJK font: apt-get install fonts-noto-cjk
    "crowded": ("crowded", "en", "report-crowded.png", 2),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "report-sample")
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    parser.add_argument("--width", type=int, default=390)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    for kind, (which, language, png, cards) in KINDS.items():
        night = synthetic_night(which)
        report = build_report(**night, threshold=TIERS, language=language, max_cards=cards)
        complete = write_html(report, args.out / kind, AS_OF, night["run"].run_id)
        mail = args.out / kind / "mail.html"
        mail.write_text(self_contained(report.html, report.images), "utf-8")
        print(f"{kind}: {report.subject}: {mail} (complete report: {complete})")
        if chromium is None:
            print("chromium not found; skipped the screenshot (apt-get install -y chromium)")
            continue
        screenshot(mail, args.docs / png, chromium, args.width, args.height)
        print(f"screenshot: {args.docs / png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
