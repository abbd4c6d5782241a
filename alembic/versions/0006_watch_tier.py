"""The watch tier and each patient's own threshold: `crs_patient_nights.tier` (alert, watch
or NULL) and `crs_patient_nights.alert_threshold` (the recommended model's alert threshold
that night: models carry their own since issue 23).

Existing rows: tier 'alert' where alert is true; alert_threshold stays NULL (not recorded).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 18:30:00
"""

import sqlalchemy as sa

from alembic import op
from prcrs_batch.results.schema_text import comment_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TIERS = "tier IN ('alert', 'watch')"


def upgrade() -> None:
    with op.batch_alter_table("crs_patient_nights") as batch_op:
        batch_op.add_column(sa.Column("tier", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("alert_threshold", sa.Float(), nullable=True))
        batch_op.create_check_constraint(op.f("ck_crs_patient_nights_tier"), TIERS)
    op.execute("UPDATE crs_patient_nights SET tier = 'alert' WHERE alert")
    if op.get_bind().dialect.name == "postgresql":
        for statement in comment_sql(("crs_patient_nights",), (), bind=op.get_bind()):
            op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("crs_patient_nights") as batch_op:
        batch_op.drop_constraint(op.f("ck_crs_patient_nights_tier"), type_="check")
        batch_op.drop_column("alert_threshold")
        batch_op.drop_column("tier")
