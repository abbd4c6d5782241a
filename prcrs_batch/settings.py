"""Settings: one validated object, read from PRCRS_* environment variables and `.env`.

Built once by the CLI (or a test) and passed down; there is no module-level instance.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from prcrs_batch import resources


class SettingsError(ValueError):
    """A setting has a bad value; the message names the PRCRS_ variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRCRS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    warehouse_url: str = "sqlite:///prcrs.db"
    results_url: str | None = None  # None: same database as the warehouse
    model_dir: Path = Field(default_factory=resources.model_dir)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int = Field(0, ge=0, le=256)  # CPU threads for scoring; 0: PyTorch's default
    active_days: int = Field(30, ge=1, le=365)
    lookback_hours: int = Field(72, ge=1, le=24 * 14)
    alert_threshold: float = Field(0.30, gt=0.0, le=1.0)
    report_dir: Path = Path("reports")
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
    alert_to: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("warehouse_url", "results_url")
    @classmethod
    def _normalise_url(cls, url: str | None) -> str | None:
        if url is None or url == "":
            return None
        return normalise_database_url(url)

    @field_validator("smtp_ca_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("alert_to", mode="before")
    @classmethod
    def _split_recipients(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("alert_to")
    @classmethod
    def _check_recipients(cls, value: list[str]) -> list[str]:
        for address in value:
            if "@" not in address:
                raise ValueError(f"not an email address: {address!r}")
        return value

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
        if self.smtp_user and self.smtp_password is None:
            raise ValueError("PRCRS_SMTP_PASSWORD must be set when PRCRS_SMTP_USER is set")
        return self

    @property
    def results_database_url(self) -> str:
        return self.results_url or self.warehouse_url

    @property
    def email_enabled(self) -> bool:
        """Without an SMTP host the report is written but not sent."""
        return bool(self.smtp_host)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def today(self) -> date:
        return datetime.now(self.zone).date()


def normalise_database_url(url: str) -> str:
    """Point plain PostgreSQL URLs at the psycopg 3 driver.

    >>> normalise_database_url("postgresql://u@h/db")
    'postgresql+psycopg://u@h/db'
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning a validation error into one line per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            name = f"PRCRS_{field.upper()}" if field else "settings"
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{name}: {message}")
        raise SettingsError("; ".join(lines)) from None
