"""The OMOP CDM v5.4 a development cohort is loaded into: its tables (the site's, or created),
and the concepts the rows name (the site's vocabulary's, or the loader's own).

Where: PRCRS_WAREHOUSE_SCHEMA, as the queries read it (warehouse/placement.py). When none of
the CDM tables is there, the loader creates them in the first schema, with the columns of the
official v5.4 DDL (OHDSI/CommonDataModel, inst/ddl/5.4/postgresql/) but without its keys:
a development warehouse. When they are all there (a site's CDM, built with the official DDL:
keys, foreign keys and an OHDSI vocabulary from Athena), it loads into them and creates
nothing; a schema holding some of them only is refused.

Concepts are looked up by (vocabulary_id, concept_code), as the queries match them:

- a vocabulary is loaded (the `vocabulary` table has Athena's row 'None'): standard concepts
  (LOINC labs, the ICD-10-PCS infusion, ICD-10-CM grades, Gender) must be there, or the load
  is refused naming them; the type concepts are OHDSI's (32817 EHR, 32856 Lab); units are UCUM
  concepts where the vocabulary has them (else 0, the unit kept in unit_source_value);
  value operators are the vocabulary's (SNOMED '<', '>', ...). Only the loader's own codes
  (vocabulary PRCRS: hbdh, il4, il17a, the daily ASTCT grade) are added, with a `vocabulary`
  row for PRCRS (and `domain` / `concept_class` rows where missing), as the foreign keys
  require: ids above 2,000,000,000 (OMOP's range for a site's concepts), or in a range the
  site gives;
- no vocabulary (the loader's own tables): every concept missing is added that way, each
  under its own vocabulary_id, and the type concepts under OHDSI's ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import (
    Column,
    Connection,
    Date,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    func,
    insert,
    select,
)

from prcrs_batch.devdata.cohort import LoadError
from prcrs_batch.warehouse.placement import Placement, bind, locate

# Each table's columns as in the v5.4 DDL: name type, "!" for NOT NULL.
_DDL = {
    "person": "person_id int!, gender_concept_id int!, year_of_birth int!, month_of_birth int, "
    "day_of_birth int, birth_datetime ts, race_concept_id int!, ethnicity_concept_id int!, "
    "location_id int, provider_id int, care_site_id int, person_source_value vc50, "
    "gender_source_value vc50, gender_source_concept_id int, race_source_value vc50, "
    "race_source_concept_id int, ethnicity_source_value vc50, ethnicity_source_concept_id int",
    "measurement": "measurement_id int!, person_id int!, measurement_concept_id int!, "
    "measurement_date date!, measurement_datetime ts, measurement_time vc10, "
    "measurement_type_concept_id int!, operator_concept_id int, value_as_number num, "
    "value_as_concept_id int, unit_concept_id int, range_low num, range_high num, "
    "provider_id int, visit_occurrence_id int, visit_detail_id int, "
    "measurement_source_value vc50, measurement_source_concept_id int, unit_source_value vc50, "
    "unit_source_concept_id int, value_source_value vc50, measurement_event_id int, "
    "meas_event_field_concept_id int",
    "drug_exposure": "drug_exposure_id int!, person_id int!, drug_concept_id int!, "
    "drug_exposure_start_date date!, drug_exposure_start_datetime ts, "
    "drug_exposure_end_date date!, drug_exposure_end_datetime ts, verbatim_end_date date, "
    "drug_type_concept_id int!, stop_reason vc20, refills int, quantity num, days_supply int, "
    "sig text, route_concept_id int, lot_number vc50, provider_id int, "
    "visit_occurrence_id int, visit_detail_id int, drug_source_value vc50, "
    "drug_source_concept_id int, route_source_value vc50, dose_unit_source_value vc50",
    "procedure_occurrence": "procedure_occurrence_id int!, person_id int!, "
    "procedure_concept_id int!, procedure_date date!, procedure_datetime ts, "
    "procedure_end_date date, procedure_end_datetime ts, procedure_type_concept_id int!, "
    "modifier_concept_id int, quantity int, provider_id int, visit_occurrence_id int, "
    "visit_detail_id int, procedure_source_value vc50, procedure_source_concept_id int, "
    "modifier_source_value vc50",
    "condition_occurrence": "condition_occurrence_id int!, person_id int!, "
    "condition_concept_id int!, condition_start_date date!, condition_start_datetime ts, "
    "condition_end_date date, condition_end_datetime ts, condition_type_concept_id int!, "
    "condition_status_concept_id int, stop_reason vc20, provider_id int, "
    "visit_occurrence_id int, visit_detail_id int, condition_source_value vc50, "
    "condition_source_concept_id int, condition_status_source_value vc50",
    "observation": "observation_id int!, person_id int!, observation_concept_id int!, "
    "observation_date date!, observation_datetime ts, observation_type_concept_id int!, "
    "value_as_number num, value_as_string vc60, value_as_concept_id int, "
    "qualifier_concept_id int, unit_concept_id int, provider_id int, visit_occurrence_id int, "
    "visit_detail_id int, observation_source_value vc50, observation_source_concept_id int, "
    "unit_source_value vc50, qualifier_source_value vc50, value_source_value vc50, "
    "observation_event_id int, obs_event_field_concept_id int",
    "concept": "concept_id int!, concept_name vc255!, domain_id vc20!, vocabulary_id vc20!, "
    "concept_class_id vc20!, standard_concept vc1, concept_code vc50!, valid_start_date date!, "
    "valid_end_date date!, invalid_reason vc1",
    "concept_ancestor": "ancestor_concept_id int!, descendant_concept_id int!, "
    "min_levels_of_separation int!, max_levels_of_separation int!",
}
# The vocabulary's own tables: written (never created) where a site's CDM has them.
_VOCABULARY_DDL = {
    "vocabulary": "vocabulary_id vc20!, vocabulary_name vc255!, vocabulary_reference vc255, "
    "vocabulary_version vc255, vocabulary_concept_id int!",
    "domain": "domain_id vc20!, domain_name vc255!, domain_concept_id int!",
    "concept_class": "concept_class_id vc20!, concept_class_name vc255!, "
    "concept_class_concept_id int!",
}
_TYPES = {"int": Integer, "date": Date, "ts": DateTime, "num": Numeric, "text": Text}


def _column(spec: str) -> Column:
    name, kind = spec.split()
    required = kind.endswith("!")
    kind = kind.rstrip("!")
    sql_type = String(int(kind[2:])) if kind.startswith("vc") else _TYPES[kind]()
    return Column(name, sql_type, nullable=not required)


def _tables(ddl: dict[str, str], metadata: MetaData) -> dict[str, Table]:
    return {
        name: Table(name, metadata, *(_column(c.strip()) for c in columns.split(",")))
        for name, columns in ddl.items()
    }


omop_metadata = MetaData()
TABLES = _tables(_DDL, omop_metadata)  # what the loader writes (and creates where absent)
VOCABULARY_TABLES = _tables(_VOCABULARY_DDL, MetaData())
LOCAL_CONCEPTS_FROM = 2_000_000_000  # OMOP: concept ids above 2 billion are a site's own
LOCAL_VOCABULARY = "PRCRS"  # the vocabulary_id of the loader's own concepts (omop_*.csv)
# OHDSI's type concepts (vocabulary 'Type Concept'): where each row comes from.
EHR, LAB = 32817, 32856
TYPE_CONCEPTS = {EHR: "EHR", LAB: "Lab"}
# The metadata concept each vocabulary-table row points at (domain 'Metadata'), as in Athena.
_METADATA = {"vocabulary": "Vocabulary", "domain": "Domain", "concept_class": "Concept Class"}
_KEY = {"vocabulary": "vocabulary_id", "domain": "domain_id", "concept_class": "concept_class_id"}


class OmopLoadError(LoadError):
    """The CDM cannot take the cohort as it is; one line saying what to do."""


@dataclass
class Cdm:
    """The CDM tables one load writes, bound to their schemas."""

    tables: dict[str, Table]  # TABLES' and, where the CDM has them, VOCABULARY_TABLES'
    placement: Placement
    created: bool = False  # the loader created the tables in this load
    vocabulary: str | None = None  # the loaded vocabulary's release; None: none loaded


def open_cdm(connection: Connection, schema: str | None) -> Cdm:
    """The CDM tables in PRCRS_WAREHOUSE_SCHEMA's schemas: created in the first when none of
    them exists; refused when only some do (the loader never adds tables to a CDM it did not
    create) or when a site's CDM has vocabulary tables but no vocabulary loaded."""
    placement = locate(connection, schema, [*TABLES, *VOCABULARY_TABLES])
    if placement.missing_schemas:
        absent = ", ".join(placement.missing_schemas)
        raise OmopLoadError(
            f"schema {absent} does not exist: create it (CREATE SCHEMA) or correct "
            "PRCRS_WAREHOUSE_SCHEMA"
        )
    metadata = MetaData()
    present = [t for t in TABLES if t in placement.found]
    if not present and not any(t in placement.found for t in VOCABULARY_TABLES):
        tables = {n: bind(t, metadata, placement.target) for n, t in TABLES.items()}
        metadata.create_all(connection)
        return Cdm(tables, placement, created=True)
    if len(present) < len(TABLES):
        missing = ", ".join(t for t in TABLES if t not in placement.found)
        raise OmopLoadError(
            f"{placement.where()} holds an OMOP CDM without {missing}: load-cohort creates "
            "tables only where there is no CDM; create the CDM with the OHDSI DDL (README, "
            "OMOP CDM), or set PRCRS_WAREHOUSE_SCHEMA to an empty schema"
        )
    every = TABLES | VOCABULARY_TABLES
    tables = {n: bind(every[n], metadata, s) for n, s in placement.found.items() if n in every}
    cdm = Cdm(tables, placement)
    if "vocabulary" in tables:
        vocabulary = tables["vocabulary"]
        release = select(vocabulary.c.vocabulary_version).where(
            vocabulary.c.vocabulary_id == "None"
        )
        row = connection.execute(release).first()
        if row is None:
            raise OmopLoadError(
                f"the CDM in {placement.where()} has no vocabulary loaded (its vocabulary "
                "table lacks Athena's row 'None'): load the OHDSI vocabulary first"
            )
        cdm.vocabulary = str(row[0] or "unversioned")
    return cdm


