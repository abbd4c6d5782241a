"""`prcrs-batch score`: one patient's warehouse rows given by hand give the nightly numbers,
and bad input is a recorded decision or one clear line, never a traceback."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from prcrs_batch.app.cli import main
from prcrs_batch.results import nights
from prcrs_batch.results.tables import crs_patient_nights
from prcrs_batch.warehouse.contract import cart_infusions, lab_results
from tests.support.nightly import AS_OF, patient_with_labs_on_as_of, run_night


@pytest.fixture
def score_env(settings_env, monkeypatch, quick_models):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PRCRS_MODEL_DIR", str(quick_models))
    monkeypatch.setenv("PRCRS_DEVICE", "cpu")


def test_score_gives_the_nightly_rows_of_a_patient(settings, warehouse, score_env, tmp_path):
    run_night(settings, warehouse)
    pid = patient_with_labs_on_as_of()
    with warehouse.connect() as connection:
        rows = connection.execute(select(lab_results).where(lab_results.c.patient_id == pid)).all()
        infused = connection.execute(
            select(cart_infusions.c.infusion_date).where(cart_infusions.c.patient_id == pid)
        ).scalar_one()
        grade = connection.execute(
            select(crs_patient_nights.c.crs_grade).where(
                crs_patient_nights.c.patient_id == pid, crs_patient_nights.c.as_of == AS_OF
            )
        ).scalar_one()
        nightly = nights.stored_scores(connection=connection, as_of=AS_OF)
    path = tmp_path / "labs.csv"
    pd.DataFrame(rows, columns=[c.name for c in lab_results.columns]).to_csv(path, index=False)
    options = ["--as-of", AS_OF.isoformat(), "--infusion-date", str(infused), "--json"]
    if grade is not None:
        options += ["--grade", str(grade)]
    outcome = CliRunner().invoke(main, ["score", str(path), *options])
    assert outcome.exit_code == 0, outcome.output
    [answer] = json.loads(outcome.stdout)
    assert answer["patient_id"] == pid and answer["as_of"] == AS_OF.isoformat()
    got = pd.DataFrame(answer["risks"]).sort_values(["model", "horizon_days"])
    mine = nightly[nightly["patient_id"] == pid].sort_values(["model", "horizon_days"])
    assert len(got) == len(mine) == 18
    for column in ("model", "horizon_days", "status", "inputs_observed", "inputs_expected"):
        assert got[column].tolist() == mine[column].tolist(), column
    for column in ("probability", "calibrated_risk"):
        # float32 networks: one patient alone and the same patient in the night's batch may
        # differ in the last bits of a matrix product (seen: 6e-8)
        np.testing.assert_allclose(
            got[column].to_numpy(float), mine[column].to_numpy(float), atol=1e-6, rtol=0
        )


def test_bad_values_are_recorded_decisions_and_bad_input_one_line(score_env, tmp_path):
    outcome = CliRunner().invoke(
        main,
        [
            "score",
            "--as-of",
            "2026-11-26",
            "--lab",
            "il6=1240",
            "--lab",
            "crp=85 furlongs",
            "--lab",
            "ferritin=lots",
            "--lab",
            "unobtainium=3",
            "--json",
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    [answer] = json.loads(outcome.stdout)
    reasons = {issue["analyte"]: issue["reason"] for issue in answer["data_issues"]}
    assert reasons == {
        "crp": "unknown_unit",
        "ferritin": "no_number",
        "unobtainium": "unknown_analyte",
    }
    future = tmp_path / "future.jsonl"
    future.write_text(
        json.dumps(
            {
                "patient_id": "p9",
                "collected_at": "2999-01-01 06:00",
                "analyte": "il6",
                "value": 12,
                "unit": "pg/mL",
            }
        )
        + "\n"
    )
    outcome = CliRunner().invoke(main, ["score", str(future), "--format", "jsonl", "--json"])
    assert outcome.exit_code == 0, outcome.output
    [answer] = json.loads(outcome.stdout)
    assert [i["reason"] for i in answer["data_issues"]] == ["future_timestamp"]
    assert answer["recommended_model"] is None
    for args in (["score"], ["score", "--lab", "il6"], ["score", str(tmp_path / "x.csv")]):
        if args[-1].endswith("x.csv"):
            (tmp_path / "x.csv").write_text("who,what\n1,2\n")
        outcome = CliRunner().invoke(main, args)
        assert outcome.exit_code != 0 and "Traceback" not in outcome.output
        assert outcome.output.strip().startswith("Error:"), outcome.output
