"""application servers' console address and sealed console token

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 22:00:00.000000

Each application server's console (``/calls``) URL and its console token, so the HTTP API
reaches every server's live calls. The token is stored sealed (Fernet, with the API's
``api_secret_key``), never in clear: the database alone does not give it away.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE, never a batch: on SQLite a batch copies the table, and dropping
    # the old ``application_servers`` would fail (or cascade) on the clients that use one.
    op.add_column("application_servers", sa.Column("console_url", sa.String(length=255)))
    op.add_column("application_servers", sa.Column("console_token", sa.Text()))


def downgrade() -> None:
    op.drop_column("application_servers", "console_token")
    op.drop_column("application_servers", "console_url")