@dataclass
class Concepts:
    """Concept ids by (vocabulary_id, concept_code) in one CDM, the loader's own added as
    needed (see the module's docstring); `missing` lists what a loaded vocabulary lacks."""

    connection: Connection
    cdm: Cdm
    local_ids: range | None = None  # where new concept ids go; None: above 2,000,000,000
    known: dict[tuple[str, str], int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    units_missing: set[str] = field(default_factory=set)
    next_id: int = 0

    def __post_init__(self) -> None:
        concept = self.cdm.tables["concept"]
        ids = self.local_ids or range(LOCAL_CONCEPTS_FROM + 1, 2**31)
        top = self.connection.execute(
            select(func.max(concept.c.concept_id)).where(
                concept.c.concept_id >= ids.start, concept.c.concept_id <= ids.stop - 1
            )
        ).scalar()
        self.next_id = ids.start if top is None else int(top) + 1

    @property
    def strict(self) -> bool:
        """A vocabulary is loaded: only the loader's own codes are added."""
        return self.cdm.vocabulary is not None

    def _lookup(self, vocabulary: str, code: str) -> int | None:
        concept = self.cdm.tables["concept"]
        found = self.connection.execute(
            select(concept.c.concept_id).where(
                concept.c.vocabulary_id == vocabulary, concept.c.concept_code == code
            )
        ).scalar()
        return None if found is None else int(found)

    def id(self, vocabulary: str, code: str, name: str, domain: str, kind: str) -> int:
        """The concept's id; added when missing, unless a loaded vocabulary should have it
        (then recorded in `missing`, and 0 returned: the load is refused)."""
        key = (vocabulary, code)
        if key not in self.known:
            found = self._lookup(vocabulary, code)
            if found is None and self.strict and vocabulary != LOCAL_VOCABULARY:
                self.missing.append(f"{vocabulary} {code}")
                found = 0
            elif found is None:
                found = self.add(vocabulary, code, name, domain, kind)
            self.known[key] = found
        return self.known[key]

    def unit(self, ucum: str | None) -> int:
        """The UCUM unit concept; 0 where there is none (the unit stays in unit_source_value)."""
        if ucum is None or ucum in self.units_missing:
            return 0
        if self.strict and ("UCUM", ucum) not in self.known:
            found = self._lookup("UCUM", ucum)
            if found is None:
                self.units_missing.add(ucum)
                return 0
            self.known[("UCUM", ucum)] = found
        return self.id("UCUM", ucum, ucum, "Unit", "Unit")

    def operator(self, symbol: str) -> int:
        """The value operator ('<', '<=', '>', '>=': domain 'Meas Value Operator', by name as
        the queries read it): the vocabulary's (SNOMED), else the loader's own."""
        key = ("Meas Value Operator", symbol)
        if key not in self.known:
            concept = self.cdm.tables["concept"]
            found = self.connection.execute(
                select(concept.c.concept_id)
                .where(
                    concept.c.domain_id == "Meas Value Operator",
                    concept.c.concept_name == symbol,
                    concept.c.invalid_reason.is_(None),
                )
                .order_by((concept.c.standard_concept == "S").desc(), concept.c.concept_id)
            ).first()
            self.known[key] = (
                int(found[0])
                if found
                else self.add(LOCAL_VOCABULARY, symbol, symbol, "Meas Value Operator",
                              "Qualifier Value")
            )  # fmt: skip
        return self.known[key]

    def type_concept(self, concept_id: int) -> int:
        """One of OHDSI's type concepts (TYPE_CONCEPTS), by its id."""
        key = ("Type Concept", str(concept_id))
        if key not in self.known:
            concept = self.cdm.tables["concept"]
            here = select(concept.c.concept_id).where(concept.c.concept_id == concept_id)
            name = TYPE_CONCEPTS[concept_id]
            if self.connection.execute(here).first() is not None:
                self.known[key] = concept_id
            elif self.strict:
                self.missing.append(f"Type Concept {concept_id} ({name})")
                self.known[key] = 0
            else:
                kind = "Type Concept"  # its vocabulary, domain and class alike
                self.known[key] = self._insert(concept_id, kind, "OMOP generated", name, kind,
                                               kind, "S")  # fmt: skip
        return self.known[key]

    def add(self, vocabulary: str, code: str, name: str, domain: str, kind: str) -> int:
        """A new concept with a local id, after the vocabulary, domain and concept class rows
        its foreign keys point at (where the CDM has those tables)."""
        self._ensure("vocabulary", vocabulary, f"prcrs-batch local concepts ({vocabulary})")
        self._ensure("domain", domain, domain)
        self._ensure("concept_class", kind, kind)
        standard = None if domain == "Condition" else "S"  # ICD-10-CM codes map elsewhere
        return self._insert(self._take_id(), vocabulary, code, name, domain, kind, standard)

    def _take_id(self) -> int:
        taken, self.next_id = self.next_id, self.next_id + 1
        if self.local_ids is not None and taken not in self.local_ids:
            raise OmopLoadError(
                f"no concept id left in {self.local_ids.start}-{self.local_ids.stop - 1} "
                "for the loader's own concepts"
            )
        return taken

    def _insert(self, concept_id: int, vocabulary: str, code: str, name: str, domain: str,
                kind: str, standard: str | None) -> int:  # fmt: skip
        self.connection.execute(
            insert(self.cdm.tables["concept"]),
            {
                "concept_id": concept_id,
                "concept_name": name[:255],
                "domain_id": domain,
                "vocabulary_id": vocabulary,
                "concept_class_id": kind,
                "standard_concept": standard,
                "concept_code": code,
                "valid_start_date": date(1970, 1, 1),
                "valid_end_date": date(2099, 12, 31),
            },
        )
        return concept_id

    def _ensure(self, table: str, key: str, name: str) -> None:
        """A row for `key` in vocabulary, domain or concept_class where the CDM has that
        table, pointing at a new metadata concept (as Athena's rows do)."""
        rows = self.cdm.tables.get(table)
        if rows is None or (table, key) in self.known:
            return
        column = rows.c[_KEY[table]]
        if self.connection.execute(select(column).where(column == key)).first() is None:
            meta = _METADATA[table]
            concept_id = self._insert(
                self._take_id(), meta, "OMOP generated", name, "Metadata", meta, None
            )
            values: dict[str, object] = {
                _KEY[table]: key,
                f"{table}_name": name,
                f"{table}_concept_id": concept_id,
            }
            if table == "vocabulary":
                values |= {"vocabulary_reference": "prcrs-batch load-cohort --format omop",
                           "vocabulary_version": None}  # fmt: skip
            self.connection.execute(insert(rows), values)
        self.known[(table, key)] = 0
