"""Each kind of bad lab value, and what the job makes of it."""

import math

import pandas as pd
import pytest

from prcrs_batch.features import cleaning

WHEN = pd.Timestamp("2026-11-26 06:00")

# (analyte, raw value, unit, expected value in model units or None for missing, expected reason)
CASES = [
    ("il6", "12.5", "pg/mL", 12.5, None),
    ("il6", 12.5, "pg/mL", 12.5, None),
    ("il6", "<0.5", "pg/mL", 0.5, cleaning.CENSORED),
    ("il6", "< 0.5", "pg/mL", 0.5, cleaning.CENSORED),
    ("il6", ">5000", "pg/mL", 5000.0, cleaning.CENSORED),
    ("il6", "<=2", "pg/mL", 2.0, cleaning.CENSORED),
    ("il6", "≥ 7", "pg/mL", 7.0, cleaning.CENSORED),
    ("crp", "hemolyzed", "mg/L", None, cleaning.NO_NUMBER),
    ("crp", "see comment", "mg/L", None, cleaning.NO_NUMBER),
    ("crp", "", "mg/L", None, cleaning.NO_NUMBER),
    ("crp", None, "mg/L", None, cleaning.NO_NUMBER),
    ("crp", "   ", "mg/L", None, cleaning.NO_NUMBER),
    ("crp", "NaN", "mg/L", None, cleaning.NO_NUMBER),
    ("crp", "inf", "mg/L", None, cleaning.NO_NUMBER),
    ("crp", "12,5", "mg/L", None, cleaning.NO_NUMBER),
    ("crp", "-3", "mg/L", None, cleaning.NO_NUMBER),
    ("crp", "1.2e2", "mg/L", 120.0, None),
    ("crp", " 7.0 ", "mg/L", 7.0, None),
    ("crp", "2.5", "mg/dL", 25.0, None),
    ("glucose", "90", "mg/dL", 90 / 18.016, None),
    ("calcium", "9.0", "mg/dL", 9.0 / 4.008, None),
    ("creatinine", "1.0", "mg/dL", 88.42, None),
    ("albumin", "3.5", "g/dL", 35.0, None),
    ("fibrinogen", "300", "mg/dL", 3.0, None),
    ("hemoglobin", "9.8", "g/dL", 98.0, None),
    ("hemoglobin", "9.8", "g/L", None, cleaning.IMPLAUSIBLE),
    ("neutrophil_pct", "73", "%", 0.73, None),
    ("platelet", "150000", "/uL", 150.0, None),
    ("platelet", "150", "x10^9/L", 150.0, None),
    ("platelet", "150", "K/uL", 150.0, None),
    ("wbc", "5.1", "furlongs", None, cleaning.UNKNOWN_UNIT),
    ("glucose", "5.0", "mmol/L", 5.0, None),
    ("glucose", "5.0", None, 5.0, None),
    ("sodium", "14.5", "mmol/L", None, cleaning.IMPLAUSIBLE),
    ("sodium", "141", "mEq/L", 141.0, None),
    ("chloride", "15.2", None, None, cleaning.IMPLAUSIBLE),
    ("chloride", "101", "mmol/L", 101.0, None),
    ("pt", "1.1", "s", None, cleaning.IMPLAUSIBLE),
    ("aptt", "3", "sec", None, cleaning.IMPLAUSIBLE),
    ("rbc", "99.7", "10^12/L", None, cleaning.IMPLAUSIBLE),
    ("potassium", "42", "mmol/L", None, cleaning.IMPLAUSIBLE),
    ("d_dimer", "500", "ng/mL FEU", 0.5, None),
    ("ferritin", "800", "ug/L", 800.0, None),
    # UCUM spellings as an OMOP CDM carries them: annotations in braces read, D-dimer's kept
    ("d_dimer", "1.2", "mg/L{FEU}", 1.2, None),
    ("d_dimer", "0.6", "mg/L{DDU}", None, cleaning.UNKNOWN_UNIT),
    ("platelet", "150", "10*3/uL{cells}", 150.0, None),
    ("rbc", "3.1", "10*6/uL", 3.1, None),
]


@pytest.mark.parametrize(("analyte", "raw", "unit", "expected", "reason"), CASES)
def test_each_bad_value(analyte, raw, unit, expected, reason):
    frame = pd.DataFrame(
        [{"patient_id": "p1", "collected_at": WHEN, "analyte": analyte, "value": raw, "unit": unit}]
    )
    clean, issues = cleaning.clean_labs(frame)
    if expected is None:
        assert clean.empty
    else:
        assert len(clean) == 1
        assert math.isclose(clean["value"].iloc[0], expected, rel_tol=1e-9)
    assert issues["reason"].tolist() == ([reason] if reason else [])


