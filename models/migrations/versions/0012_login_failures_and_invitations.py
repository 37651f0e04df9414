"""failed logins shared by every API process; one-time links to set a password

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 23:50:00.000000

``login_failures`` counts failed logins per (username, source) pair -- the pair kept as its
SHA-256 -- so every API process on the database refuses the same guesser.
``admin_invitations`` holds the one-time links of the ``access_credentials`` e-mail, as the
SHA-256 of their token, each for one administrator (god or brand, or client).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import models.base

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_MYSQL: dict[str, Any] = {"mysql_collate": "utf8mb4_nopad_bin", "mysql_charset": "utf8mb4"}
_ONE_ADMIN = (
    "(platform_admin_id IS NULL AND client_admin_id IS NOT NULL)"
    " OR (platform_admin_id IS NOT NULL AND client_admin_id IS NULL)"
)


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("pair", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_at", models.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("pair", name=op.f("pk_login_failures")),
        **_MYSQL,
    )
    op.create_index(
        op.f("ix_login_failures_first_at"), "login_failures", ["first_at"], unique=False
    )
    op.create_table(
        "admin_invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("platform_admin_id", sa.Integer(), nullable=True),
        sa.Column("client_admin_id", sa.Integer(), nullable=True),
        sa.Column("created_at", models.base.UTCDateTime(), nullable=False),
        sa.Column("expires_at", models.base.UTCDateTime(), nullable=False),
        sa.CheckConstraint(_ONE_ADMIN, name=op.f("ck_admin_invitations_one_admin")),
        sa.ForeignKeyConstraint(
            ["platform_admin_id"],
            ["platform_admins.id"],
            name=op.f("fk_admin_invitations_platform_admin_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_admin_id"],
            ["client_admins.id"],
            name=op.f("fk_admin_invitations_client_admin_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_invitations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_admin_invitations_token_hash")),
        **_MYSQL,
    )
    for column in ("platform_admin_id", "client_admin_id", "expires_at"):
        op.create_index(
            op.f(f"ix_admin_invitations_{column}"), "admin_invitations", [column], unique=False
        )


def downgrade() -> None:
    op.drop_table("admin_invitations")
    op.drop_table("login_failures")
