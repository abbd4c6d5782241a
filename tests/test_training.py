"""Training (quick settings) -> models/ -> load -> score: splits, round trip, checksum refusal."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from prcrs_batch.features import matrix
from prcrs_batch.modeling import device, store
from prcrs_batch.modeling.networks import predict
from prcrs_batch.nightly import scoring
from prcrs_batch.offline import cv, datasets, training
from prcrs_batch.resources import bundled_data, model_dir
from prcrs_batch.task.panel import ANALYTE_CODES, FACTOR_SETS, HORIZONS
from prcrs_batch.task.thresholds import GRID

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> tuple[Path, Path]:
    """30 patients of the development cohort (8 with severe CRS) and 400 COVID-19 samples."""
    root = tmp_path_factory.mktemp("data")
    cart = pd.read_csv(bundled_data("cart_dev.csv"), dtype=str)
    worst = cart.assign(g=cart["crs_grade"].astype(int)).groupby("patient_id")["g"].max()
    keep = list(worst[worst >= 3].index[:8]) + list(worst[worst < 3].index[:22])
    cart[cart["patient_id"].isin(keep)].to_csv(root / "cart.csv", index=False)
    pd.read_csv(bundled_data("covid19.csv")).head(400).to_csv(root / "covid.csv", index=False)
    return root / "cart.csv", root / "covid.csv"


@pytest.fixture(scope="module")
def trained(small_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models")
    training.train(out, seed=3, quick=True, cohort_path=small_data[0], covid_path=small_data[1])
    return out


@pytest.fixture(scope="module")
def frame(small_data) -> pd.DataFrame:
    return datasets.training_frame(small_data[0])


def test_patient_folds_never_split_a_patient(frame):
    folds = cv.patient_folds(frame, 5, seed=0)
    assert set(folds) == set(range(5))
    assert (frame.assign(fold=folds).groupby("patient_id")["fold"].nunique() == 1).all()
    # stratified: every fold holds some patients who ever have severe CRS
    severe = cv.ever_severe(frame).to_numpy() == 1
    assert all(severe[folds == k].any() for k in range(5))


def test_inner_split_is_grouped(frame):
    groups = frame["patient_id"].to_numpy()
    train, val = cv.inner_split(groups, frame["crs_grade"].ge(3).astype(int).to_numpy(), 0)
    assert val.any() and train.any()
    assert not set(groups[train]) & set(groups[val])


def test_manifest_describes_every_model(trained):
    manifest = json.loads((trained / "manifest.json").read_text())
    assert {(m["factor_set"], m["horizon"]) for m in manifest["models"]} == {
        (fs, h) for fs in FACTOR_SETS for h in HORIZONS
    }
    entry = manifest["models"][0]
    for key in (
        "inputs",
        "units",
        "input_stats",
        "network",
        "calibration",
        "cv_metrics",
        "weights",
    ):
        assert key in entry
    assert entry["calibration"]["default"] in ("isotonic", "neighbour_window")
    assert {"isotonic", "neighbour_window"} <= set(entry["calibration"])
    assert len(manifest["training_data"]["cart_sha256"]) == 64
    assert all(len(w["sha256"]) == 64 for w in entry["weights"])
    # each model's thresholds, chosen by task/thresholds.py's rules, the same at every horizon
    for fs in FACTOR_SETS:
        tiers = [m["thresholds"] for m in manifest["models"] if m["factor_set"] == fs]
        assert all(t == tiers[0] for t in tiers)
        assert tiers[0]["alert"] in GRID and tiers[0]["onsets"] >= 0
        assert tiers[0]["watch"] is None or tiers[0]["watch"] < tiers[0]["alert"]


def test_training_is_reproducible(trained, small_data, tmp_path):
    training.train(
        tmp_path,
        seed=3,
        quick=True,
        cohort_path=small_data[0],
        covid_path=small_data[1],
        factor_sets=["cytokines"],
    )
    for name in (store.PRETRAINED_FILE, "cytokines_h1.safetensors", "cytokines_h3.safetensors"):
        assert store.sha256(trained / name) == store.sha256(tmp_path / name), name


def test_round_trip_load_gives_training_time_predictions(trained, frame):
    bundle = store.load_models(trained, "cpu")
    assert not bundle.errors()
    model = bundle.models[("all", 1)]
    values, observed = store.reference_inputs(len(model.inputs))
    again = predict(model.members, values, observed)
    np.testing.assert_allclose(again, model.entry["reference_probabilities"], atol=1e-6)
    # same predictions through scoring as through the training code path
    day = frame[frame["day"] == 1].set_index("patient_id")[list(ANALYTE_CODES)]
    scores = scoring.score(bundle, day, "cpu")
    ok = scores[
        (scores["model"] == "all") & (scores["horizon_days"] == 1) & (scores["status"] == "ok")
    ]
    expected = predict(model.members, *matrix.encode(day.loc[ok["patient_id"]], model.stats))
    np.testing.assert_allclose(ok["probability"].to_numpy(), expected, rtol=1e-6)


def test_scores_are_keyed_by_patient_not_row(trained, frame):
    bundle = store.load_models(trained, "cpu")
    day = frame[frame["day"] == 0].set_index("patient_id")[list(ANALYTE_CODES)]
    day.iloc[0] = np.nan  # one patient with nothing observed
    a = scoring.score(bundle, day, "cpu")
    b = scoring.score(bundle, day.iloc[::-1], "cpu")
    assert len(a) == len(day) * 18
    assert list(a.columns) == scoring.COLUMNS
    key = ["patient_id", "model", "horizon_days"]
    merged = a.merge(b, on=key, suffixes=("_a", "_b"))
    np.testing.assert_allclose(merged["probability_a"], merged["probability_b"], rtol=1e-6)
    empty = a[a["patient_id"] == day.index[0]]
    assert (empty["status"] == "insufficient_inputs").all()
    assert empty["calibrated_risk"].isna().all()
    ok = a[a["status"] == "ok"]
    assert ok["calibrated_risk"].between(0, 1).all()


def test_wrong_checksum_refuses_that_model_only(trained, tmp_path):
    broken = tmp_path / "models"
    shutil.copytree(trained, broken)
    target = broken / "cytokines_h2.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    (broken / "biochem_h3.safetensors").unlink()
    entry = next(
        m
        for m in json.loads((broken / "manifest.json").read_text())["models"]
        if m["name"] == "cytokines_h2"
    )
    with pytest.raises(store.ModelChecksumError, match="cytokines_h2.safetensors"):
        store.load_model(broken, entry, device.resolve_device("cpu"))
    bundle = store.load_models(broken, "cpu")
    errors = bundle.errors()
    assert set(errors) == {("cytokines", 2), ("biochem", 3)}
    assert "ModelChecksumError" in errors[("cytokines", 2)]
    assert "missing" in errors[("biochem", 3)]
    assert len(bundle.models) - len(errors) == 16
    day = pd.DataFrame(
        np.nan, index=pd.Index(["p1"], name="patient_id"), columns=list(ANALYTE_CODES)
    )
    day.loc["p1"] = 1.0
    scores = scoring.score(bundle, day, "cpu")
    bad = scores[(scores["model"] == "cytokines") & (scores["horizon_days"] == 2)]
    assert bad["status"].tolist() == ["error"] and "SHA-256" in bad["detail"].iloc[0]


def test_corrupt_shared_body_refuses_every_model(trained, tmp_path):
    broken = tmp_path / "models"
    shutil.copytree(trained, broken)
    target = broken / store.PRETRAINED_FILE
    target.write_bytes(target.read_bytes()[:-8] + b"\0" * 8)
    bundle = store.load_models(broken, "cpu")
    assert len(bundle.errors()) == 18


def test_usable_rows_are_the_rows_the_nightly_job_would_score(frame):
    rows = frame.copy()
    cytokines = ["il2", "il4", "il6", "il10", "tnf_alpha", "ifn_gamma", "il17a"]
    rows.loc[rows.index[0], cytokines] = np.nan
    rows.loc[rows.index[0], "label_1"] = 0.0
    keep = cv.usable_rows(rows, "cytokines", 1)
    assert not keep[0]
    assert keep.sum() <= rows["label_1"].notna().sum()
    assert (rows.loc[keep, cytokines].notna().sum(axis=1) >= 5).all()


def _body_tensors(body) -> dict:  # type: ignore[no-untyped-def]
    return {n: t for n, t in body.state_dict().items() if not n.startswith(("head.", "scatter."))}


def test_bodies_load_from_the_recorded_pretraining_config(trained, tmp_path):
    manifest = json.loads((trained / "manifest.json").read_text())
    recorded = manifest["pretraining"]["network"]
    assert recorded["n_classes"] == 3 and recorded["readout"] == "mean"
    bodies = store.load_bodies(trained)
    assert len(bodies) == len(manifest["pretraining"]["members"])
    assert all(b.config.to_dict() == recorded for b in bodies)
    # a manifest from before the config was recorded: derived, same weights
    older = tmp_path / "models"
    shutil.copytree(trained, older)
    del manifest["pretraining"]["network"]
    (older / "manifest.json").write_text(json.dumps(manifest))
    for new, old in zip(bodies, store.load_bodies(older)):
        assert old.config.d_model == new.config.d_model and old.config.n_classes == 3
        for name, tensor in _body_tensors(new).items():
            assert torch.equal(tensor, _body_tensors(old)[name]), name


def test_shipped_bodies_load():
    bodies = store.load_bodies(model_dir())
    manifest, _ = store.read_manifest(model_dir())
    assert len(bodies) == len(manifest["pretraining"]["members"])
    assert all(b.config.n_classes == 3 and not b.training for b in bodies)


def test_quick_training_never_replaces_the_model_folder(settings_env):
    from click.testing import CliRunner

    from prcrs_batch.app.cli import main

    result = CliRunner().invoke(main, ["train", "--quick"])
    assert result.exit_code != 0 and "--output" in result.output