def test_row_level_problems():
    frame = pd.DataFrame(
        [
            {
                "patient_id": None,
                "collected_at": WHEN,
                "analyte": "il6",
                "value": "5",
                "unit": None,
            },
            {
                "patient_id": "  ",
                "collected_at": WHEN,
                "analyte": "il6",
                "value": "5",
                "unit": None,
            },
            {
                "patient_id": "p1",
                "collected_at": WHEN,
                "analyte": "il99",
                "value": "5",
                "unit": None,
            },
            {
                "patient_id": "p1",
                "collected_at": None,
                "analyte": "il6",
                "value": "5",
                "unit": None,
            },
            {
                "patient_id": "p1",
                "collected_at": WHEN + pd.Timedelta(days=2),
                "analyte": "il6",
                "value": "5",
                "unit": None,
            },
            {
                "patient_id": "p2",
                "collected_at": WHEN,
                "analyte": "crp",
                "value": "10",
                "unit": "mg/L",
            },
            {
                "patient_id": "p2",
                "collected_at": WHEN,
                "analyte": "crp",
                "value": "10.0",
                "unit": "mg/L",
            },
            {
                "patient_id": "p3",
                "collected_at": WHEN,
                "analyte": "crp",
                "value": "10",
                "unit": "mg/L",
            },
            {
                "patient_id": "p3",
                "collected_at": WHEN,
                "analyte": "crp",
                "value": "80",
                "unit": "mg/L",
            },
            {
                "patient_id": "p4",
                "collected_at": WHEN,
                "analyte": "crp",
                "value": "12",
                "unit": "mg/L",
            },
        ]
    )
    clean, issues = cleaning.clean_labs(frame, now=WHEN + pd.Timedelta(hours=1))
    assert sorted(issues["reason"]) == sorted(
        [
            cleaning.MISSING_PATIENT_ID,
            cleaning.MISSING_PATIENT_ID,
            cleaning.UNKNOWN_ANALYTE,
            cleaning.MISSING_TIMESTAMP,
            cleaning.FUTURE_TIMESTAMP,
            cleaning.DUPLICATE,
            cleaning.CONFLICTING_DUPLICATE,
            cleaning.CONFLICTING_DUPLICATE,
        ]
    )
    assert clean.set_index("patient_id")["value"].to_dict() == {"p2": 10.0, "p4": 12.0}


def test_one_bad_patient_does_not_touch_another():
    frame = pd.DataFrame(
        [
            {
                "patient_id": "bad",
                "collected_at": WHEN,
                "analyte": a,
                "value": "garbage",
                "unit": "??",
            }
            for a in ("il6", "crp", "ldh")
        ]
        + [
            {
                "patient_id": "good",
                "collected_at": WHEN,
                "analyte": "il6",
                "value": "30",
                "unit": "pg/mL",
            }
        ]
    )
    clean, issues = cleaning.clean_labs(frame)
    assert clean["patient_id"].tolist() == ["good"]
    assert set(issues["patient_id"]) == {"bad"}


def test_every_panel_analyte_has_a_plausible_range():
    from prcrs_batch.task.panel import ANALYTE_CODES

    assert set(cleaning.PLAUSIBLE_RANGES) == set(ANALYTE_CODES)
    assert all(low < high for low, high in cleaning.PLAUSIBLE_RANGES.values())


def _same_draw(*rows: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "patient_id": "p1",
                "collected_at": WHEN,
                "analyte": "creatinine",
                "value": v,
                "unit": u,
            }
            for v, u in rows
        ]
    )


def test_one_draw_under_two_codes_is_one_value_within_the_conversions_rounding():
    # 0.40 mg/dL x 88.42 = 35.37 umol/L: the same draw as 35.0 umol/L, reported twice
    clean, issues = cleaning.clean_labs(_same_draw(("0.40", "mg/dL"), ("35.0", "umol/L")))
    assert clean["value"].tolist() == [35.0]  # the value in the models' unit is kept
    assert issues["reason"].tolist() == [cleaning.DUPLICATE]
    # 0.60 mg/dL = 53 umol/L is another value: a conflict, neither is used
    clean, issues = cleaning.clean_labs(_same_draw(("0.60", "mg/dL"), ("35.0", "umol/L")))
    assert clean.empty
    assert issues["reason"].tolist() == [cleaning.CONFLICTING_DUPLICATE] * 2
    # in one unit, values must be equal: 35.0 and 35.5 umol/L conflict
    clean, issues = cleaning.clean_labs(_same_draw(("35.5", "umol/L"), ("35.0", "umol/L")))
    assert clean.empty and len(issues) == 2
