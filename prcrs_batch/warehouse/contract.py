"""The warehouse contract's three tables, as SQLAlchemy metadata: what `sql/*.sql` reads,
what `check` compares a site's tables with, what the development loaders and `score`'s
scratch warehouse create. A site's own warehouse already holds them."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

warehouse_metadata = MetaData()


cart_infusions = Table(
    "cart_infusions",
    warehouse_metadata,
    Column("patient_id", String(64)),
    Column("infusion_date", Date, nullable=False),
    Column("sex", String(16)),
    Column("age", Integer),
    UniqueConstraint("patient_id", "infusion_date"),
)


lab_results = Table(
    "lab_results",
    warehouse_metadata,
    Column("patient_id", String(64)),
    Column("collected_at", DateTime, nullable=False),
    Column("analyte", String(64), nullable=False),
    Column("value", Text),
    Column("unit", String(32)),
    UniqueConstraint("patient_id", "analyte", "collected_at"),
)


crs_assessments = Table(
    "crs_assessments",
    warehouse_metadata,
    Column("patient_id", String(64)),
    Column("assessed_on", Date, nullable=False),
    Column("grade", Integer, nullable=False),
    UniqueConstraint("patient_id", "assessed_on"),
)
