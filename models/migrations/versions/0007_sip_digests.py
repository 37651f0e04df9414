"""sip digests: terminals keep md5(name:sip_domain:password), not the password

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 18:00:00.000000

Each terminal's clear password becomes its digest HA1, with the terminal's name as user
name and its client's SIP domain as realm: what Asterisk (``password_digest``) and a
Kamailio edge (``auth_db``, ``ha1`` column) check a SIP login against. The hash is
computed here, row by row, so the same code runs on SQLite, PostgreSQL and MariaDB.

A digest does not give the password back, so a downgrade cannot either: it leaves each
digest in the ``password`` column as ``ha1:<digest>``, which no terminal logs in with
until its password is provisioned again. Upgrading once more takes those digests back
as they are (a real password of that exact form is not expected).
"""

from __future__ import annotations

import hashlib
import re

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LEFT_BY_DOWNGRADE = re.compile(r"ha1:([0-9a-f]{32})")

terminals = sa.table(
    "terminals",
    sa.column("id", sa.Integer()),
    sa.column("client_id", sa.Integer()),
    sa.column("name", sa.String()),
    sa.column("password", sa.String()),
    sa.column("ha1", sa.String()),
)
clients = sa.table("clients", sa.column("id", sa.Integer()), sa.column("sip_domain", sa.String()))


def upgrade() -> None:
    with op.batch_alter_table("terminals") as table:
        table.add_column(sa.Column("ha1", sa.String(length=32), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            terminals.c.id, terminals.c.name, terminals.c.password, clients.c.sip_domain
        ).join(clients, clients.c.id == terminals.c.client_id)
    ).all()
    for terminal_id, name, password, domain in rows:
        kept = LEFT_BY_DOWNGRADE.fullmatch(password)
        # The realm is the domain as stored: what Asterisk's configuration will send.
        ha1 = (
            kept.group(1)
            if kept
            else hashlib.md5(f"{name}:{domain}:{password}".encode()).hexdigest()
        )
        bind.execute(terminals.update().where(terminals.c.id == terminal_id).values(ha1=ha1))
    with op.batch_alter_table("terminals") as table:
        table.alter_column("ha1", existing_type=sa.String(length=32), nullable=False)
        table.drop_column("password")


def downgrade() -> None:
    with op.batch_alter_table("terminals") as table:
        table.add_column(sa.Column("password", sa.String(length=128), nullable=True))
    op.execute(terminals.update().values(password=sa.literal("ha1:") + terminals.c.ha1))
    with op.batch_alter_table("terminals") as table:
        table.alter_column("password", existing_type=sa.String(length=128), nullable=False)
        table.drop_column("ha1")
