from datetime import date

from sqlalchemy import func, select

from prcrs_batch.devdata.cohort import load_cohort, place_in_treatment, read_cohort
from prcrs_batch.resources import bundled_data
from prcrs_batch.results.engines import make_engine
from prcrs_batch.task.panel import ANALYTE_CODES
from prcrs_batch.warehouse.contract import cart_infusions, crs_assessments, lab_results
from tests.support import TEST_DATA


def test_load_full_cohort_is_idempotent(db_url):
    cohort = read_cohort(bundled_data("cart_dev.csv"))
    engine = make_engine(db_url)
    first = load_cohort(engine, cohort)
    second = load_cohort(engine, cohort)
    assert first == second
    assert first["cart_infusions"] == 152
    assert first["crs_assessments"] == 1137
    assert first["lab_results"] == int(cohort[list(ANALYTE_CODES)].notna().sum().sum())
    engine.dispose()


def test_text_values_are_kept_as_text(db_url):
    cohort = read_cohort(TEST_DATA / "tiny_cohort.csv")
    first = cohort["patient_id"].iloc[0]
    cohort["il6"] = cohort["il6"].astype("object")
    cohort.loc[cohort.index[0], "il6"] = "<0.5"
    cohort.loc[cohort.index[0], "crp"] = "hemolyzed"
    engine = make_engine(db_url)
    load_cohort(engine, cohort)
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                lab_results.c.analyte,
                lab_results.c.value,
                lab_results.c.unit,
                lab_results.c.collected_at,
            )
            .where(lab_results.c.patient_id == first)
            .order_by(lab_results.c.collected_at)
        ).all()
    day0 = {r.analyte: r for r in rows if r.collected_at == rows[0].collected_at}
    assert day0["il6"].value == "<0.5"
    assert day0["crp"].value == "hemolyzed"
    assert day0["il6"].unit == "pg/mL"
    assert day0["il6"].collected_at.hour == 6
    engine.dispose()


def test_one_infusion_row_per_patient_with_sex_and_age(db_url):
    cohort = read_cohort(TEST_DATA / "tiny_cohort.csv")
    engine = make_engine(db_url)
    load_cohort(engine, cohort)
    with engine.connect() as connection:
        infusions = connection.execute(select(cart_infusions)).all()
        n_grades = connection.execute(
            select(func.count()).select_from(crs_assessments)
        ).scalar_one()
    assert len(infusions) == cohort["patient_id"].nunique()
    assert all(r.sex in ("female", "male") and r.age > 0 for r in infusions)
    assert n_grades == len(cohort)
    engine.dispose()


def test_place_in_treatment_ends_each_course_yesterday():
    cohort = read_cohort(TEST_DATA / "tiny_cohort.csv")
    today = date(2026, 11, 26)
    moved = place_in_treatment(cohort, today, seed=1)
    assert moved["patient_id"].nunique() == cohort["patient_id"].nunique()
    last_dates = moved.groupby("patient_id").apply(
        lambda p: p["infusion_date"].iloc[0].toordinal() + int(p["day"].max())
    )
    assert (last_dates == today.toordinal() - 1).all()
