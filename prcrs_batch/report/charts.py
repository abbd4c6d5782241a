"""Stage 7: the trend chart of an alert, as PNG bytes. The only matplotlib on the nightly path.

The chart carries no words (legend 1d/2d/3d, percentages, month-day dates), so it needs no
font beyond matplotlib's own in any report language."""

from __future__ import annotations

import io
from datetime import date

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from prcrs_batch.nightly.alerts import PatientSummary, optional_float
from prcrs_batch.task.panel import HORIZONS

TREND_SIZE_PX = (300, 100)  # CSS size of the chart; the PNG is drawn at 2x for phones


def trend_series(
    summary: PatientSummary, trend: pd.DataFrame, as_of: date
) -> tuple[list[date], list[list[float | None]]]:
    """Nights (earlier runs, then tonight) and the risk per horizon on each night.

    `trend` holds the patient's earlier nights on its model (`alerts.recent_history` rows).
    """
    risk_at = {
        (night.date(), int(horizon)): optional_float(risk)
        for night, horizon, risk in trend[["as_of", "horizon_days", "calibrated_risk"]].itertuples(
            index=False
        )
    }
    nights = [*sorted({night for night, _ in risk_at}), as_of]
    for i, horizon in enumerate(HORIZONS):
        risk_at[(as_of, horizon)] = summary.risks[i]
    return nights, [[risk_at.get((night, h)) for night in nights] for h in HORIZONS]


class TrendChart:
    """A tiny line chart of one model's risk per horizon, night by night.

    One Agg figure is drawn once and reused for every alerted patient: building the
    axes and legend costs more than drawing the lines.
    """

    def __init__(self, threshold: float) -> None:
        width, height = TREND_SIZE_PX
        self.figure = Figure(figsize=(width / 100, height / 100), dpi=200)  # 2x for phones
        FigureCanvasAgg(self.figure)
        ax = self.figure.add_axes((0.13, 0.2, 0.85, 0.74))
        shades = ("#08306b", "#2171b5", "#6baed6")
        self.lines = [
            ax.plot([], [], color=shade, linewidth=1.1, marker="o", markersize=1.8, label=f"{h}d")[
                0
            ]
            for h, shade in zip(HORIZONS, shades, strict=True)
        ]
        ax.axhline(threshold, color="#c62828", linewidth=0.8, linestyle="--")
        ax.set_ylim(0, 1)
        ax.set_yticks([0, threshold, 1])
        ax.set_yticklabels(["0", f"{threshold * 100:g}%", "100%"])
        ax.tick_params(labelsize=6, length=2, pad=1)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.legend(
            loc="upper left",
            fontsize=5.5,
            frameon=False,
            ncol=3,
            handlelength=1.2,
            borderaxespad=0.1,
            columnspacing=0.8,
        )
        self.ax = ax

    def png(self, nights: list[date], series: list[list[float | None]]) -> bytes:
        for line, values in zip(self.lines, series, strict=True):
            points = [(i, v) for i, v in enumerate(values) if v is not None]
            line.set_data([i for i, _ in points], [v for _, v in points])
        self.ax.set_xlim(-0.3, len(nights) - 0.7)
        # Numbers only (month-day): the chart reads the same in every report language and
        # needs no CJK font.
        ticks = [0] if len(nights) == 1 else [0, len(nights) - 1]
        self.ax.set_xticks(ticks)
        self.ax.set_xticklabels([nights[i].strftime("%m-%d") for i in ticks])
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", metadata={"Software": None})
        return buffer.getvalue()
