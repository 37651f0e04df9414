"""emergency numbers and low-balance e-mails

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 18:00:00.000000

A platform list of emergency numbers per country (DESIGN §3.5: calls to them bypass max
calls, daily usage, billing and balance), a CDR flag marking such calls, and a client's
low-balance threshold with the address its crossing is mailed to. The threshold has no
CHECK of its own (provisioning refuses a negative one): adding one on SQLite would copy the
``clients`` table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "emergency_numbers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emergency_numbers")),
        sa.UniqueConstraint("country", "number", name=op.f("uq_emergency_numbers_country_number")),
        mysql_collate="utf8mb4_nopad_bin",
        mysql_charset="utf8mb4",
    )
    # Plain ALTER TABLE, never a batch: on SQLite a batch copies the table, and dropping
    # the old ``clients`` would cascade to every row that refers to a client.
    op.add_column("clients", sa.Column("low_balance_threshold", sa.Numeric(precision=18, scale=4)))
    op.add_column("clients", sa.Column("low_balance_email", sa.String(length=254)))
    op.add_column(
        "billable_calls",
        sa.Column("emergency", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("billable_calls", "emergency")
    op.drop_column("clients", "low_balance_email")
    op.drop_column("clients", "low_balance_threshold")
    op.drop_table("emergency_numbers")
