"""edge: Kamailio's registrar tables, media relays, drained servers and the edge's views

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 21:00:00.000000

In ``edge`` mode Kamailio sits in front of every application server and reads the shared
database directly:

* ``location`` (Kamailio 5.6 usrloc schema version 9; our own definition, its domain as
  long as a client's ``sip_domain``) holds every registered contact (usrloc ``db_mode=3``,
  so every edge instance sees the same contacts), and Kamailio's ``version`` table names
  the schema version of each table or view a Kamailio module checks;
* ``media_relays``: the rtpengine instances of each media relay set;
* ``application_servers.drained`` (no new calls) and ``sip_port``;
* views in the shapes Kamailio's modules read (``auth_db``, ``dispatcher``, ``rtpengine``
  and three ``htable`` tables), so that provisioning a terminal, a DDI or a carrier needs
  only a reload of the edge, never a new configuration file.

The views exist only on PostgreSQL and MariaDB: the edge needs a server database, and
SQLite keeps just the tables. Their definitions are frozen here (a later revision that
changes one replaces the view), built as SQLAlchemy selects and compiled per dialect.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Dialect

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DISPATCHER_SET = 1
"""The dispatcher group of every application server."""
DRAINED_FLAGS, ACTIVE_FLAGS = 4, 8
"""Dispatcher flags: 4 = disabled (never selected, still matched by ``ds_is_from_list``),
8 = probing (selected while it answers OPTIONS)."""

_clients = sa.table(
    "clients",
    sa.column("id", sa.Integer()),
    sa.column("sip_domain", sa.String()),
    sa.column("media_relay_set_id", sa.Integer()),
    sa.column("distribute_method", sa.String()),
    sa.column("application_server_id", sa.Integer()),
)
_terminals = sa.table(
    "terminals",
    sa.column("client_id", sa.Integer()),
    sa.column("name", sa.String()),
    sa.column("ha1", sa.String()),
)
_servers = sa.table(
    "application_servers",
    sa.column("id", sa.Integer()),
    sa.column("name", sa.String()),
    sa.column("address", sa.String()),
    sa.column("sip_port", sa.Integer()),
    sa.column("drained", sa.Boolean()),
)
_relays = sa.table(
    "media_relays",
    sa.column("id", sa.Integer()),
    sa.column("media_relay_set_id", sa.Integer()),
    sa.column("control_url", sa.String()),
    sa.column("weight", sa.Integer()),
    sa.column("enabled", sa.Boolean()),
)
_ddis = sa.table("ddis", sa.column("client_id", sa.Integer()), sa.column("e164", sa.String()))
_carriers = sa.table("carriers", sa.column("host", sa.String()), sa.column("endpoint", sa.String()))

VERSIONS = {
    "version": 1,
    "location": 9,
    "kamailio_dispatcher": 4,
    "kamailio_rtpengine": 1,
    "kamailio_clients": 2,
    "kamailio_ddis": 2,
    "kamailio_carriers": 2,
    "kamailio_terminals": 2,
}
"""The rows of Kamailio's ``version`` table: the schema version each module expects."""


