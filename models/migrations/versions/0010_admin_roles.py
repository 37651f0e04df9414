"""administrator roles, privileges, API tokens and the audit trail

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 21:00:00.000000

God and brand administrators (``platform_admins``), per-section privileges of restricted
administrators of any level (``admin_privileges``: create, read, update, delete), the API's
bearer tokens (stored hashed) and the audit trail. A client admin's deny-list of sections
(``client_admin_restrictions``) becomes privileges: an admin with any denied section is
restricted, each denied section has every verb off and every other section every verb on.
The downgrade turns them back into a deny-list, failing closed: a section where any verb
is off is denied.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import models.base

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The vocabulary as of this revision (later additions need their own migration).
_OLD_SECTIONS = (
    "users",
    "terminals",
    "extensions",
    "ddis",
    "call_acls",
    "outgoing_ddi_rules",
    "recordings",
    "billable_calls",
    "invoices",
    "rating_profiles",
    "notification_templates",
)
_SECTIONS = ("client", *_OLD_SECTIONS, "audit")
_MYSQL: dict[str, Any] = {"mysql_collate": "utf8mb4_nopad_bin", "mysql_charset": "utf8mb4"}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


_ONE_ADMIN = (
    "(platform_admin_id IS NULL AND client_admin_id IS NOT NULL)"
    " OR (platform_admin_id IS NOT NULL AND client_admin_id IS NULL)"
)


def upgrade() -> None:
    op.create_table(
        "platform_admins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("brand_id", sa.Integer(), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("restricted", sa.Boolean(), nullable=False),
        sa.CheckConstraint(_in("role", ("god", "brand")), name=op.f("ck_platform_admins_role")),
        sa.CheckConstraint(
            "(role = 'god' AND brand_id IS NULL) OR (role = 'brand' AND brand_id IS NOT NULL)",
            name=op.f("ck_platform_admins_role_brand"),
        ),
        sa.ForeignKeyConstraint(
            ["brand_id"],
            ["brands.id"],
            name=op.f("fk_platform_admins_brand_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_admins")),
        sa.UniqueConstraint("username", name=op.f("uq_platform_admins_username")),
        **_MYSQL,
    )
    op.create_index(
        op.f("ix_platform_admins_brand_id"), "platform_admins", ["brand_id"], unique=False
    )
    op.create_table(
        "admin_privileges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform_admin_id", sa.Integer(), nullable=True),
        sa.Column("client_admin_id", sa.Integer(), nullable=True),
        sa.Column("section", sa.String(length=32), nullable=False),
        sa.Column("can_create", sa.Boolean(), nullable=False),
        sa.Column("can_read", sa.Boolean(), nullable=False),
        sa.Column("can_update", sa.Boolean(), nullable=False),
        sa.Column("can_delete", sa.Boolean(), nullable=False),
        sa.CheckConstraint(_in("section", _SECTIONS), name=op.f("ck_admin_privileges_section")),
        sa.CheckConstraint(_ONE_ADMIN, name=op.f("ck_admin_privileges_one_admin")),
        sa.ForeignKeyConstraint(
            ["platform_admin_id"],
            ["platform_admins.id"],
            name=op.f("fk_admin_privileges_platform_admin_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_admin_id"],
            ["client_admins.id"],
            name=op.f("fk_admin_privileges_client_admin_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_privileges")),
        sa.UniqueConstraint(
            "platform_admin_id",
            "section",
            name=op.f("uq_admin_privileges_platform_admin_id_section"),
        ),
        sa.UniqueConstraint(
            "client_admin_id", "section", name=op.f("uq_admin_privileges_client_admin_id_section")
        ),
        **_MYSQL,
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("platform_admin_id", sa.Integer(), nullable=True),
        sa.Column("client_admin_id", sa.Integer(), nullable=True),
        sa.Column("created_at", models.base.UTCDateTime(), nullable=False),
        sa.Column("expires_at", models.base.UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.CheckConstraint(_ONE_ADMIN, name=op.f("ck_api_tokens_one_admin")),
        sa.ForeignKeyConstraint(
            ["platform_admin_id"],
            ["platform_admins.id"],
            name=op.f("fk_api_tokens_platform_admin_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_admin_id"],
            ["client_admins.id"],
            name=op.f("fk_api_tokens_client_admin_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
        **_MYSQL,
    )
    for column in ("platform_admin_id", "client_admin_id", "expires_at"):
        op.create_index(op.f(f"ix_api_tokens_{column}"), "api_tokens", [column], unique=False)
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", models.base.UTCDateTime(), nullable=False),
        sa.Column("actor_kind", sa.String(length=8), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("brand_id", sa.Integer(), nullable=True),
        sa.Column("client_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.CheckConstraint(
            _in("actor_kind", ("god", "brand", "client", "cli")),
            name=op.f("ck_audit_entries_actor_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
        **_MYSQL,
    )
    for column in ("at", "brand_id", "client_id"):
        op.create_index(op.f(f"ix_audit_entries_{column}"), "audit_entries", [column], unique=False)
    # Plain ALTER TABLE, never a batch: on SQLite a batch copies the table, and dropping
    # the old ``client_admins`` would cascade to the rows that refer to it.
    op.add_column(
        "client_admins",
        sa.Column("restricted", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    _deny_list_to_privileges()
    op.drop_table("client_admin_restrictions")


def _deny_list_to_privileges() -> None:
    bind = op.get_bind()
    restrictions = sa.table(
        "client_admin_restrictions", sa.column("admin_id", sa.Integer), sa.column("section")
    )
    denied: dict[int, set[str]] = {}
    for admin_id, section in bind.execute(
        sa.select(restrictions.c.admin_id, restrictions.c.section)
    ):
        denied.setdefault(admin_id, set()).add(section)
    if not denied:
        return
    admins = sa.table("client_admins", sa.column("id", sa.Integer), sa.column("restricted"))
    bind.execute(
        sa.update(admins).where(admins.c.id.in_(sorted(denied))).values(restricted=sa.true())
    )
    privileges = sa.table(
        "admin_privileges",
        sa.column("client_admin_id", sa.Integer),
        sa.column("section"),
        *(sa.column(f"can_{verb}", sa.Boolean) for verb in ("create", "read", "update", "delete")),
    )
    rows = []
    for admin_id, sections in sorted(denied.items()):
        for section in _SECTIONS:
            on = section not in sections
            rows.append(
                {
                    "client_admin_id": admin_id,
                    "section": section,
                    "can_create": on,
                    "can_read": on,
                    "can_update": on,
                    "can_delete": on,
                }
            )
    bind.execute(sa.insert(privileges), rows)


def downgrade() -> None:
    op.create_table(
        "client_admin_restrictions",
        sa.Column("admin_id", sa.Integer(), nullable=False),
        sa.Column("section", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            _in("section", _OLD_SECTIONS), name=op.f("ck_client_admin_restrictions_known")
        ),
        sa.ForeignKeyConstraint(
            ["admin_id"],
            ["client_admins.id"],
            name=op.f("fk_client_admin_restrictions_admin_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("admin_id", "section", name=op.f("pk_client_admin_restrictions")),
        **_MYSQL,
    )
    bind = op.get_bind()
    admins = sa.table("client_admins", sa.column("id", sa.Integer), sa.column("restricted"))
    privileges = sa.table(
        "admin_privileges",
        sa.column("client_admin_id", sa.Integer),
        sa.column("section"),
        *(sa.column(f"can_{verb}", sa.Boolean) for verb in ("create", "read", "update", "delete")),
    )
    full: dict[int, set[str]] = {}
    query = sa.select(privileges.c.client_admin_id, privileges.c.section).where(
        privileges.c.client_admin_id.is_not(None),
        privileges.c.can_create,
        privileges.c.can_read,
        privileges.c.can_update,
        privileges.c.can_delete,
    )
    for admin_id, section in bind.execute(query):
        full.setdefault(admin_id, set()).add(section)
    restricted = [row[0] for row in bind.execute(sa.select(admins.c.id).where(admins.c.restricted))]
    rows = [
        {"admin_id": admin_id, "section": section}
        for admin_id in restricted
        for section in _OLD_SECTIONS
        if section not in full.get(admin_id, set())
    ]
    if rows:
        table = sa.table(
            "client_admin_restrictions", sa.column("admin_id", sa.Integer), sa.column("section")
        )
        bind.execute(sa.insert(table), rows)
    op.drop_column("client_admins", "restricted")
    op.drop_table("audit_entries")
    op.drop_table("api_tokens")
    op.drop_table("admin_privileges")
    op.drop_table("platform_admins")
