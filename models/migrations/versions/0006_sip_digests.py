"""sip digests: terminals keep md5(name:sip_domain:password), not the password

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 17:00:00.000000

Each terminal's clear password becomes its digest HA1, with the terminal's name as user
name and its client's SIP domain as realm: what Asterisk (``password_digest``) and a
Kamailio edge (``auth_db``, ``ha1`` column) check a SIP login against. The hash is
computed here, row by row, so the same code runs on SQLite, PostgreSQL and MariaDB.

There is no way back: a digest does not give the password again. A downgrade refuses;
restore a backup taken before the upgrade instead.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("terminals") as table:
        table.add_column(sa.Column("ha1", sa.String(length=32), nullable=True))
    terminals = sa.table(
        "terminals",
        sa.column("id", sa.Integer()),
        sa.column("client_id", sa.Integer()),
        sa.column("name", sa.String()),
        sa.column("password", sa.String()),
        sa.column("ha1", sa.String()),
    )
    clients = sa.table(
        "clients", sa.column("id", sa.Integer()), sa.column("sip_domain", sa.String())
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            terminals.c.id, terminals.c.name, terminals.c.password, clients.c.sip_domain
        ).join(clients, clients.c.id == terminals.c.client_id)
    ).all()
    for terminal_id, name, password, domain in rows:
        # The realm is the domain as stored: what Asterisk's configuration will send.
        ha1 = hashlib.md5(f"{name}:{domain}:{password}".encode()).hexdigest()
        bind.execute(terminals.update().where(terminals.c.id == terminal_id).values(ha1=ha1))
    with op.batch_alter_table("terminals") as table:
        table.alter_column("ha1", existing_type=sa.String(length=32), nullable=False)
        table.drop_column("password")


def downgrade() -> None:
    raise RuntimeError(
        "revision 0006 cannot be downgraded: terminals' SIP passwords are stored only as "
        "digests (HA1) and cannot be recovered; restore a backup taken before the upgrade"
    )
