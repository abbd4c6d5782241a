"""`prcrs-batch check`: is this installation ready for a night? One result per check.

Nothing is written to the databases and nothing is sent: the warehouse and the results
database are read, the SMTP server gets EHLO (and STARTTLS, login) but no message, and
the report folder gets a temporary file that is removed at once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Connection, Engine, column, false, inspect, literal_column, select, table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import Date, DateTime, Integer, NullType, Numeric, String, TypeEngine

from prcrs_batch.errors import describe, redact_url
from prcrs_batch.report import mailer
from prcrs_batch.results import engines, migrations
from prcrs_batch.settings import Settings, unknown_variables
from prcrs_batch.task.data_day import current_data_day, data_day
from prcrs_batch.task.panel import ANALYTE_CODES
from prcrs_batch.warehouse import freshness, indexes
from prcrs_batch.warehouse.code_lists import read_code_lists
from prcrs_batch.warehouse.contract import warehouse_metadata
from prcrs_batch.warehouse.placement import locate as placement_of
from prcrs_batch.warehouse.queries import Source, Window, prepare, query

OPTIONAL_COLUMNS = {("cart_infusions", "sex"), ("cart_infusions", "age")}  # not queried
SMTP_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Check:
    """One check's outcome: its name, whether it passed, and one line saying why."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        """
        >>> Check("reports", True, "reports/ writable").line()
        'ok    reports    reports/ writable'
        """
        return f"{'ok' if self.ok else 'FAIL':<5} {self.name:<10} {self.detail}"


def effective_settings(settings: Settings) -> list[tuple[str, str]]:
    """Every setting as (variable, value shown): URLs masked, secrets never shown."""
    shown = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None or value == []:
            text = "(unset)"
        elif isinstance(value, SecretStr):
            text = "*** (set)"
        elif name.endswith("_url"):
            text = redact_url(str(value))
        elif isinstance(value, list):
            text = ", ".join(map(str, value))
        else:
            text = str(value)
        unset = value is None or value == []
        source = "" if name in settings.model_fields_set or unset else "  (default)"
        shown.append((f"PRCRS_{name.upper()}", text + source))
    return shown


def run_checks(settings: Settings, *, now: datetime | None = None) -> Iterator[Check]:
    """Every check in turn (settings already valid: the caller built them)."""
    unknown = unknown_variables()
    yield Check(
        "settings",
        not unknown,
        "valid" if not unknown else "; ".join(unknown),
    )
    warehouse = engines.make_engine(settings.warehouse_url)
    try:
        if settings.warehouse_model == "omop":
            contract = check_omop(warehouse, settings, now=now)
        else:
            contract = check_warehouse(warehouse, settings.warehouse_url, settings.warehouse_schema)
        yield contract
        yield check_results(settings.results_database_url, settings.results_schema)
        yield check_models(settings.model_dir)
        yield check_smtp(settings)
        yield check_report_dir(settings.report_dir)
        if settings.metrics_file is not None:
            yield check_report_dir(settings.metrics_file.parent, name="metrics")
        if contract.ok:
            yield check_freshness(warehouse, settings, now=now)
        else:
            yield Check("freshness", False, "not checked: the warehouse check failed")
    finally:
        warehouse.dispose()


# ----------------------------------------------------------------------- databases


def _family(kind: TypeEngine) -> str:
    if isinstance(kind, DateTime):
        return "timestamp"
    if isinstance(kind, Date):
        return "date"
    if isinstance(kind, Integer):
        return "integer"
    if isinstance(kind, Numeric):
        return "number"
    if isinstance(kind, String):
        return "text"
    if isinstance(kind, NullType):
        return "undeclared"
    return type(kind).__name__.lower()


# The types each contract column may have (README, "Warehouse contract").
_USABLE = {
    "text": {"text"},
    "date": {"date", "timestamp"},
    "timestamp": {"timestamp"},
    "integer": {"integer", "number"},
}


def contract_problems(engine: Engine, schema: str | None = None) -> list[str]:
    """What keeps the warehouse from answering the contract (its tables looked up in
    PRCRS_WAREHOUSE_SCHEMA's schemas, as the queries find them); empty when nothing does."""
    problems = []
    names = list(warehouse_metadata.tables)
    with engine.connect() as connection:
        inspector = inspect(connection)
        placement = placement_of(connection, schema, names)
        problems += [f"schema {s} does not exist" for s in placement.missing_schemas]
        for contract in warehouse_metadata.tables.values():
            name = contract.name
            if name not in placement.found:
                where = f" from {placement.where()}" if schema else ""
                problems.append(f"table or view {name} is missing{where}")
                continue
            in_schema = placement.found[name]
            columns = {
                c["name"].lower(): c["type"] for c in inspector.get_columns(name, schema=in_schema)
            }
            for wanted in contract.columns:
                expected = _family(wanted.type)
                if wanted.name not in columns:
                    if (name, wanted.name) not in OPTIONAL_COLUMNS:
                        problems.append(f"column {name}.{wanted.name} is missing")
                    continue
                found = _family(columns[wanted.name])
                usable = _USABLE[expected] | {"undeclared"}
                if wanted.name == "patient_id":
                    usable = usable | {"integer"}
                if found not in usable:
                    problems.append(f"{name}.{wanted.name} is {found}, expected {expected}")
            readable: list[Any] = [column(c.name) for c in contract.columns if c.name in columns]
            problems += _unreadable(connection, name, in_schema, readable)
    return problems


def _unreadable(
    connection: Connection, name: str, schema: str | None, columns: list[Any] | None = None
) -> list[str]:
    """[] when this login can read the table, else one line saying why (no SELECT grant:
    deploy/roles.sql grants the tables that existed when it ran)."""
    relation = table(name, schema=schema)
    try:
        connection.execute(select(*(columns or [literal_column("1")])).select_from(relation)
                           .where(false()))  # fmt: skip
    except Exception as exc:  # e.g. no SELECT grant: one line, checking goes on
        connection.rollback()
        again = " (run deploy/roles.sql again)" if "permission denied" in str(exc) else ""
        return [f"{name} cannot be read: {describe(exc)}{again}"]
    return []


def check_warehouse(engine: Engine, url: str, schema: str | None = None) -> Check:
    if (path := engines.missing_sqlite_file(url)) is not None:
        return Check(
            "warehouse", False, engines.missing_file_message("PRCRS_WAREHOUSE_URL", url, path)
        )
    try:
        with engines.explained("PRCRS_WAREHOUSE_URL", url):
            problems = contract_problems(engine, schema)
    except engines.DatabaseSetupError as exc:
        return Check("warehouse", False, str(exc))
    where = redact_url(url)
    if problems:
        return Check("warehouse", False, f"{where}: {'; '.join(problems)}")
    tables = ", ".join(warehouse_metadata.tables)
    return Check("warehouse", True, f"{where}: {tables} present, column types usable")


OMOP_TABLES = ("person", "measurement", "drug_exposure", "procedure_occurrence",
               "condition_occurrence", "observation", "concept", "concept_ancestor")  # fmt: skip


def omop_lab_counts(engine: Engine, settings: Settings, since: date) -> tuple[dict[str, int], int]:
    """Measurement rows on or after `since` per analyte, summed over its codes (0: none),
    and how many of them matched only through measurement_source_concept_id."""
    source = Source.from_settings(settings)
    params = {"first_infusion": since} | source.params()
    with engine.connect() as connection:
        prepare(connection, source)
        statement = query(source.folder, "lab_code_counts", connection.dialect.name)
        rows = connection.execute(statement, params).all()
    analyte_of = (source.codes or read_code_lists()).analyte_of()
    counts = dict.fromkeys(ANALYTE_CODES, 0)
    for code, n, _ in rows:
        counts[analyte_of[code]] += int(n)
    return counts, sum(int(by_source or 0) for _, _, by_source in rows)


def omop_silent_zeros(engine: Engine, settings: Settings, today: date) -> list[str]:
    """What a site's OMOP mapping may be missing without an error (sql/omop/silent_zeros.sql):
    infusions per source table, infused persons without the configured patient id, lab
    results carried only as a concept. One phrase each, naming the fix."""
    source = Source.from_settings(settings)
    params = {"as_of": today, "first_infusion": today - timedelta(settings.active_days)}
    with engine.connect() as connection:
        prepare(connection, source)
        statement = query(source.folder, "silent_zeros", connection.dialect.name)
        row = connection.execute(statement, params | source.params()).one()
    found = [
        f"infusions found: {row.drug_infusions} through drug_exposure, "
        f"{row.procedure_infusions} through procedure_occurrence"
        + (
            " (infusions recorded as RxNorm drugs need their codes in omop_infusions.csv)"
            if not row.drug_infusions
            else ""
        )
    ]
    if row.persons_without_id:
        found.append(
            f"{row.persons_without_id} infused persons have no {settings.omop_patient_id}: "
            "their nights carry no patient id (fill it, or set PRCRS_OMOP_PATIENT_ID=person_id)"
        )
    if row.concept_only_results:
        found.append(
            f"{row.concept_only_results} lab results in the last {settings.active_days} days "
            "carry only value_as_concept_id and are read as no number (map a numeric "
            "value_as_number where there is one)"
        )
    return found


def check_omop(engine: Engine, settings: Settings, *, now: datetime | None = None) -> Check:
    """The OMOP CDM tables are there and readable; per analyte, how many measurement rows
    its codes matched in the last PRCRS_ACTIVE_DAYS (a lab the site does not map: 0)."""
    url = settings.warehouse_url
    if (path := engines.missing_sqlite_file(url)) is not None:
        return Check(
            "warehouse", False, engines.missing_file_message("PRCRS_WAREHOUSE_URL", url, path)
        )
    today = (now or datetime.now(settings.zone)).date()
    where = redact_url(url)
    try:
        with engines.explained("PRCRS_WAREHOUSE_URL", url):
            with engine.connect() as connection:
                placement = placement_of(connection, settings.warehouse_schema, OMOP_TABLES)
                problems = [f"schema {s} does not exist" for s in placement.missing_schemas]
                missing = [t for t in OMOP_TABLES if t not in placement.found]
                if missing:
                    problems.append(f"missing {', '.join(missing)} from {placement.where()}")
                for name, schema in placement.found.items():
                    problems += _unreadable(connection, name, schema)
            if problems:
                return Check("warehouse", False, f"{where} (OMOP): {'; '.join(problems)}")
            counts, by_source = omop_lab_counts(
                engine, settings, today - timedelta(settings.active_days)
            )
            silent = omop_silent_zeros(engine, settings, today)
    except engines.DatabaseSetupError as exc:
        return Check("warehouse", False, str(exc))
    except (SQLAlchemyError, ValueError) as exc:
        return Check("warehouse", False, f"{where} (OMOP): {describe(exc)}")
    matched = sum(1 for n in counts.values() if n)
    rows = ", ".join(f"{a} {n}" for a, n in counts.items())
    detail = (
        f"{where} (OMOP CDM): measurement rows per analyte in the last {settings.active_days} "
        f"days: {rows}; {matched} of {len(counts)} analytes matched"
    )
    if by_source:
        detail += (
            f"; {by_source} rows matched through measurement_source_concept_id only "
            "(measurement_concept_id 0: map them to standard concepts)"
        )
    return Check("warehouse", matched > 0, "; ".join([detail, *silent]))


def check_results(url: str, schema: str | None = None) -> Check:
    where = redact_url(url) + (f" (schema {schema})" if schema else "")
    if engines.missing_sqlite_file(url) is not None:
        return Check(
            "results", False, f"{where}: no results schema (no such file): {migrations.INIT_DB}"
        )
    engine = engines.make_engine(url, schema)
    try:
        with engines.explained("PRCRS_RESULTS_URL", url):
            state = migrations.schema_state(engine)
    except engines.DatabaseSetupError as exc:
        return Check("results", False, str(exc))
    finally:
        engine.dispose()
    if state.problem:
        return Check("results", False, f"{where}: {state.problem}")
    if not state.revision_readable:
        return Check(
            "results",
            True,
            f"{where}: results tables present (this login may not read alembic_version: "
            "rerun deploy/roles.sql to check the revision)",
        )
    return Check("results", True, f"{where}: schema at revision {state.current} (the newest)")


# ---------------------------------------------------------------------- models, mail


def check_models(model_dir: Path) -> Check:
    from prcrs_batch.modeling import store

    try:
        manifest, version = store.read_manifest(model_dir)
        files = {w["file"]: w["sha256"] for m in manifest["models"] for w in m["weights"]}
        bad = []
        for name, expected in sorted(files.items()):
            path = Path(model_dir) / name
            if not path.is_file():
                bad.append(f"{name} missing")
            elif store.sha256(path) != expected:
                bad.append(f"{name} checksum differs from manifest.json")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Check("models", False, f"{model_dir}: {describe(exc)}")
    n_models = len(manifest["models"])
    if bad:
        return Check("models", False, f"{model_dir}: {'; '.join(bad)}")
    created = str(manifest.get("created_at", "?"))[:10]
    detail = (
        f"{model_dir}: {n_models} models, {len(files)} weight files, checksums verified; "
        f"version {version}, trained {created}"
    )
    if manifest.get("train_config", {}).get("quick"):
        return Check("models", False, f"{detail}; QUICK-TRAINED (test settings, not for patients)")
    return Check("models", True, f"{detail}, full training (not quick)")


def check_smtp(settings: Settings) -> Check:
    """Connect, EHLO, STARTTLS and log in as configured (mailer.probe); send nothing."""
    if not settings.smtp_host:
        return Check("smtp", True, "not configured (PRCRS_SMTP_HOST unset): reports not sent")
    host, port = settings.smtp_host, settings.smtp_port
    try:
        steps = mailer.probe(**mailer.server_options(settings), timeout=SMTP_TIMEOUT_SECONDS)
    except mailer.ProbeError as exc:
        return Check("smtp", False, str(exc))
    return Check("smtp", True, f"{host}:{port}: {', '.join(steps)} accepted (nothing sent)")


# ------------------------------------------------------------------ folders, freshness


def check_report_dir(folder: Path, name: str = "reports") -> Check:
    """The folder (or the folder it will be created in) takes a new file."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return Check(name, False, f"{folder}: {existing} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".prcrs-check-"):
            pass
    except OSError as exc:
        return Check(name, False, f"{folder}: not writable ({describe(exc)})")
    later = "" if existing == folder else f" (will be created in {existing})"
    return Check(name, True, f"{folder}: writable{later}")


def check_freshness(warehouse: Engine, settings: Settings, *, now: datetime | None) -> Check:
    try:
        with engines.explained("PRCRS_WAREHOUSE_URL", settings.warehouse_url):
            night = data_day(now) if now else current_data_day(settings.zone)
            feed, reasons = freshness.assess_feed(warehouse, settings, night, now)
    except engines.DatabaseSetupError as exc:
        return Check("freshness", False, str(exc))
    infusion = (
        "no infusion"
        if feed.newest_infusion is None
        else f"newest infusion {feed.newest_infusion} ({feed.infusion_age_days} d)"
    )
    lab = "no lab result"
    if feed.newest_lab is not None and feed.lab_age_hours is not None:
        hours = feed.lab_age_hours
        age = f"{hours:.0f} h" if hours < 72 else f"{hours / 24:.0f} d"
        lab = f"newest lab result {feed.newest_lab:%Y-%m-%d %H:%M} ({age})"
    facts = f"{infusion}, {lab}, {feed.active_patients} active patients tonight"
    slow = query_plans(warehouse, settings, night)
    if slow:
        facts += f"; WARNING, slow query plans: {'; '.join(slow)}"
    if reasons:
        return Check("freshness", False, f"{facts}: STALE: {'; '.join(reasons)}")
    return Check("freshness", True, facts)


def query_plans(warehouse: Engine, settings: Settings, night: date) -> list[str]:
    """The nightly queries that would read a whole large table (indexes.scans): a warning,
    never a failure (the night still runs, only slower)."""
    source = Source.from_settings(settings)
    window = Window.for_night(settings, night, source=source)
    try:
        with warehouse.connect() as connection:
            return indexes.scans(connection, source, window)
    except SQLAlchemyError as exc:
        return [f"query plans not read: {describe(exc)}"]
