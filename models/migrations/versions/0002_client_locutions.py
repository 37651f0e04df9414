"""client locutions: a client's own audio for a voice notification

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 09:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import models.base

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "client_locutions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("sound", sa.String(length=32), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column(
            "audio",
            sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(), nullable=False),
        # The catalogue's sounds when this revision was written; a new sound needs a migration.
        sa.CheckConstraint(
            "sound IN ('no_client', 'ip_not_allowed', 'not_allowed', 'max_calls_reached', 'daily_limit_reached', 'no_outgoing_ddi', 'cannot_be_billed', 'insufficient_balance', 'invalid_number', 'destination_unreachable', 'service_unavailable', 'recording_started', 'recording_stopped')",
            name=op.f("ck_client_locutions_sound"),
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_client_locutions_client_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_locutions")),
        sa.UniqueConstraint(
            "client_id",
            "sound",
            "language",
            name=op.f("uq_client_locutions_client_id_sound_language"),
        ),
    )


def downgrade() -> None:
    op.drop_table("client_locutions")
