"""Files handed to `score` and `load-cohort` are read strictly: a row with the wrong number
of fields, another delimiter, a binary file or a patient fact that is not one is refused in
one line naming the file and the line; columns are never shifted. Nothing is scored or
loaded (these errors come before the models and the database)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from prcrs_batch.app.cli import main
from tests.support import TEST_DATA

LABS = "patient_id,collected_at,analyte,value,unit\n"
GOOD_ROW = "P1,2024-11-08 06:00,il6,1240,pg/mL\n"
COHORT_HEADER = (TEST_DATA / "tiny_cohort.csv").read_text().splitlines()[0]
COHORT_ROW = (TEST_DATA / "tiny_cohort.csv").read_text().splitlines()[1]
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"


def one_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture
def no_models(settings_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Models that are not there: reaching them would be a different error."""
    monkeypatch.setenv("PRCRS_MODEL_DIR", str(settings_env / "no-models"))
    return settings_env


def score(*args: str) -> Result:
    return CliRunner().invoke(main, ["score", *args, "--as-of", "2024-11-08"])


def load_cohort(path: Path) -> Result:
    return CliRunner().invoke(main, ["load-cohort", str(path)])


# --- score ------------------------------------------------------------------------------


def test_score_refuses_a_row_with_an_extra_field_naming_its_line(no_models):
    # unquoted "1,240": pandas would make patient_id the index and shift every column
    path = write(no_models, "labs.csv", LABS + "P1,2024-11-08 06:00,il6,1,240,pg/mL\n")
    line = one_line(score(str(path)))
    assert line == (
        f"Error: {path}, line 2: 6 fields where the header has 5: a value holding a comma "
        "must be in double quotes"
    )


def test_score_refuses_a_short_row_after_good_ones(no_models):
    path = write(no_models, "labs.csv", LABS + GOOD_ROW + "\n" + "P1,2024-11-08 06:00,crp\n")
    assert f"{path}, line 4: 3 fields where the header has 5" in one_line(score(str(path)))


def test_score_names_the_delimiter_it_expects(no_models):
    path = write(no_models, "labs.csv", LABS.replace(",", ";") + GOOD_ROW.replace(",", ";"))
    line = one_line(score(str(path)))
    assert line == (
        f"Error: {path}: the header is separated by semicolons; expected commas: "
        "patient_id,collected_at,analyte,value,unit"
    )


def test_score_on_a_binary_file_names_it(no_models):
    path = write(no_models, "labs.png", PNG)
    assert one_line(score(str(path))) == (
        f"Error: {path}: a binary file, not text: give a comma-separated (CSV) text file"
    )


def test_score_on_a_file_that_is_not_utf8_names_it_and_the_line(no_models):
    path = write(
        no_models, "labs.csv", (LABS + "P1,2024-11-08 06:00,il6,<2 µg,pg/mL\n").encode("latin-1")
    )
    line = one_line(score(str(path)))
    assert line.startswith(f"Error: {path}, line 2: not UTF-8 text")


def test_score_reads_standard_input_strictly_too(no_models):
    result = CliRunner().invoke(
        main, ["score", "-", "--as-of", "2024-11-08"], input=LABS + "P1,x,il6,1,2,3,pg/mL\n"
    )
    assert one_line(result).startswith("Error: <stdin>, line 2: 7 fields where the header has 5")


def test_score_names_a_json_line_that_is_not_an_object(no_models):
    path = write(no_models, "labs.jsonl", '{"patient_id": "P1"}\n\n["P1", "il6"]\n')
    assert one_line(score(str(path), "--format", "jsonl")) == (
        f"Error: {path}, line 3: a JSON list, not an object"
    )


# --- load-cohort ------------------------------------------------------------------------


def test_load_cohort_refuses_a_row_with_an_extra_field(settings_env):
    path = write(settings_env, "cohort.csv", f"{COHORT_HEADER}\n{COHORT_ROW}\n{COHORT_ROW},1\n")
    line = one_line(load_cohort(path))
    assert line.startswith(f"Error: {path}, line 3: ")
    assert "fields where the header has" in line


def test_load_cohort_names_the_delimiter(settings_env):
    path = write(settings_env, "cohort.csv", COHORT_HEADER.replace(",", ";") + "\n")
    assert "separated by semicolons; expected commas: patient_id,infusion_date,day" in one_line(
        load_cohort(path)
    )


def test_load_cohort_on_a_binary_file_names_it(settings_env):
    path = write(settings_env, "cohort.xlsx", b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)))
    assert one_line(load_cohort(path)) == (
        f"Error: {path}: a binary file, not text: give a comma-separated (CSV) text file"
    )


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("day", "zero", "a whole number of days since the infusion"),
        ("day", "1.5", "a whole number of days since the infusion"),
        ("infusion_date", "2023-13-45", "a date (YYYY-MM-DD)"),
        ("crs_grade", "5", "a CRS grade 0-4 or empty"),
        ("age", "fifty", "a number"),
    ],
)
def test_load_cohort_names_the_column_and_line_of_a_bad_fact(settings_env, column, value, expected):
    header = COHORT_HEADER.split(",")
    bad = COHORT_ROW.split(",")
    bad[header.index(column)] = value
    path = write(
        settings_env,
        "cohort.csv",
        f"{COHORT_HEADER}\n{COHORT_ROW}\n{COHORT_ROW}\n{','.join(bad)}\n",
    )
    assert one_line(load_cohort(path)) == (
        f"Error: {path}, line 4: column {column} is '{value}', not {expected}"
    )
    assert not list(settings_env.glob("*.db"))  # refused before the warehouse is touched
