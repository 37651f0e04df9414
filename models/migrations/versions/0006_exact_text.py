"""exact text on MariaDB: names and numbers compare byte for byte, as on SQLite and PostgreSQL

MariaDB's default collation ignores case, accents and trailing spaces: terminal
``ACME-NORTH-ANA``, ``acme-north-ána`` and ``acme-north-ana `` were all the terminal
``acme-north-ana``, ``101 `` dialled extension 101, and match lists ``premium`` and
``PREMIUM`` collided. Every table (and the database's default, for tables created
later) moves to ``utf8mb4_nopad_bin``: binary, and without PAD SPACE, so a trailing
space is a different text. SIP domains are DNS names: provisioning stores them in
lower case, so they still compare without case. SQLite and PostgreSQL already compare
exactly; this revision does nothing there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 17:30:00.000000
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine.interfaces import ReflectedForeignKeyConstraint

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

EXACT = "utf8mb4_nopad_bin"
LOOSE = "utf8mb4_general_ci"
"""MariaDB's default for utf8mb4, which a downgrade restores."""


def _collate(collation: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return
    database = bind.execute(sa.text("SELECT DATABASE()")).scalar_one()
    op.execute(sa.text(f"ALTER DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE {collation}"))
    # MariaDB will not change the collation of a column a foreign key joins (currency
    # codes), even with the checks off: those keys go, the tables change, the keys return.
    inspector = sa.inspect(bind)
    tables = inspector.get_table_names()
    textual: list[tuple[str, ReflectedForeignKeyConstraint]] = []
    for table in tables:
        texts = {
            column["name"]
            for column in inspector.get_columns(table)
            if isinstance(column["type"], sa.String)
        }
        for key in inspector.get_foreign_keys(table):
            if texts.intersection(key["constrained_columns"]):
                textual.append((table, key))
    for table, key in textual:
        op.drop_constraint(str(key["name"]), table, type_="foreignkey")
    for table in tables:
        op.execute(
            sa.text(f"ALTER TABLE `{table}` CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}")
        )
    for table, key in textual:
        options: dict[str, Any] = dict(key.get("options", {}))
        op.create_foreign_key(
            key["name"],
            table,
            key["referred_table"],
            key["constrained_columns"],
            key["referred_columns"],
            ondelete=options.get("ondelete"),
            onupdate=options.get("onupdate"),
        )


def upgrade() -> None:
    _collate(EXACT)


def downgrade() -> None:
    _collate(LOOSE)
