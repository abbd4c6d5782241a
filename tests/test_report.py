"""The alert report: who is flagged, on which model, and that the HTML is safe mail HTML."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, time, timedelta

import pandas as pd
import pytest

from prcrs_batch.monitoring.watch import Watch
from prcrs_batch.nightly.alert_states import HISTORY_DAYS
from prcrs_batch.nightly.explanations import LabLine
from prcrs_batch.report.outbox import write_html
from prcrs_batch.report.render import (
    MAX_CARDS,
    MAX_CHARTS,
    Report,
    build_failure_notice,
    build_report,
)
from tests.support.report_data import (
    AS_OF,
    EMPTY_HISTORY,
    THRESHOLD,
    make_data_issues,
    make_history,
    make_patients,
    make_run,
    make_scores,
    render_report,
    summarise,
)

HOSTILE_ID = "<script>alert(1)</script>"


def render(spec, *, ids=None, history=EMPTY_HISTORY, grades=None, threshold=THRESHOLD) -> Report:
    ids = ids if ids is not None else list(spec)
    return render_report(
        run=make_run(len(ids)),
        patients=make_patients(ids, grades),
        scores=make_scores(spec),
        history=history,
        data_issues=make_data_issues(),
        threshold=threshold,
    )


def alert_ids(report: Report) -> list[str]:
    return re.findall(r"^(?:NEW|RISING|CONTINUING|FALLING): (.+)$", report.text, flags=re.MULTILINE)


def summaries(spec, **kwargs):
    return {
        s.patient_id: s
        for s in summarise(
            make_patients(list(spec)),
            make_scores(spec),
            kwargs.get("history", EMPTY_HISTORY),
            THRESHOLD,
        )
    }


def test_report_names_exactly_the_patients_at_or_above_threshold():
    spec = {
        "SYN-AT": {"all": (0.30, 0.10, 0.10)},  # exactly at the threshold: an alert
        "SYN-BELOW": {"all": (0.2999, 0.29, 0.1)},
        "SYN-HIGH": {"all": (0.50, 0.70, 0.80)},
        "SYN-LATE": {"all": (0.05, 0.10, 0.31)},  # only the 3-day horizon crosses
        "SYN-LOW": {"all": (0.01, 0.02, 0.03), "cytokines": (0.9, 0.9, 0.9)},
        "SYN-NONE": {},  # not scorable
    }
    report = render(spec)
    assert alert_ids(report) == ["SYN-HIGH", "SYN-LATE", "SYN-AT"]  # highest first
    assert report.subject == "PrCRS 2026-11-26 - 3 alerts, 3 new" and report.n_alerts == 3
    html = report.html
    assert html.index("SYN-HIGH") < html.index("SYN-LATE") < html.index("SYN-AT")
    # the others are in the compact table, below the alerts
    for pid in ("SYN-BELOW", "SYN-LOW", "SYN-NONE"):
        assert html.index(pid) > html.index("SYN-AT")
    assert "29%" in html  # 0.2999 is rounded down so it does not look like 30%
    assert "SYN-NONE" in report.text and "not scorable" in report.text


def test_single_alert_subject():
    report = render({"SYN-1": {"all": (0.4, 0.4, 0.4)}, "SYN-2": {"all": (0.1, 0.1, 0.1)}})
    assert report.subject == "PrCRS 2026-11-26 - 1 alert, 1 new"


def test_recommended_model_falls_through_the_order():
    got = summaries(
        {
            # `all` lacks inputs: the next in order, no_cytokines, is used
            "SYN-FALL": {
                "all": "insufficient",
                "no_cytokines": (0.4, 0.5, 0.6),
                "biochem": (0.1,) * 3,
            },
            # `all` has inputs, so the high cytokines model does not raise an alert
            "SYN-ALL": {"all": (0.1, 0.1, 0.1), "cytokines": (0.9, 0.9, 0.9)},
            # `all` errors at one horizon: the first model ok at every horizon wins
            "SYN-PART": {
                "all": {1: 0.9, 2: 0.9, 3: "error"},
                "no_cytokines": "insufficient",
                "cytokines": (0.2, 0.2, 0.2),
            },
            # nothing ok at every horizon: the first ok at any horizon
            "SYN-ANY": {
                "all": "insufficient",
                "no_cytokines": {1: 0.35, 2: "error", 3: "error"},
                "cytokines": {1: "error", 2: 0.1, 3: "error"},
            },
            "SYN-NONE": {},
        }
    )
    fall = got["SYN-FALL"]
    assert fall.model == "no_cytokines" and fall.alert
    assert fall.risks == (0.4, 0.5, 0.6)
    assert (fall.inputs_observed, fall.inputs_expected) == (34, 35)
    assert "skipped all: 2 of 42 observed, needs ≥ 5" in fall.why
    assert [m.model for m in fall.others] == [
        "all",
        "cytokines",
        "biochem_blood",
        "biochem",
        "blood_routine",
    ]

    assert got["SYN-ALL"].model == "all" and not got["SYN-ALL"].alert
    assert got["SYN-ALL"].why.startswith(
        "first model in the recommended order with enough inputs: "
        "all 42 inputs needs ≥ 5 observed; 41 of 42 observed"
    )
    assert got["SYN-PART"].model == "cytokines" and not got["SYN-PART"].alert
    assert "all: model error" in got["SYN-PART"].why
    any_ = got["SYN-ANY"]
    assert any_.model == "no_cytokines" and any_.alert and any_.risks == (0.35, None, None)
    assert "not scored at every horizon" in any_.why
    none = got["SYN-NONE"]
    assert none.model is None and not none.alert
    assert none.why.startswith("too few inputs")


def test_alert_card_shows_the_data_the_flag_rests_on():
    history = make_history("SYN-FALL", "no_cytokines")
    report = render(
        {"SYN-FALL": {"all": "insufficient", "no_cytokines": (0.4, 0.5, 0.6)}},
        history=history,
        grades={"SYN-FALL": 1},
    )
    for part in (report.html, report.text):
        assert "34 of 35 inputs" in part
        assert "2026-11-26 23:59" in part  # the data cut-off
        assert "no_cytokines" in part and "40%" in part and "50%" in part and "60%" in part
        assert "0b7e2c8e-run-test" in part and "prcrs-2026.11-test" in part
        assert "Data-quality issues: 4" in part and "implausible_value 2" in part
        assert "yesterday: highest 27%, tonight 60%" in part  # 0.05 + 0.16 + 0.06
        assert "CRS grade 1" in part


def test_trend_chart_is_a_small_png_referenced_by_cid():
    spec = {
        "SYN-A": {"all": (0.6, 0.6, 0.6)},
        "SYN-B": {"all": (0.5, 0.5, 0.5)},
        "SYN-NEW": {"all": (0.4, 0.4, 0.4)},  # no earlier run: no chart
    }
    history = pd.concat([make_history("SYN-A", "all"), make_history("SYN-B", "all", nights=20)])
    # rows for tonight or later in history are ignored, not double counted
    future = make_history("SYN-A", "all", nights=1).assign(as_of=AS_OF + timedelta(days=1))
    report = render(spec, history=pd.concat([history, future]))
    assert len(report.images) == 2
    referenced = set(re.findall(r'src="cid:([^"]+)"', report.html))
    assert referenced == set(report.images)
    for png in report.images.values():
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(png) < 40_000
    assert f"over up to {HISTORY_DAYS} nights" in report.html
    states = re.findall(r"^(\w+): (SYN-\w+)$", report.text, flags=re.MULTILINE)
    # SYN-A was under the threshold last night (27%): new; SYN-B fell from 87%
    assert states == [("NEW", "SYN-A"), ("NEW", "SYN-NEW"), ("FALLING", "SYN-B")]


def test_html_is_escaped_and_self_contained():
    report = render({HOSTILE_ID: {"all": (0.9, 0.9, 0.9)}, "SYN-&-2": {"all": (0.1,) * 3}})
    assert alert_ids(report) == [HOSTILE_ID]  # the text part is not HTML-escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report.html
    assert "SYN-&amp;-2" in report.html
    for html in (report.html, report.complete_html):
        lowered = html.lower()
        assert "<script" not in lowered and "<link" not in lowered
        # one block of shared classes, in the head (where mail clients keep it)
        assert lowered.count("<style") == 1 and lowered.index("</style>") < lowered.index("<body")
        assert "http://" not in lowered and "https://" not in lowered
        assert "@import" not in lowered and "url(" not in lowered
        assert "display:flex" not in lowered and "display:grid" not in lowered
    assert "&lt;" not in report.text and "&amp;" not in report.text


def test_all_clear_night_gets_a_short_report():
    report = render({"SYN-1": {"all": (0.1, 0.2, 0.29)}, "SYN-2": {}})
    assert report.subject == "PrCRS 2026-11-26 - all clear"
    assert report.images == {}
    assert alert_ids(report) == []
    assert "all clear" in report.html and "SYN-1" in report.html
    assert "No patient reached 30%" in report.text


def test_empty_cohort_is_all_clear():
    empty = pd.DataFrame()
    report = render_report(
        run=make_run(0, n_data_issues=0),
        patients=empty,
        scores=empty,
        history=empty,
        data_issues={},
    )
    assert report.subject.endswith("all clear")
    assert "0 active patients" in report.text


def test_write_report_inlines_images_and_replaces_a_rerun(tmp_path):
    report = render({"SYN-A": {"all": (0.6, 0.6, 0.6)}}, history=make_history("SYN-A", "all"))
    path = write_html(report, tmp_path / "reports", AS_OF, "run/1")
    assert path.name == "prcrs-2026-11-26-run_1.html"
    html = path.read_text("utf-8")
    assert "cid:" not in html and html.count("data:image/png;base64,") == 1
    again = write_html(Report("s", "<p>rerun</p>", "t", {}), tmp_path / "reports", AS_OF, "run/1")
    assert again == path and path.read_text("utf-8") == "<p>rerun</p>"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_failure_notice_masks_secrets_and_escapes(tmp_path):
    run = replace(make_run(), run_id="r-9", model_version="v1")
    error = "OperationalError <b>x</b> postgresql://batch:hunter2@db:5432/wh password=hunter3"
    notice = build_failure_notice(run=run, error=error)
    assert notice.subject == "PrCRS 2026-11-26 - RUN FAILED, no risk scores"
    for part in (notice.html, notice.text, notice.subject):
        assert "hunter2" not in part and "hunter3" not in part
    assert "&lt;b&gt;x&lt;/b&gt;" in notice.html and "<b>x</b>" in notice.text
    assert "absence of alerts" in notice.text
    # with no templates deployed the built-in fallback still produces a notice
    bare = build_failure_notice(run=run, error="boom", template_dir=tmp_path)
    assert "boom" in bare.text and "boom" in bare.html


@pytest.mark.parametrize("risk,alert", [(0.30, True), (0.2999999, False), (1.0, True)])
def test_threshold_boundary(risk, alert):
    got = summaries({"SYN-B": {"all": (risk, 0.0, 0.0)}})
    assert got["SYN-B"].alert is alert


def test_only_the_highest_alerts_get_charts_and_history_types_are_normalised():
    ids = [f"SYN-{i:02d}" for i in range(MAX_CHARTS + 2)]
    spec = {pid: {"all": (0.9 - 0.01 * i,) * 3} for i, pid in enumerate(ids)}
    history = pd.concat([make_history(pid, "all", nights=2) for pid in ids])
    history["as_of"] = history["as_of"].map(lambda d: d.isoformat())  # as text from a DB
    report = render(spec, history=history)
    assert len(report.images) == MAX_CHARTS
    assert alert_ids(report)[:2] == ["SYN-00", "SYN-01"]
    charted = set(re.findall(r'src="cid:trend-\d+', report.complete_html))
    assert len(charted) == MAX_CHARTS  # the 2 lowest alerts have none
    in_mail = set(re.findall(r'src="cid:trend-\d+', report.html))
    assert len(in_mail) == MAX_CARDS and in_mail < charted  # the mail's cards only


def test_patients_already_severe_are_listed_apart_never_as_alerts():
    spec = {
        "SYN-HOT": {"all": (0.5, 0.6, 0.7)},
        "SYN-SEVERE": "severe",
        "SYN-QUIET": {"all": (0.01, 0.02, 0.03)},
    }
    report = render(spec, grades={"SYN-SEVERE": 3})
    assert alert_ids(report) == ["SYN-HOT"]
    for part in (report.html, report.text):
        assert "Already severe, CRS grade" in part and "SYN-SEVERE" in part
    others = report.text.split("Other active patients")[1]
    assert "SYN-SEVERE" not in others and "SYN-QUIET" in others
    assert "not scorable" not in report.text.split("\n")[2]  # the severe patient is not counted so


def test_the_nights_notes_head_the_report():
    run = replace(make_run(1), notes=["CRS grades unavailable: crs_assessments is missing"])
    report = build_report(
        run=run,
        summaries=summarise(
            make_patients(["SYN-1"]), make_scores({"SYN-1": {}}), EMPTY_HISTORY, THRESHOLD
        ),
        history=EMPTY_HISTORY,
        data_issues={},
        threshold=THRESHOLD,
    )
    for part in (report.html, report.text):
        assert "CRS grades unavailable: crs_assessments is missing" in part


def _card_with_labs(labs, **kwargs):  # type: ignore[no-untyped-def]
    spec = {"SYN-LAB": {"all": (0.4, 0.5, 0.6)}, "SYN-Q": {"all": (0.01, 0.02, 0.03)}}
    summaries_ = summarise(
        make_patients(list(spec), kwargs.get("grades")),
        make_scores(spec),
        EMPTY_HISTORY,
        THRESHOLD,
    )
    if "grade_on" in kwargs:
        summaries_ = [replace(s, crs_grade_on=kwargs["grade_on"]) for s in summaries_]
    return build_report(
        run=make_run(2),
        summaries=summaries_,
        history=EMPTY_HISTORY,
        data_issues={},
        threshold=THRESHOLD,
        reasons={"SYN-LAB": labs},
        watch=kwargs.get("watch"),
    )


def test_each_lab_shows_the_points_it_adds_even_when_it_fell():
    morning = datetime.combine(AS_OF, time(6, 10))
    labs = (
        LabLine(
            "il6", "Interleukin-6", 1240.0, "pg/mL", morning, 85.0, morning - timedelta(1), 0.14, 3
        ),
        LabLine(
            "il2", "Interleukin-2", 36.3, "pg/mL", morning, 36.8, morning - timedelta(1), 0.04, 3
        ),
    )
    report = _card_with_labs(labs)
    for part in (report.html, report.text):  # read the morning after the data day AS_OF
        assert (
            "Interleukin-6 1,240 pg/mL (+14 points), 06:10 yesterday, up from 85 on 25 Nov" in part
        )
        # a falling lab that still raised the risk says so by its value
        assert (
            "Interleukin-2 36.3 pg/mL (+4 points), 06:10 yesterday, down from 36.8 on 25 Nov"
            in part
        )


def test_a_crs_grade_older_than_two_days_is_dated_in_the_tables():
    report = _card_with_labs(
        (), grades={"SYN-LAB": 1, "SYN-Q": 1}, grade_on=AS_OF - timedelta(days=5)
    )
    table = report.html.split("Other active patients")[1]
    assert "<td>1 (21 Nov)</td>" in table
    assert "- SYN-Q, 5, 1 (21 Nov), " in report.text
    recent = _card_with_labs(
        (), grades={"SYN-LAB": 1, "SYN-Q": 1}, grade_on=AS_OF - timedelta(days=2)
    )
    assert "<td>1</td>" in recent.html.split("Other active patients")[1]


def test_the_footer_speaks_plainly_and_model_names_sit_in_the_detail_line():
    watch = Watch(
        performance=pd.DataFrame(
            [
                {
                    "model": "all",
                    "horizon_days": 1,
                    "window_days": 30,
                    "n_predictions": 200,
                    "n_events": 4,
                    "mean_predicted": 0.035,
                    "observed_rate": 0.02,
                }
            ]
        ),
        drift=pd.DataFrame([{"analyte": "il6", "psi": 0.41, "drifting": True}]),
        onsets=[(30, 4, 3, 4), (90, 0, 0, 0)],
    )
    report = _card_with_labs((), watch=watch)
    for part in (report.html, report.text):
        assert (
            "Last 30 days: 3 of 4 severe CRS onsets were alerts at least a day ahead, "
            "4 on alert or watch." in part
        )
        assert "Last 90 days: no severe CRS onset." in part
        assert "The 1-day risks of the last 30 days expected about 7 onsets; 4 came." in part
        assert "check for a unit or assay change): Interleukin-6." in part
        assert "observed" not in part and "PSI" not in part
    [detail] = re.findall(r'<div class="det">(.*?)</div>', report.html)
    assert "Model all: 41 of 42 inputs" in detail
    assert report.html.count("Model all:") == 1
