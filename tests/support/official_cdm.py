"""The official OMOP CDM v5.4 on PostgreSQL, as a site builds it: OHDSI's DDL
(tests/data/omop_cdm_5.4/) in a schema, the vocabulary rows loaded as from an Athena download
(tests/data/omop_vocabulary/), then the primary keys, indices and foreign keys."""

from __future__ import annotations

import psycopg
from sqlalchemy import make_url

from tests.support import TEST_DATA

DDL = TEST_DATA / "omop_cdm_5.4"
VOCABULARY = TEST_DATA / "omop_vocabulary"
ATHENA_FILES = ("CONCEPT", "VOCABULARY", "DOMAIN", "CONCEPT_CLASS")  # loaded in this order


def libpq(url: str) -> str:
    """A SQLAlchemy URL as libpq (psql, psycopg) takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def ddl(part: str, schema: str) -> str:
    """One of the official files with its schema placeholder filled in, as SqlRender does."""
    text = (DDL / f"OMOPCDM_postgresql_5.4_{part}.sql").read_text("utf-8")
    return text.replace("@cdmDatabaseSchema", schema)


def build_official_cdm(
    url: str, schema: str = "cdm", *, without: tuple[tuple[str, str], ...] = ()
) -> None:
    """Create `schema` and the official CDM in it: tables, Athena's vocabulary rows (less the
    (vocabulary_id, concept_code) pairs in `without`), primary keys, indices, foreign keys."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(ddl("ddl", schema))
        for name in ATHENA_FILES:
            data = (VOCABULARY / f"{name}.csv").read_bytes()
            statement = (
                f'COPY "{schema}".{name.lower()} FROM STDIN '
                "WITH (FORMAT csv, DELIMITER E'\\t', HEADER true, QUOTE E'\\b')"
            )
            with conn.cursor() as cursor, cursor.copy(statement) as copy:
                copy.write(data)
        for vocabulary, code in without:
            conn.execute(
                f'DELETE FROM "{schema}".concept WHERE vocabulary_id = %s AND concept_code = %s',
                (vocabulary, code),
            )
        for part in ("primary_keys", "indices", "constraints"):
            conn.execute(ddl(part, schema))


def foreign_keys(url: str, schema: str = "cdm") -> int:
    """How many foreign keys the schema's tables carry."""
    with psycopg.connect(libpq(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
            " WHERE c.contype = 'f' AND n.nspname = %s",
            (schema,),
        ).fetchone()
    return int(row[0]) if row else 0
