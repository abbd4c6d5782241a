"""Model choices by cross-validation (issue 11, item 6): the options tried against what
ships, their CV methods, the rule fixed before the comparison, and its verdict.

The choices, each option a cv.FitPredict that `evaluate` runs for `all` on every CV repeat,
on the same folds as the shipped procedure (`prcrs_transfer`):

- ensemble size: the shipped 5 members against the first 1 and 3. Member k is body k's head
  fine-tuned with seed `training.member_seed(seed, k)` (training.fit_transfer), so the first
  k members of one fit are exactly the k-member ensemble; the members are fitted once per fold
  (`MemberLogits`) and every size reads them;
- readout: "skip" (shipped) against the published mean pool (`prcrs_transfer_mean`);
- pre-trained body: the frozen COVID-19 body (shipped) against none (`head_only`);
- temporal context (temporal.py): none (shipped) against the skip readout plus days since
  infusion, plus each input's change since its previous result, plus both.

The PrCRS + logistic regression average is judged by its own rule, fixed before it ran (it
ships only if it beats both at every horizon), and listed here with that verdict.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from prcrs_batch.features import matrix, temporal
from prcrs_batch.modeling.networks import PrCRS, classifier_head, ensemble_probability
from prcrs_batch.offline import cv, training
from prcrs_batch.offline.baselines import LABELS
from prcrs_batch.offline.cv import FitPredict
from prcrs_batch.task.panel import HORIZONS

MARGIN = 0.005  # AUROC an option must gain over the shipped one at every horizon
SHIPPED = "prcrs_transfer"
ENSEMBLE_SIZES = (1, 3)  # smaller ensembles tried against the shipped n_members


@dataclass(frozen=True)
class Choice:
    """One decision and the options tried against the shipped one (method -> option)."""

    name: str
    options: dict[str, str]


CHOICES = (
    Choice("ensemble size", {f"prcrs_transfer_{k}": f"{k} member(s)" for k in ENSEMBLE_SIZES}),
    Choice("readout", {"prcrs_transfer_mean": "published mean pool"}),
    Choice("pre-trained body", {"head_only": "none: the head on the inputs alone"}),
    Choice(
        "temporal context",
        {
            "context_days": "+ days since infusion",
            "context_change": "+ change since previous result",
            "context_days_change": "+ both",
        },
    ),
)
SHIPPED_TEXT = "skip readout, {n} member(s), COVID-19 body, no temporal context"
AVERAGE = "prcrs_logistic"
AVERAGE_TEXT = "PrCRS and logistic regression averaged (own rule: beats both at every horizon)"
RULE = (
    "Rule, fixed before the comparison (declared in model_choices.py before the runs): for `all`, "
    "a tried option replaces the shipped one only if its AUROC (the calibrated cumulative "
    "risk, mean over the CV repeats) beats the shipped option's at every horizon by at least "
    f"{MARGIN}; if several options of one choice do, the one with the highest AUROC averaged "
    "over the horizons. Otherwise the shipped option stays: a smaller gain is inside the "
    "noise of this cohort, and changing what ships means retraining. The ensemble sizes and "
    "the temporal context are new comparisons; the readout and body rows were in "
    "EVALUATION.md before this rule was written, and are re-checks under it. The PrCRS + "
    "logistic regression average keeps the rule it was run under (it ships only if it beats "
    "both at every horizon, 'Candidate' above)."
)


def _digest(frame: pd.DataFrame, columns: list[str]) -> str:
    return hashlib.sha256(
        pd.util.hash_pandas_object(frame[columns], index=False).to_numpy().tobytes()
    ).hexdigest()


class MemberLogits:
    """Each ensemble member's logits on a fold's test rows, fitted once (the shipped
    procedure, training.fit_transfer) and read by every ensemble size."""

    def __init__(self, bodies: list[PrCRS], cfg: training.TrainConfig):
        self.bodies, self.cfg = bodies, cfg
        self._fits: dict[tuple, list[torch.Tensor]] = {}

    def logits(
        self,
        train: pd.DataFrame,
        test: pd.DataFrame,
        stats: matrix.InputStats,
        horizon: int,
        seed: int,
    ) -> list[torch.Tensor]:
        """One (n_test, 2) tensor per member, in body order."""
        key = (
            horizon,
            seed,
            tuple(stats.inputs),
            _digest(train, ["patient_id", "day", f"label_{horizon}"]),
            _digest(test, ["patient_id", "day"]),
        )
        if key not in self._fits:
            a = cv.FoldArrays.of(train, test, stats, horizon)
            members = training.fit_transfer(
                self.bodies, a.values, a.observed, a.y, a.groups, stats.inputs, seed, self.cfg
            )
            vt, ot = torch.from_numpy(a.test_values), torch.from_numpy(a.test_observed)
            with torch.inference_mode():
                self._fits[key] = [m.eval()(vt, ot) for m in members]
        return self._fits[key]

    def ensemble(self, n_members: int) -> FitPredict:
        """The ensemble of the first `n_members` members (all of them: the shipped one)."""

        def fit_predict(
            train: pd.DataFrame,
            test: pd.DataFrame,
            stats: matrix.InputStats,
            horizon: int,
            seed: int,
        ) -> np.ndarray:
            return ensemble_probability(self.logits(train, test, stats, horizon, seed)[:n_members])

        return fit_predict


def transfer_with_context(bodies: list[PrCRS], cfg: training.TrainConfig, kind: str) -> FitPredict:
    """The shipped procedure with context option `kind` (temporal.KINDS) appended to the
    skip readout that each member's head reads; seeds as training.fit_transfer's."""

    def fit_predict(
        train: pd.DataFrame,
        test: pd.DataFrame,
        stats: matrix.InputStats,
        horizon: int,
        seed: int,
    ) -> np.ndarray:
        a = cv.FoldArrays.of(train, test, stats, horizon)
        v, o = torch.from_numpy(a.values), torch.from_numpy(a.observed)
        vt, ot = torch.from_numpy(a.test_values), torch.from_numpy(a.test_observed)
        extra = torch.from_numpy(temporal.context_inputs(train, stats, kind))  # (N, E)
        extra_test = torch.from_numpy(temporal.context_inputs(test, stats, kind))
        logits = []
        for k, body in enumerate(bodies):
            member_seed = training.member_seed(seed, k)
            with training.seeded(member_seed), torch.no_grad():
                model = training.transfer_model(body, stats.inputs, "skip")  # body in eval mode
                read = torch.cat([model.features(v, o), extra], dim=1)  # (N, F + E)
                head = classifier_head(read.shape[1], model.config)  # replaces model.head
            training.fit_head(head, read, a.y, a.groups, member_seed, cfg)
            with torch.inference_mode():
                logits.append(head(torch.cat([model.features(vt, ot), extra_test], dim=1)))
        return ensemble_probability(logits)

    return fit_predict


def methods(bodies: list[PrCRS], cfg: training.TrainConfig) -> dict[str, FitPredict]:
    """The shipped procedure (one fit per fold shared by every ensemble size) and the
    options of CHOICES that are new here (the readout and body ones are in baselines)."""
    members = MemberLogits(bodies, cfg)
    out = {SHIPPED: members.ensemble(len(bodies))}
    out |= {f"prcrs_transfer_{k}": members.ensemble(k) for k in ENSEMBLE_SIZES if k < len(bodies)}
    return out | {f"context_{k}": transfer_with_context(bodies, cfg, k) for k in temporal.KINDS}


def verdict(summary: pd.DataFrame, n_members: int, factor_set: str = "all") -> pd.DataFrame:
    """The shipped procedure, then one row per option tried that `summary` (evaluation.
    summarise's frame) holds: AUROC and its CI per horizon, the gain over the shipped
    procedure, and whether the option is kept (RULE; the average: its own rule)."""
    mine = summary[summary["factor_set"] == factor_set]
    auroc = {(str(m), int(h)): float(a) for m, h, a in mine[["method", "horizon", "auroc"]].values}
    ci = dict(zip(zip(mine["method"], mine["horizon"]), mine["auroc_ci"]))
    present = {m for m, _ in auroc if all((m, h) in auroc for h in HORIZONS)}
    if SHIPPED not in present:  # every horizon or none: the rule asks for all of them
        return pd.DataFrame()

    def gains(method: str) -> list[float]:
        return [auroc[(method, h)] - auroc[(SHIPPED, h)] for h in HORIZONS]

    def row(choice: str, option: str, method: str, kept: bool) -> dict[str, object]:
        out: dict[str, object] = {"choice": choice, "option": option, "method": method}
        out["kept"] = kept
        for h, gain in zip(HORIZONS, gains(method)):
            out |= {f"auroc_{h}": auroc[(method, h)], f"auroc_ci_{h}": ci[(method, h)]}
            out[f"gain_{h}"] = gain
        return out

    rows = [row("shipped", SHIPPED_TEXT.format(n=n_members), SHIPPED, True)]
    for choice in CHOICES:
        tried = [m for m in choice.options if m in present]
        passing = [m for m in tried if all(g >= MARGIN for g in gains(m))]
        best = max(passing, key=lambda m: sum(gains(m)), default=None)
        rows += [row(choice.name, choice.options[m], m, m == best) for m in tried]
    if {AVERAGE, "logistic"} <= present:
        beats_both = all(
            auroc[(AVERAGE, h)] > auroc[(m, h)] for h in HORIZONS for m in (SHIPPED, "logistic")
        )
        rows.append(row("average with logistic regression", AVERAGE_TEXT, AVERAGE, beats_both))
    return pd.DataFrame(rows)


def section(summary: pd.DataFrame, n_members: int) -> list[str]:
    """EVALUATION.md's "Model choices" section: the rule, then one row per option tried.

    `n_members` is the shipped ensemble's size (the pre-trained bodies evaluated)."""
    table = verdict(summary, n_members)
    if table.empty:
        return []
    header = ["choice", "option", *[f"AUROC {h} d (95% CI)" for h in HORIZONS]]
    lines = [
        "## Model choices (issue 11, item 6): ablations",
        "",
        RULE,
        "",
        "| " + " | ".join([*header, "gain vs shipped (1/2/3 d)", "kept"]) + " |",
        "|" + "---|" * (len(header) + 2),
    ]
    for _, r in table.iterrows():
        cells = [r["choice"], r["option"]]
        cells += [
            f"{r[f'auroc_{h}']:.3f} ({r[f'auroc_ci_{h}'][0]:.2f}-{r[f'auroc_ci_{h}'][1]:.2f})"
            for h in HORIZONS
        ]
        gains = " / ".join(f"{r[f'gain_{h}']:+.3f}" for h in HORIZONS)
        shipped = r["method"] == SHIPPED
        cells += ["" if shipped else gains, "" if shipped else ("yes" if r["kept"] else "no")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines.append("")
    kept = table[table["kept"] & (table["method"] != SHIPPED)]
    if kept.empty:
        lines.append("No option tried meets its rule: every shipped choice stays.")
    for _, r in kept.iterrows():
        lines.append(f"Meets its rule ({r['choice']}): {LABELS[r['method']]}.")
    return lines + [""]
