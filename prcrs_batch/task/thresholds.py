"""The alert and watch thresholds: the rules that choose them, and what a threshold catches,
defined once for `train` (which stores each model's thresholds in the manifest), `evaluate`
(which applies the rules on inner folds and reports the outer ones) and the night.

A patient-day is flagged at a threshold when its alert risk (the highest horizon's
cumulative risk, which is the patient's highest: the risks are cumulative) reaches it. An
onset of severe CRS on day d is the 1-day label of day d-1; it is *warned* when one of the
`max(HORIZONS)` nights d-3..d-1 was flagged, and its lead is the days from the first of
them to d.

The rules, fixed before any figure was seen:
- alert: the highest threshold (0.01 steps) at which at least `ALERT_CATCH` of the onsets
  are flagged on the night before (the issue-11 rule: a warning at least a day ahead for
  most onsets, and few alerts);
- watch: the highest threshold, below the alert's, at which at least `WATCH_CATCH` of the
  onsets are warned on one of the nights before; None when the alert's already does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prcrs_batch.task.panel import HORIZONS

GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)  # thresholds the rules try
ALERT_CATCH = 0.80  # share of onsets the alert must flag on the night before
WATCH_CATCH = 0.95  # share of onsets the watch tier must warn on one of the nights before


@dataclass(frozen=True)
class OnsetRisks:
    """One set of scored patient-days, reduced to what the rules and their figures need."""

    risks: np.ndarray  # every scored patient-day's alert risk
    onset_soon: np.ndarray  # per patient-day: 1 onset within max(HORIZONS) days, 0 none, NaN open
    night_before: np.ndarray  # per onset: the alert risk on the night before (NaN: not scored)
    nights_before: np.ndarray  # per onset x night d-3..d-1: the alert risk (NaN: not scored)

    @classmethod
    def of(cls, rows: pd.DataFrame) -> OnsetRisks:
        """`rows`: one per scored patient-day: patient_id, day (int), risk (the alert risk),
        y1 (1-day label: 1, 0 or NaN) and y_last (the longest horizon's label)."""
        risk_of = dict(zip(zip(rows["patient_id"], rows["day"]), rows["risk"], strict=True))
        onsets = rows.loc[rows["y1"] == 1, ["patient_id", "day"]].itertuples(index=False)
        lookback = max(HORIZONS)
        nights = np.array(
            [
                [risk_of.get((p, d - k), np.nan) for k in range(lookback - 1, -1, -1)]
                for p, d in onsets
            ],
            dtype=float,
        ).reshape(-1, lookback)
        return cls(
            risks=rows["risk"].to_numpy(float),
            onset_soon=rows["y_last"].to_numpy(float),
            night_before=nights[:, -1],
            nights_before=nights,
        )


def alert_threshold(repeats: Sequence[OnsetRisks]) -> float:
    """The alert rule (module docstring), the catch averaged over CV repeats.

    >>> r = OnsetRisks(np.array([0.1, 0.5]), np.array([0, 1.0]), np.array([0.5, 0.3, 0.2,
    ...     0.42, 0.6]), np.full((5, 3), np.nan))
    >>> alert_threshold([r])
    0.3
    """
    passing = [t for t in GRID if _mean(r.night_before >= t for r in repeats) >= ALERT_CATCH]
    return float(max(passing)) if passing else float(GRID[0])


def watch_threshold(repeats: Sequence[OnsetRisks], alert: float) -> float | None:
    """The watch rule (module docstring); None when the alert threshold already warns of
    `WATCH_CATCH` of the onsets, or no threshold below it does."""
    if _mean(_warned(r, alert) for r in repeats) >= WATCH_CATCH:
        return None
    below = [t for t in GRID if t < alert]
    passing = [t for t in below if _mean(_warned(r, t) for r in repeats) >= WATCH_CATCH]
    return float(max(passing)) if passing else None


def caught(risks: OnsetRisks, threshold: float) -> dict[str, float]:
    """What a threshold does on one set of patient-days: onsets, the share flagged on the
    night before and warned on one of the nights before, the median lead of the warned and
    the mean lead of all (0 when not warned), flagged patient-days per 100, and the share
    of flagged days with an onset within max(HORIZONS) days (PPV, among flagged days whose
    window is known)."""
    warned = _warned(risks, threshold)
    flagged = risks.risks >= threshold
    known = flagged & ~np.isnan(risks.onset_soon)
    first = np.argmax(risks.nights_before >= threshold, axis=1)  # earliest flagged night
    leads = np.where(warned, risks.nights_before.shape[1] - first, 0)
    return {
        "onsets": float(len(warned)),
        "flagged_night_before": _share(risks.night_before >= threshold),
        "warned": _share(warned),
        "median_lead_days": float(np.median(leads[warned])) if warned.any() else float("nan"),
        "mean_lead_days": float(leads.mean()) if len(leads) else float("nan"),
        "flagged_per_100": 100 * _share(flagged),
        "ppv": float(risks.onset_soon[known].mean()) if known.any() else float("nan"),
    }


def _warned(risks: OnsetRisks, threshold: float) -> np.ndarray:
    return np.asarray((risks.nights_before >= threshold).any(axis=1), dtype=bool)


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if len(mask) else float("nan")


def _mean(shares: object) -> float:
    values = [_share(m) for m in shares]  # type: ignore[attr-defined]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


@dataclass(frozen=True)
class Tiers:
    """The thresholds a night applies, per model (factor set): the alert's and the watch
    tier's (None: no watch tier). The defaults serve a model the manifest does not name: the
    override when one is set, else the `all` model's alert threshold."""

    alert: Mapping[str, float]
    watch: Mapping[str, float | None]
    default_alert: float
    default_watch: float | None
    source: str  # where the alert thresholds came from, for the log and the report

    @classmethod
    def of(
        cls,
        manifest: Mapping[str, Any],
        alert_override: float | None = None,
        watch_override: float | None = None,
    ) -> Tiers:
        """Each model's thresholds as `train` stored them in the manifest; a setting, when
        set, overrides every model's (PRCRS_ALERT_THRESHOLD, PRCRS_WATCH_THRESHOLD). A model
        the manifest gives no threshold (trained before per-model thresholds) is refused
        unless PRCRS_ALERT_THRESHOLD is set: no threshold is typed in the code.

        >>> models = [{"factor_set": "all", "thresholds": {"alert": 0.25, "watch": 0.1}},
        ...           {"factor_set": "biochem", "thresholds": {"alert": 0.15, "watch": None}}]
        >>> tiers = Tiers.of({"models": models})
        >>> tiers.alert_for("biochem"), tiers.watch_for("all"), tiers.watch_for("biochem")
        (0.15, 0.1, None)
        >>> Tiers.of({"models": models}, alert_override=0.3).alert_for("biochem")
        0.3
        >>> Tiers.of({"models": [{"factor_set": "all"}]})
        Traceback (most recent call last):
        ...
        ValueError: no alert threshold in the manifest: retrain (prcrs-batch train) or set ...
        """
        models = list(dict.fromkeys(str(m["factor_set"]) for m in manifest.get("models", [])))
        stored = {
            str(m["factor_set"]): m["thresholds"]
            for m in manifest.get("models", [])
            if isinstance(m.get("thresholds"), Mapping)
        }
        if alert_override is not None:
            watch = {} if watch_override is not None else _watch(stored)
            return cls({}, watch, alert_override, watch_override, "PRCRS_ALERT_THRESHOLD")
        missing = [fs for fs in models if fs not in stored]
        if missing or not stored:
            which = f" for {', '.join(missing)}" if stored else ""
            raise ValueError(
                f"no alert threshold in the manifest{which}: retrain (prcrs-batch train) "
                "or set PRCRS_ALERT_THRESHOLD"
            )
        alert = {fs: float(t["alert"]) for fs, t in stored.items()}
        watch = {} if watch_override is not None else _watch(stored)
        headline = alert.get("all", max(alert.values()))
        return cls(alert, watch, headline, watch_override, "the models' manifest")

    @classmethod
    def fixed(cls, alert: float, watch: float | None = None) -> Tiers:
        """One alert (and watch) threshold for every model.

        >>> Tiers.fixed(0.3).alert_for("biochem"), Tiers.fixed(0.3, 0.2).watch_for("all")
        (0.3, 0.2)
        """
        return cls({}, {}, alert, watch, "fixed")

    def alert_for(self, model: str | None) -> float:
        return self.alert.get(model or "", self.default_alert)

    def watch_for(self, model: str | None) -> float | None:
        """A model's watch threshold; None without a watch tier (or one at or above the
        alert's, which would be empty)."""
        value = self.watch.get(model or "", self.default_watch)
        return value if value is not None and value < self.alert_for(model) else None

    @property
    def headline(self) -> float:
        """The alert threshold the report states: the `all` model's, which scores nearly
        every patient (any patient with enough labs)."""
        return self.alert_for("all")


def _watch(stored: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    return {fs: _optional(t.get("watch")) for fs, t in stored.items()}


def _optional(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
