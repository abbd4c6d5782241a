"""Settings: one validated object, read from PRCRS_* environment variables and `.env`.

Built once by the CLI (or a test) and passed down; there is no module-level instance.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from email import errors
from email.headerregistry import HeaderRegistry
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from dotenv import dotenv_values
from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from prcrs_batch import resources

log = logging.getLogger(__name__)
PREFIX = "PRCRS_"
ENV_FILE = ".env"
SCHEMA_NAME = r"[A-Za-z_][A-Za-z0-9_$]*"  # an unquoted SQL identifier (PostgreSQL folds case)


class SettingsError(ValueError):
    """A setting has a bad value; the message names the PRCRS_ variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore"
    )

    warehouse_url: str = "sqlite:///prcrs.db"
    # The warehouse's data model: the three contract tables (README "Warehouse contract") or
    # an OMOP CDM v5.4 (README "OMOP CDM"), read with the queries of sql/ or sql/omop/.
    warehouse_model: Literal["contract", "omop"] = "contract"
    warehouse_schema: str | None = None  # PostgreSQL search_path for the queries; None: as is
    omop_patient_id: Literal["person_source_value", "person_id"] = "person_source_value"
    omop_codes_dir: Path | None = None  # a site's omop_*.csv code lists replacing the bundled
    results_url: str | None = None  # None: same database as the warehouse
    results_schema: str | None = None  # PostgreSQL schema of the results tables; None: as is
    migrator_url: str | None = None  # init-db only (the schema's owner); None: results_url
    model_dir: Path = Field(default_factory=resources.model_dir)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int = Field(0, ge=0, le=256)  # CPU threads for scoring; 0: PyTorch's default
    active_days: int = Field(30, ge=1, le=365)
    lookback_hours: int = Field(72, ge=1, le=24 * 14)
    # None: each model's own thresholds, chosen by `train` and stored in the manifest
    # (task/thresholds.py's rules); a value overrides every model's.
    alert_threshold: float | None = Field(None, gt=0.0, le=1.0)
    watch_threshold: float | None = Field(None, gt=0.0, le=1.0)
    explain_all: bool = False  # explanations for every scored patient, not only the flagged
    report_language: Literal["en", "zh"] = "en"  # the email, the failure notice, `score`'s text
    report_dir: Path = Path("reports")
    # Alerts shown as full cards in the mail (new and rising first); every further alert is
    # one compact row, and the complete report is attached.
    max_alert_cards: int = Field(12, ge=1, le=100)
    metrics_file: Path | None = None  # Prometheus text file of the last night; None: not written
    # The expected feed: a night whose active patients' newest lab, or the warehouse's, is
    # older than this is stored with status stale_data; so is one whose newest infusion is
    # older than max_infusion_age_days, or absent (0: no limit). freshness.py.
    max_lab_age_hours: int = Field(48, ge=1, le=24 * 60)
    max_infusion_age_days: int = Field(60, ge=0, le=3650)
    schedule_cron: str = "0 2 * * *"
    timezone: str = "UTC"

    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_ssl: bool = False
    smtp_ca_file: FilePath | None = None  # CA bundle (PEM) for an internal CA; else the system's
    alert_from: str = "prcrs-batch@localhost"
    # An undelivered report is resent by a later night only while younger than this (from when
    # it was made or from its data cut-off, whichever is earlier); older: never mailed.
    max_resend_hours: int = Field(36, ge=1, le=24 * 7)
    alert_to: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # silent: scored, stored and reported as usual, but mailed only to silent_to (validation)
    alert_mode: Literal["live", "silent"] = "live"
    silent_to: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # the operators: the failure notice of a night that never read the warehouse (a
    # database, the models, the run lock) goes here; unset: to the night's list
    ops_to: Annotated[list[str], NoDecode] = Field(default_factory=list)
    monitor_windows: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [30, 90])

    @field_validator("warehouse_url", "results_url", "migrator_url")
    @classmethod
    def _normalise_url(cls, url: str | None) -> str | None:
        if url is None or url == "":
            return None
        url = normalise_database_url(url)
        try:
            make_url(url).get_dialect()
        except (ArgumentError, NoSuchModuleError):  # their text may quote the password
            raise ValueError(
                "not a database URL (e.g. postgresql://user@host:5432/db or sqlite:///file.db)"
            ) from None
        return url

    @field_validator("warehouse_schema")
    @classmethod
    def _check_schema(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        names = [part.strip() for part in value.split(",")]
        if not all(re.fullmatch(SCHEMA_NAME, name) for name in names):
            raise ValueError(f"not a schema name or comma-separated list of them: {value!r}")
        return ", ".join(names)

    @field_validator("results_schema")
    @classmethod
    def _check_results_schema(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not re.fullmatch(SCHEMA_NAME, value.strip()):
            raise ValueError(f"not a schema name: {value!r}")
        return value.strip()

    @field_validator("omop_codes_dir")
    @classmethod
    def _check_codes_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"not a folder: {value}")
        return value

    @field_validator(
        "smtp_ca_file",
        "metrics_file",
        "omop_codes_dir",
        "alert_threshold",
        "watch_threshold",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("model_dir", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return resources.model_dir() if value == "" else value

    @field_validator("alert_to", "silent_to", "ops_to", mode="before")
    @classmethod
    def _parse_recipients(cls, value: object) -> object:
        if isinstance(value, str):  # "a@x.org, b@x.org" or "a@x.org; Dr B <b@x.org>"
            return parse_addresses(value)
        if isinstance(value, list):
            return [address for item in value for address in parse_addresses(str(item))]
        return value

    @field_validator("alert_from", mode="before")
    @classmethod
    def _parse_sender(cls, value: object) -> object:
        if isinstance(value, str):
            addresses = parse_addresses(value)
            if len(addresses) != 1:
                raise ValueError(f"one sender address, not {len(addresses)}: {_shown(value)}")
            return addresses[0]
        return value

    @field_validator("monitor_windows", mode="before")
    @classmethod
    def _split_windows(cls, value: object) -> object:
        if isinstance(value, str):  # "30,90" or "30;90"
            return [part.strip() for part in re.split(r"[,;]", value) if part.strip()]
        return value

    @field_validator("monitor_windows")
    @classmethod
    def _check_windows(cls, value: list[int]) -> list[int]:
        if not value or any(not 1 <= w <= 3650 for w in value):
            raise ValueError("windows are days between 1 and 3650, e.g. 30,90")
        return sorted(set(value))

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("schedule_cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"not a 5-field crontab expression: {value!r} ({exc})") from exc
        return value

    @model_validator(mode="after")
    def _check_smtp(self) -> Settings:
        if self.smtp_host and not self.alert_to:
            raise ValueError(
                "PRCRS_ALERT_TO must list at least one recipient when PRCRS_SMTP_HOST is set"
            )
        if self.smtp_host and self.alert_mode == "silent" and not self.silent_to:
            raise ValueError(
                "PRCRS_SILENT_TO must list the validation team when PRCRS_ALERT_MODE=silent"
            )
        if self.smtp_user and self.smtp_password is None:
            raise ValueError("PRCRS_SMTP_PASSWORD must be set when PRCRS_SMTP_USER is set")
        return self

    @property
    def results_database_url(self) -> str:
        return self.results_url or self.warehouse_url

    @property
    def migration_url(self) -> str:
        """Where init-db runs the migrations: the schema owner's login when set."""
        return self.migrator_url or self.results_database_url

    @property
    def recipients(self) -> list[str]:
        """Who gets the night's mail: the validation team only in silent mode."""
        return self.silent_to if self.alert_mode == "silent" else self.alert_to

    @property
    def ops_recipients(self) -> list[str]:
        """Who hears of a set-up failure: the operators, else the night's list."""
        return self.ops_to or self.recipients

    @property
    def email_enabled(self) -> bool:
        """Without an SMTP host the report is written but not sent."""
        return bool(self.smtp_host)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def today(self) -> date:
        return datetime.now(self.zone).date()


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_addresses(value: str) -> list[str]:
    """Email addresses separated by commas or semicolons, each checked as an address
    (`email.headerregistry`, RFC 5322), returned as written for the To: header; a display
    name may be given ("Dr A <a@x.org>"). A line break or anything that is not a list of
    addresses is refused: it could not be sent, or would add a header.

    >>> parse_addresses("oncall@x.org; Dr B <b@x.org>")
    ['oncall@x.org', 'Dr B <b@x.org>']
    >>> parse_addresses("oncall@x.org Bcc: other@x.org")
    Traceback (most recent call last):
    ...
    ValueError: not an email address or a list of them: 'oncall@x.org Bcc: other@x.org'
    """
    if _CONTROL.search(value):
        raise ValueError(
            f"a line break or control character in {_shown(value)}: give addresses "
            "separated by commas"
        )
    addresses: list[str] = []
    for part in value.split(";"):
        if not part.strip():
            continue
        try:
            header = _HEADERS("To", part)
            parsed = list(header.addresses)  # type: ignore[attr-defined]
            defects = [d for d in header.defects if not isinstance(d, errors.ObsoleteHeaderDefect)]
            valid = not defects and all(a.username and a.domain for a in parsed)
        except (errors.HeaderParseError, IndexError, ValueError):  # the parser's own slips
            valid = False
        if not valid or not parsed:
            raise ValueError(f"not an email address or a list of them: {_shown(part.strip())}")
        addresses += [str(address) for address in parsed]
    return addresses


def _shown(value: str, limit: int = 80) -> str:
    """A setting's value in a one-line message: repr (a line break shows as \\n), cut."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


_HEADERS = HeaderRegistry()


def normalise_database_url(url: str) -> str:
    """Point plain PostgreSQL URLs at the psycopg 3 driver.

    >>> normalise_database_url("postgresql://u@h/db")
    'postgresql+psycopg://u@h/db'
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def unknown_variables(
    environ: Mapping[str, str] | None = None,
    env_file: str | Path | None = ENV_FILE,
    *,
    ignored: bool = True,
) -> list[str]:
    """One line per PRCRS_ variable (environment or .env) that is not a setting, with the
    closest setting's name: a misspelt variable is otherwise silently ignored. `ignored`:
    say it is ignored (`check`), else that it must be corrected (the other commands).

    >>> unknown_variables({"PRCRS_WAREHOUSE_ULR": "x", "PRCRS_DEVICE": "cpu"}, None)
    ['PRCRS_WAREHOUSE_ULR is not a setting and is ignored (did you mean PRCRS_WAREHOUSE_URL?)']
    """
    known = [PREFIX + name.upper() for name in Settings.model_fields]
    names: Iterable[str] = os.environ if environ is None else environ
    found = {n.upper() for n in names if n.upper().startswith(PREFIX)}
    if env_file is not None and Path(env_file).is_file():
        found |= {n.upper() for n in dotenv_values(env_file) if n.upper().startswith(PREFIX)}
    lines = []
    for name in sorted(found - set(known)):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        if ignored:
            lines.append(f"{name} is not a setting and is ignored{hint}")
        else:
            lines.append(f"{name} is not a setting{hint}: correct or remove it")
    return lines


def load_settings(*, strict: bool = False, **overrides: object) -> Settings:
    """Build Settings, turning a validation error into one line per bad variable.

    An unknown PRCRS_ variable (a misspelt setting would otherwise leave its default in
    force) is a SettingsError when `strict` (every command but `check`), else a warning.
    """
    unknown = unknown_variables(ignored=not strict)
    if not strict:
        for line in unknown:
            log.warning("%s", line)
    lines = unknown if strict else []
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            name = f"PRCRS_{field.upper()}" if field else "settings"
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{name}: {message}")
    if lines:
        raise SettingsError("; ".join(lines)) from None
    return settings