def _text(value: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    return sa.cast(value, sa.String(255))


def _server_uri() -> sa.ColumnElement[str]:
    """``sip:ADDRESS:PORT``, an IPv6 address in brackets."""
    host = sa.case(
        (_servers.c.address.like("%:%"), sa.func.concat("[", _servers.c.address, "]")),
        else_=_servers.c.address,
    )
    return sa.func.concat("sip:", host, ":", _text(_servers.c.sip_port))


def _htable(key: sa.ColumnElement[str], value: sa.ColumnElement[str]) -> list[sa.Label[Any]]:
    """The columns ``htable`` loads a table from (string keys and values, no expiry)."""
    return [
        key.label("key_name"),
        sa.literal(0).label("key_type"),
        sa.literal(0).label("value_type"),
        value.label("key_value"),
        sa.literal(0).label("expires"),
    ]


def views() -> dict[str, sa.Select[Any] | sa.Subquery]:
    """Every view the edge reads, by name."""
    relay_set = sa.func.coalesce(_clients.c.media_relay_set_id, 0)
    client_key = _text(_clients.c.id)
    return {
        # auth_db: user@domain with its HA1; the client and its relay set for the call.
        "kamailio_credentials": sa.select(
            _terminals.c.name.label("username"),
            _clients.c.sip_domain.label("domain"),
            _terminals.c.ha1.label("ha1"),
            _clients.c.id.label("client_id"),
            relay_set.label("relay_set"),
        ).select_from(_terminals.join(_clients, _clients.c.id == _terminals.c.client_id)),
        # dispatcher (table version 4): group 1 = every server, drained ones disabled.
        "kamailio_dispatcher": sa.select(
            _servers.c.id.label("id"),
            sa.literal(DISPATCHER_SET).label("setid"),
            _server_uri().label("destination"),
            sa.case(
                (_servers.c.drained, sa.literal(DRAINED_FLAGS)), else_=sa.literal(ACTIVE_FLAGS)
            ).label("flags"),
            sa.literal(0).label("priority"),
            sa.literal("").label("attrs"),
            _servers.c.name.label("description"),
        ),
        # rtpengine: the instances of each set.
        "kamailio_rtpengine": sa.select(
            _relays.c.id.label("id"),
            _relays.c.media_relay_set_id.label("setid"),
            _relays.c.control_url.label("url"),
            _relays.c.weight.label("weight"),
            sa.case((_relays.c.enabled, sa.literal(0)), else_=sa.literal(1)).label("disabled"),
        ),
        # htable "clients": <id>:method, <id>:set, and for a static client <id>:server
        # (its server's URI) and <id>:drained (1 when that server is drained).
        "kamailio_clients": sa.union_all(
            sa.select(
                *_htable(sa.func.concat(client_key, ":method"), _clients.c.distribute_method)
            ),
            sa.select(*_htable(sa.func.concat(client_key, ":set"), _text(relay_set))),
            sa.select(*_htable(sa.func.concat(client_key, ":server"), _server_uri())).select_from(
                _clients.join(_servers, _servers.c.id == _clients.c.application_server_id)
            ),
            sa.select(
                *_htable(
                    sa.func.concat(client_key, ":drained"),
                    sa.case((_servers.c.drained, sa.literal("1")), else_=sa.literal("0")),
                )
            ).select_from(
                _clients.join(_servers, _servers.c.id == _clients.c.application_server_id)
            ),
        ).subquery(),
        # htable "ddis": the number without "+" -> its client's id.
        "kamailio_ddis": sa.select(
            *_htable(sa.func.replace(_ddis.c.e164, "+", ""), _text(_ddis.c.client_id))
        ),
        # htable "carriers": a carrier's address -> its endpoint name (X-CC-Carrier).
        "kamailio_carriers": sa.select(*_htable(_carriers.c.host, _carriers.c.endpoint)),
        # htable "terminals": name@domain of each terminal and @domain of each client
        # -> the client's id (a leg from a server to an unknown one gets 404).
        "kamailio_terminals": sa.union_all(
            sa.select(
                *_htable(sa.func.concat(_terminals.c.name, "@", _clients.c.sip_domain), client_key)
            ).select_from(_terminals.join(_clients, _clients.c.id == _terminals.c.client_id)),
            sa.select(*_htable(sa.func.concat("@", _clients.c.sip_domain), client_key)),
        ).subquery(),
    }


def create_view_sql(name: str, dialect: Dialect) -> str:
    """``CREATE VIEW name AS ...`` of one view, compiled for ``dialect``."""
    view = views()[name]
    query = sa.select(view) if isinstance(view, sa.Subquery) else view
    compiled = query.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    return f"CREATE VIEW {name} AS {compiled}"


def upgrade() -> None:
    op.create_table(
        "version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("table_name", sa.String(length=32), nullable=False),
        sa.Column("table_version", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_version")),
        sa.UniqueConstraint("table_name", name=op.f("uq_version_table_name")),
        mysql_charset="utf8mb4",
    )
    op.bulk_insert(
        sa.table("version", sa.column("table_name"), sa.column("table_version")),
        [{"table_name": name, "table_version": number} for name, number in VERSIONS.items()],
    )
    op.create_table(
        "location",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ruid", sa.String(length=64), server_default="", nullable=False),
        sa.Column("username", sa.String(length=64), server_default="", nullable=False),
        sa.Column("domain", sa.String(length=253)),
        sa.Column("contact", sa.String(length=512), server_default="", nullable=False),
        sa.Column("received", sa.String(length=128)),
        sa.Column("path", sa.String(length=512)),
        sa.Column("expires", sa.DateTime(), server_default="2030-05-28 21:32:15", nullable=False),
        sa.Column("q", sa.Float(), server_default="1.0", nullable=False),
        sa.Column(
            "callid", sa.String(length=255), server_default="Default-Call-ID", nullable=False
        ),
        sa.Column("cseq", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "last_modified", sa.DateTime(), server_default="2000-01-01 00:00:01", nullable=False
        ),
        *[
            sa.Column(name, sa.Integer(), server_default="0", nullable=False)
            for name in (
                "flags",
                "cflags",
                "reg_id",
                "server_id",
                "connection_id",
                "keepalive",
                "partition",
            )
        ],
        sa.Column("user_agent", sa.String(length=255), server_default="", nullable=False),
        sa.Column("socket", sa.String(length=64)),
        sa.Column("methods", sa.Integer()),
        sa.Column("instance", sa.String(length=255)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_location")),
        sa.UniqueConstraint("ruid", name=op.f("uq_location_ruid")),
        mysql_charset="utf8mb4",
    )
    # (username, domain) only: with the contact too the key outgrows MariaDB's limit.
    op.create_index("location_account", "location", ["username", "domain"])
    op.create_index("location_expires", "location", ["expires"])
    op.create_table(
        "media_relays",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("media_relay_set_id", sa.Integer(), nullable=False),
        sa.Column("control_url", sa.String(length=64), nullable=False),
        sa.Column("weight", sa.Integer(), server_default="1", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.CheckConstraint("weight >= 1", name=op.f("ck_media_relays_weight")),
        sa.ForeignKeyConstraint(
            ["media_relay_set_id"],
            ["media_relay_sets.id"],
            name=op.f("fk_media_relays_media_relay_set_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_relays")),
        sa.UniqueConstraint(
            "media_relay_set_id",
            "control_url",
            name=op.f("uq_media_relays_media_relay_set_id_control_url"),
        ),
        mysql_collate="utf8mb4_nopad_bin",
        mysql_charset="utf8mb4",
    )
    # Plain ALTER TABLE, never a batch (a batch copies the table on SQLite).
    op.add_column(
        "application_servers",
        sa.Column("sip_port", sa.Integer(), server_default="5060", nullable=False),
    )
    op.add_column(
        "application_servers",
        sa.Column("drained", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    bind = op.get_bind()
    if bind.dialect.name in ("postgresql", "mysql", "mariadb"):
        for name in views():
            # Its colons are text, not bind parameters.
            op.execute(sa.text(create_view_sql(name, bind.dialect).replace(":", "\\:")))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name in ("postgresql", "mysql", "mariadb"):
        for name in reversed(list(views())):
            op.execute(f"DROP VIEW {name}")
    op.drop_column("application_servers", "drained")
    op.drop_column("application_servers", "sip_port")
    op.drop_table("media_relays")
    op.drop_index("location_expires", table_name="location")
    op.drop_index("location_account", table_name="location")
    op.drop_table("location")
    op.drop_table("version")
