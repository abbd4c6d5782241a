"""EVALUATION.md from a tiny synthetic evaluation: it renders and says plainly who wins."""

import numpy as np
import pandas as pd
import pytest

from prcrs_batch.modeling import calibration
from prcrs_batch.offline import (
    comparisons,
    evaluation,
    evaluation_decisions,
    evaluation_report,
)
from prcrs_batch.offline.training import TrainConfig

MANIFEST = {
    "code_version": "0.1.0+gtest",
    "seed": 0,
    "training_data": {"cart_file": "cart.csv", "patients": 60, "patient_days": 240},
}


def _oof(strength: dict[str, float], seed: int = 0) -> pd.DataFrame:
    """Out-of-fold predictions of each method: higher `strength`, better separation."""
    rng = np.random.default_rng(seed)
    patients = np.repeat([f"P{i:02d}" for i in range(60)], 4)
    y = np.repeat(rng.random(60) < 0.25, 4).astype(int)
    folds = np.repeat(np.arange(60) % 5, 4)
    parts = []
    for method, s in strength.items():
        p = np.clip(0.2 + s * (y - 0.2) + rng.normal(0, 0.2, len(y)), 0.001, 0.999)
        parts.append(
            pd.DataFrame(
                {
                    "seed": 0,
                    "factor_set": "all",
                    "horizon": 1,
                    "method": method,
                    "row": np.arange(len(y)),
                    "patient_id": patients,
                    "y": y,
                    "p": p,
                    "c": p,
                    "day": np.tile(np.arange(4), 60),
                    "fold": folds,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _calibrators(oof: pd.DataFrame) -> pd.DataFrame:
    """What cross_validate reports of the calibrators: here none chosen, every figure 0.1."""
    keys = oof[["seed", "factor_set", "method", "horizon"]].drop_duplicates()
    figures = {f"{k}_{m}": 0.1 for k in ("brier", "ece") for m in ("raw", *calibration.METHODS)}
    return keys.assign(chosen="none", **figures)


def _summary(oof: pd.DataFrame, n_boot: int = 20) -> pd.DataFrame:
    return evaluation.summarise(oof, _calibrators(oof), threshold=0.3, n_boot=n_boot)


def _render(oof: pd.DataFrame, tmp_path) -> str:  # type: ignore[no-untyped-def]
    summary = _summary(oof)
    path = tmp_path / "EVALUATION.md"
    evaluation_report.write_report(
        summary,
        ["evaluation_all_h1.png"],
        path,
        evaluation_report.HowEvaluated(
            command="prcrs-batch evaluate --quick",
            seeds=[0],
            n_folds=5,
            seconds=60.0,
            manifest=MANIFEST,
            quick=True,
            cfg=TrainConfig.quick(),
            neural_seeds=1,
            full_sets=("all",),
        ),
    )
    return path.read_text(encoding="utf-8")


def test_report_names_the_best_baseline_and_says_when_prcrs_loses(tmp_path):
    text = _render(
        _oof({"prcrs_transfer": 0.1, "logistic": 0.7, "boosting": 0.3, "head_only": 0.9}),
        tmp_path,
    )
    assert text.startswith("# PrCRS evaluation (patient-grouped cross-validation)")
    assert "(QUICK settings: not a real evaluation)" in text
    assert "## Factor set `all`" in text and "### Onset within 1 day(s): 240 patient-days" in text
    assert "PrCRS (transfer) LOSES TO the best baseline, Logistic regression: AUROC" in text
    # an ablation is not a baseline, even when it scores best
    assert "the best baseline, PrCRS head on the inputs alone" not in text
    assert "PrCRS (transfer) vs PrCRS head on the inputs alone, no body (ablation)" in text
    table = [line for line in text.splitlines() if line.startswith("| Logistic regression |")]
    assert len(table) == 1 and table[0].count("|") == 13
    assert "## Calibration of PrCRS (transfer)" in text
    assert "![evaluation_all_h1.png](evaluation_all_h1.png)" in text


def test_report_says_matches_or_beats_when_prcrs_wins(tmp_path):
    text = _render(_oof({"prcrs_transfer": 0.8, "logistic": 0.2, "m_easix": 0.1}), tmp_path)
    assert "PrCRS (transfer) matches or beats the best baseline, Logistic regression" in text
    assert "LOSES TO" not in text


@pytest.mark.parametrize("method", ["prcrs_transfer", "logistic"])
def test_summary_has_one_row_per_method_with_intervals_around_the_estimate(method):
    summary = _summary(_oof({"prcrs_transfer": 0.5, "logistic": 0.5}), n_boot=50)
    row = summary[summary["method"] == method].iloc[0]
    assert row["auroc_ci"][0] <= row["auroc"] <= row["auroc_ci"][1]
    assert row["n"] == 240 and row["n_patients"] == 60


def test_the_averaged_candidate_is_judged_by_its_stated_rule(tmp_path):
    strong = _render(
        _oof({"prcrs_transfer": 0.5, "logistic": 0.4, "prcrs_logistic": 0.8}), tmp_path
    )
    assert "## Candidate: PrCRS and logistic regression averaged" in strong
    assert "It meets it (1 d: +" in strong
    weak = _render(_oof({"prcrs_transfer": 0.8, "logistic": 0.4, "prcrs_logistic": 0.5}), tmp_path)
    assert "does NOT meet it, so PrCRS transfer alone ships" in weak
    # a candidate, never the best baseline
    assert "the best baseline, PrCRS transfer and logistic regression" not in strong


def test_the_model_choices_section_follows_the_candidate(tmp_path):
    oof = pd.concat(
        [_oof({"prcrs_transfer": 0.5, "context_days": 0.6}).assign(horizon=h) for h in (1, 2, 3)],
        ignore_index=True,
    )
    text = _render(oof, tmp_path)
    assert "## Model choices (issue 11, item 6): ablations" in text
    assert "| temporal context | + days since infusion |" in text
    assert "skip readout, 1 member(s), COVID-19 body" in text  # the quick config's ensemble
    # horizon 1 only: the rule asks for every horizon, so no verdict
    assert "## Model choices" not in _render(_oof({"prcrs_transfer": 0.5}), tmp_path)


def test_the_tier_section_reports_out_of_sample_thresholds(tmp_path):
    oof = pd.concat(
        [_oof({"prcrs_transfer": 0.6}).assign(horizon=h) for h in (1, 2, 3)], ignore_index=True
    )
    tiers = {"all": evaluation.tier_figures(oof)}
    assert set(tiers["all"]) == {"alert", "alert_or_watch", "all_rows"}
    low, high = tiers["all"]["alert"]["threshold_low"], tiers["all"]["alert"]["threshold_high"]
    assert low <= high
    shipped = oof[oof["method"] == "prcrs_transfer"]
    extras = evaluation_report.Extras(
        thresholds=evaluation.threshold_table(shipped),
        chosen_threshold=evaluation.default_threshold(shipped),
        min_sensitivity=0.8,
        lead_times={0.3: evaluation.lead_times(shipped, 0.3)},
        tiers=tiers,
        stored={"all": {"alert": 0.21, "watch": None}},
        patterns=pd.DataFrame(columns=comparisons.PATTERN_COLUMNS),
        targets=_targets(censored_gain=0.02),
        paper_summary=_summary(oof),
        monotone_raw=0.0,
    )
    path = tmp_path / "EVALUATION.md"
    how = evaluation_report.HowEvaluated(
        command="prcrs-batch evaluate --quick",
        seeds=[0],
        n_folds=5,
        seconds=1.0,
        manifest=MANIFEST,
        quick=True,
        cfg=TrainConfig.quick(),
        neural_seeds=1,
        full_sets=("all",),
    )
    evaluation_report.write_report(_summary(oof), [], path, how, extras)
    text = path.read_text(encoding="utf-8")
    assert "## Alert and watch tiers, thresholds chosen out of sample" in text
    rows = [line for line in text.splitlines() if line.startswith("| `all` |")]
    assert [row.split(" | ")[1] for row in rows] == ["alert", "alert or watch"]
    assert f"| {low:.2f}-{high:.2f} |" in rows[0]
    assert "| 0.21 |" in rows[0] and "| none |" in rows[1]  # what manifest.json holds


def test_paired_difference_is_bootstrapped_on_the_same_patients(tmp_path):
    oof = _oof({"prcrs_transfer": 0.5, "logistic": 0.5, "boosting": 0.2, "head_only": 0.9})
    oof.loc[oof["method"] == "logistic", "c"] = oof.loc[
        oof["method"] == "prcrs_transfer", "c"
    ].to_numpy()
    summary = _summary(oof)
    paired = comparisons.paired_differences(oof, summary, n_boot=50).iloc[0]
    # the best baseline (never an ablation) gives identical risks: the difference is exactly 0
    # on every resample, where two separate intervals would overlap without saying so
    assert paired["best_baseline"] == "logistic"
    assert paired["difference"] == paired["difference_low"] == paired["difference_high"] == 0.0
    oof.loc[oof["method"] == "logistic", "c"] = 0.5  # an uninformative baseline
    paired = comparisons.paired_differences(oof, _summary(oof), n_boot=50).iloc[0]
    assert paired["best_baseline"] == "boosting"
    assert paired["difference_low"] <= paired["difference"] <= paired["difference_high"]


def _targets(censored_gain: float) -> pd.DataFrame:
    """target_comparison's frame: the censored target ahead by `censored_gain` at 1 and 2 days,
    by 0.005 at 3 days."""
    rows = []
    for rule, base in (("kept_by_outcome", 0.9), ("unassessed_not_severe", 0.85)):
        rows += [{"rule": rule, "horizon": h, "auroc_prcrs_transfer": base} for h in (1, 2, 3)]
    gains = (censored_gain, censored_gain, 0.005)
    rows += [
        {"rule": "censored_at_record_end", "horizon": h, "auroc_prcrs_transfer": 0.85 + g}
        for h, g in zip((1, 2, 3), gains)
    ]
    return pd.DataFrame(rows).assign(
        rows=100, onsets=10, prevalence=0.1, auroc_logistic=0.8, mean_risk=0.1, intercept=0.0
    )


def test_the_target_rule_wants_a_gain_at_every_horizon():
    assert evaluation_decisions.choose_target(_targets(0.02)) == "unassessed_not_severe"
    every = _targets(0.02)
    every.loc[every["rule"] == "censored_at_record_end", "auroc_prcrs_transfer"] = 0.9
    assert evaluation_decisions.choose_target(every) == "censored_at_record_end"
    text = "\n".join(evaluation_decisions.target_section(every))
    assert "the rule chooses **`censored_at_record_end`**" in text
    assert "NOT the rule's choice" in text  # the code still learns another
