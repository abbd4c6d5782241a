"""How big the nightly alert mail is, as an SMTP server receives it: the HTML part (Gmail
clips an HTML part past about 102 KB, hiding the report's footer) and the whole message.

    python scripts/mail_size.py [--languages en,zh] [--alerts 300]

Runs the development cohort through the nightly job (`pipeline.run_nightly`: an SQLite
warehouse in a temporary folder, the shipped models) and mails each night to a local SMTP
server (aiosmtpd, a test dependency) that keeps what arrives:

- "0 alerts": the demo's night (`prcrs-batch demo`: 152 patients) at a threshold of 100 %;
- "demo": the demo's night at the default threshold;
- "N alerts": the cohort three times over (456 patients, each copy placed in treatment with
  its own seed), at the threshold that flags N of them (the N-th highest risk);
- "N alerts, 2nd night": the same cohort and threshold the next night, so that the alerts
  have an earlier night (states, trend charts).

Prints one Markdown table row per night and language (docs/benchmarks.md, "The alert mail").
Synthetic development data only; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import logging
import re
import socket
import tempfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pandas as pd
from aiosmtpd.controller import Controller
from sqlalchemy import select

from prcrs_batch.app import pipeline
from prcrs_batch.devdata import cohort
from prcrs_batch.modeling import store
from prcrs_batch.resources import bundled_data
from prcrs_batch.results.engines import make_engine
from prcrs_batch.results.migrations import migrate
from prcrs_batch.results.tables import crs_patient_nights, in_current_run
from prcrs_batch.settings import Settings, load_settings

DEMO_SEED = 20261126  # `prcrs-batch demo`'s default seed
COPIES = 3  # the cohort's copies for the crowded nights
KB = 1024


@dataclass
class Inbox:
    """aiosmtpd handler keeping each message's bytes."""

    received: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.content)
        return "250 OK"


def sizes(raw: bytes) -> dict[str, Any]:
    """The HTML part decoded (UTF-8 bytes) and as sent, the attachments, the whole message."""
    message: EmailMessage = message_from_bytes(raw, policy=policy.default)  # type: ignore[assignment]
    html = message.get_body(("html",))
    attached = [p for p in message.walk() if p.get_content_disposition() == "attachment"]
    body = html.get_content() if html else ""
    return {
        "subject": message["Subject"],
        "in_body": body.count('<div class="pid">') + len(re.findall(r'<span class="st2?">', body)),
        "html": len(body.encode("utf-8")),
        "html_sent": len(html.as_bytes()) if html else 0,
        "attachment": sum(len(p.get_content()) for p in attached),
        "message": len(raw),
    }


def warehouse_for(folder: Path, today: date, copies: int) -> str:
    """An SQLite warehouse holding the development cohort `copies` times, in treatment."""
    url = f"sqlite:///{folder / 'warehouse.db'}"
    development = cohort.read_cohort(bundled_data("cart_dev.csv"))
    frames = []
    for k in range(copies):
        placed = cohort.place_in_treatment(development, today, seed=DEMO_SEED + k)
        if k:
            placed["patient_id"] = placed["patient_id"] + f"-{k + 1}"
        frames.append(placed)
    engine = make_engine(url)
    cohort.reset_warehouse(engine)
    cohort.load_cohort(engine, pd.concat(frames, ignore_index=True))
    engine.dispose()
    migrate(url)
    return url


def night(settings: Settings, bundle: store.ModelBundle, as_of: date) -> pipeline.RunSummary:
    engine = make_engine(settings.warehouse_url)
    try:
        return pipeline.run_nightly(
            settings, as_of=as_of, warehouse=engine, results_db=engine, bundle=bundle
        )
    finally:
        engine.dispose()


def threshold_for(settings: Settings, as_of: date, n_alerts: int) -> float:
    """The N-th highest risk of a night already stored: the threshold that flags N."""
    engine = make_engine(settings.warehouse_url)
    with engine.connect() as connection:
        risks = connection.execute(
            select(crs_patient_nights.c.max_risk).where(
                crs_patient_nights.c.as_of == as_of,
                crs_patient_nights.c.max_risk.is_not(None),
                in_current_run(crs_patient_nights),
            )
        ).scalars()
        ordered = sorted(risks, reverse=True)
    engine.dispose()
    return float(ordered[min(n_alerts, len(ordered)) - 1])


def measure(language: str, n_alerts: int) -> list[dict[str, Any]]:
    rows = []
    inbox = Inbox()
    with socket.socket() as probe:  # a free local port
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    today = date.today()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            base = {
                "report_dir": folder / "reports",
                "report_language": language,
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "smtp_starttls": False,
                "alert_to": ["oncall@hospital.example"],
                "device": "cpu",
            }
            bundle = store.load_models(load_settings(**base).model_dir, device="cpu")

            def mailed(label: str, settings: Settings, as_of: date) -> None:
                before = len(inbox.received)
                summary = night(settings, bundle, as_of)
                raw = inbox.received[before]  # the night's own mail comes first
                rows.append(
                    {
                        "night": label,
                        "language": language,
                        "patients": summary.n_patients,
                        "alerts": summary.n_alerts,
                        **sizes(raw),
                    }
                )

            (folder / "demo").mkdir()
            demo = load_settings(**base, warehouse_url=warehouse_for(folder / "demo", today, 1))
            mailed("0 alerts", demo.model_copy(update={"alert_threshold": 1.0}), today)
            mailed("demo", demo, today)

            (folder / "crowded").mkdir()
            crowded = load_settings(
                **base, warehouse_url=warehouse_for(folder / "crowded", today, COPIES)
            )
            quiet = crowded.model_copy(update={"alert_threshold": 1.0, "smtp_host": None})
            night(quiet, bundle, today)  # stores every risk: which threshold flags N
            threshold = threshold_for(crowded, today, n_alerts)
            crowded = crowded.model_copy(update={"alert_threshold": threshold})
            mailed(f"{n_alerts} alerts", crowded, today)
            yesterday = today - timedelta(days=1)
            night(crowded.model_copy(update={"smtp_host": None}), bundle, yesterday)
            mailed(f"{n_alerts} alerts, 2nd night", crowded, today)
    finally:
        controller.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", default="en,zh", help="Report languages, e.g. en,zh.")
    parser.add_argument("--alerts", type=int, default=300, help="Alerts of the crowded night.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = [r for language in args.languages.split(",") for r in measure(language, args.alerts)]
    print(
        "| night | language | patients | alerts | alerts in the HTML | HTML part "
        "| HTML part as sent | attached report | whole message |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for r in rows:
        print(
            f"| {r['night']} | {r['language']} | {r['patients']} | {r['alerts']} "
            f"| {r['in_body']} | {r['html'] / KB:,.1f} KB | {r['html_sent'] / KB:,.1f} KB "
            f"| {r['attachment'] / KB:,.1f} KB | {r['message'] / KB:,.1f} KB |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
