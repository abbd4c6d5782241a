"""The OMOP code lists: which LOINC codes are which analyte, which codes are a CAR-T infusion,
which codes carry a CRS grade. Versioned CSV files in the package (`omop_loinc.csv`,
`omop_infusions.csv`, `omop_crs_grades.csv`, each row with its source and verification
status); a site replaces any of them with a file of the same name in PRCRS_OMOP_CODES_DIR.

Codes are matched through the site's own `concept` table by (vocabulary_id, concept_code),
never by concept id: the queries in sql/omop/ get them as bound parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prcrs_batch.resources import bundled_data
from prcrs_batch.task.panel import ANALYTE_CODES

LOINC_FILE = "omop_loinc.csv"
INFUSION_FILE = "omop_infusions.csv"
GRADE_FILE = "omop_crs_grades.csv"
# An expanding list must never be empty (SQLite cannot compare a row value with an empty
# set): each list carries this pair, which no vocabulary holds.
NO_CODE = ("-", "-")
MAX_GRADE = 4


class CodeListError(ValueError):
    """A code list file is malformed (unknown analyte, a code listed twice, bad grade)."""


@dataclass(frozen=True)
class CodeLists:
    """The three code lists as read (string columns, blanks as "")."""

    labs: pd.DataFrame  # analyte, vocabulary_id (LOINC, or a site's), concept_code, name, ...
    infusions: pd.DataFrame  # domain (drug|procedure), vocabulary_id, concept_code, ...
    grades: pd.DataFrame  # domain (condition|observation), vocabulary_id, concept_code, grade

    def analyte_of(self) -> dict[str, str]:
        """Lab concept code (LOINC, or a site's code) -> panel analyte code."""
        return dict(zip(self.labs["concept_code"], self.labs["analyte"], strict=True))

    def lab_codes(self, analyte: str) -> list[tuple[str, str]]:
        """(vocabulary_id, concept_code) of one analyte, in file order (the first: the
        loader's)."""
        rows = self.labs[self.labs["analyte"] == analyte]
        return list(zip(rows["vocabulary_id"], rows["concept_code"], strict=True))


def code_file(name: str, codes_dir: Path | None) -> Path:
    """The site's file in `codes_dir` when present, else the bundled one.

    >>> code_file(LOINC_FILE, None).name
    'omop_loinc.csv'
    """
    if codes_dir is not None and (Path(codes_dir) / name).is_file():
        return Path(codes_dir) / name
    return bundled_data(name)


def _read(name: str, codes_dir: Path | None, columns: list[str]) -> pd.DataFrame:
    path = code_file(name, codes_dir)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False).map(str.strip)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CodeListError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def read_code_lists(codes_dir: Path | None = None) -> CodeLists:
    """Read and check the three code lists (PRCRS_OMOP_CODES_DIR's files first).

    >>> codes = read_code_lists()
    >>> codes.analyte_of()["26881-3"], codes.lab_codes("creatinine")
    ('il6', [('LOINC', '14682-9'), ('LOINC', '2160-0')])
    """
    labs = _read(LOINC_FILE, codes_dir, ["analyte", "vocabulary_id", "concept_code", "verified"])
    labs = labs[labs["concept_code"] != ""]
    unknown = sorted(set(labs["analyte"]) - set(ANALYTE_CODES))
    if unknown:
        raise CodeListError(f"{LOINC_FILE}: unknown analyte(s) {', '.join(unknown)}")
    twice = sorted(set(labs.loc[labs["concept_code"].duplicated(), "concept_code"]))
    if twice:
        raise CodeListError(f"{LOINC_FILE}: code(s) listed twice: {', '.join(twice)}")
    infusions = _read(INFUSION_FILE, codes_dir, ["domain", "vocabulary_id", "concept_code"])
    bad = sorted(set(infusions["domain"]) - {"drug", "procedure"})
    if bad:
        raise CodeListError(f"{INFUSION_FILE}: domain must be drug or procedure, not {bad}")
    grades = _read(GRADE_FILE, codes_dir, ["domain", "vocabulary_id", "concept_code", "grade"])
    bad = sorted(set(grades["domain"]) - {"condition", "observation"})
    if bad:
        raise CodeListError(f"{GRADE_FILE}: domain must be condition or observation, not {bad}")
    conditions = grades[grades["domain"] == "condition"]
    valid = {str(g) for g in range(MAX_GRADE + 1)}
    if not set(conditions["grade"]) <= valid:
        raise CodeListError(f"{GRADE_FILE}: a condition's grade must be 0-{MAX_GRADE}")
    return CodeLists(labs=labs, infusions=infusions, grades=grades)


def _pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    pairs = list(zip(frame["vocabulary_id"], frame["concept_code"], strict=True))
    return [*pairs, NO_CODE]


def query_params(codes: CodeLists, patient_id_column: str) -> dict[str, object]:
    """The bound parameters the queries of sql/omop/ take besides the night's window.

    >>> params = query_params(read_code_lists(), "person_source_value")
    >>> ("ICD10CM", "D89.833") in params["grade_3_codes"], params["patient_id_column"]
    (True, 'person_source_value')
    """
    infusions, grades = codes.infusions, codes.grades
    conditions = grades[grades["domain"] == "condition"]
    params: dict[str, object] = {
        "patient_id_column": patient_id_column,
        "lab_codes": _pairs(codes.labs),
        "drug_codes": _pairs(infusions[infusions["domain"] == "drug"]),
        "procedure_codes": _pairs(infusions[infusions["domain"] == "procedure"]),
        "grade_codes": _pairs(conditions),
        "grade_value_codes": _pairs(grades[grades["domain"] == "observation"]),
    }
    for grade in range(MAX_GRADE + 1):
        params[f"grade_{grade}_codes"] = _pairs(conditions[conditions["grade"] == str(grade)])
    return params


EXPANDING = {
    "lab_codes",
    "drug_codes",
    "procedure_codes",
    "grade_codes",
    "grade_value_codes",
    *(f"grade_{g}_codes" for g in range(MAX_GRADE + 1)),
}
