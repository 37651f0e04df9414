"""Declarative base, naming convention and column types shared by every model."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Dialect, MetaData, Numeric, String
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, relationship
from sqlalchemy.types import TypeDecorator

from models.vocabulary import TEXT_LENGTH

# Constraint names must be stable across SQLite, PostgreSQL and MariaDB so that
# migrations can address them; MariaDB caps identifiers at 64 characters.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}

MONEY = Numeric(18, 4, asdecimal=True)
"""Money and prices: exact decimals with four places, never floats."""


class UTCDateTime(TypeDecorator[datetime]):
    """An instant, stored as naive UTC on every backend and read back as aware UTC.

    SQLite and MariaDB keep no zone; storing UTC everywhere makes the three
    databases agree. Naive datetimes are refused: a wall time without a zone is a bug.
    """

    impl = DateTime(timezone=False).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Every table of the shared database."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012  (SQLAlchemy reads this class attribute)
        Decimal: MONEY,
        datetime: UTCDateTime(),
        str: String(TEXT_LENGTH),
    }


def children(order_by: str, **kwargs: Any) -> Any:
    """A parent's collection it owns: deleted with it, and never loaded behind your back."""
    return relationship(order_by=order_by, cascade="all, delete-orphan", lazy="raise", **kwargs)
