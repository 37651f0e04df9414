"""Brands, clients (tenants) and what belongs to a client: users, terminals, extensions, DDIs."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, children
from models.vocabulary import (
    BILLING_METHODS,
    DDI_ROUTES,
    DISTRIBUTE_METHODS,
    EXTENSION_ROUTES,
    FEATURES,
    ON_DEMAND_RECORDING,
    RECORD_CALLS,
    in_list,
)

if TYPE_CHECKING:
    from models.admins import AdminPrivilege
    from models.billing import RatingPlanGroup, RatingProfile
    from models.platform import (
        BrandNotificationTemplate,
        ClientNotificationTemplate,
        NotificationTemplate,
    )
    from models.routing import CallAcl, Carrier, MatchList, OutboundRoute, OutgoingDdiRule


class Currency(Base):
    """An ISO 4217 currency; prices and balances are in their client's currency."""

    __tablename__ = "currencies"
    __table_args__ = (CheckConstraint("length(code) = 3", name="code_iso4217"),)

    code: Mapped[str] = mapped_column(String(3), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(8), default="")


class Brand(Base):
    """A reseller: owns clients and gives them their defaults."""

    __tablename__ = "brands"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    default_language: Mapped[str] = mapped_column(String(8), default="en")
    default_timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    default_currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"), default="EUR")
    default_country: Mapped[str] = mapped_column(String(2), default="ES")

    features: Mapped[list[BrandFeature]] = children(
        back_populates="brand", order_by="BrandFeature.feature"
    )
    corporations: Mapped[list[Corporation]] = children(
        back_populates="brand", order_by="Corporation.name"
    )
    carriers: Mapped[list[Carrier]] = children(back_populates="brand", order_by="Carrier.name")
    outbound_routes: Mapped[list[OutboundRoute]] = children(order_by="OutboundRoute.id")
    rating_plan_groups: Mapped[list[RatingPlanGroup]] = children(order_by="RatingPlanGroup.name")
    templates: Mapped[list[NotificationTemplate]] = children(
        order_by="NotificationTemplate.name",
        primaryjoin="and_(Brand.id == NotificationTemplate.brand_id, "
        "NotificationTemplate.client_id.is_(None))",
    )
    template_choices: Mapped[list[BrandNotificationTemplate]] = children(
        order_by="BrandNotificationTemplate.type"
    )
    clients: Mapped[list[Client]] = relationship(
        back_populates="brand", order_by="Client.name", lazy="raise"
    )


class BrandFeature(Base):
    __tablename__ = "brand_features"
    __table_args__ = (CheckConstraint(in_list("feature", FEATURES), name="known"),)

    brand_id: Mapped[int] = mapped_column(
        ForeignKey("brands.id", ondelete="CASCADE"), primary_key=True
    )
    feature: Mapped[str] = mapped_column(String(32), primary_key=True)

    brand: Mapped[Brand] = relationship(back_populates="features", lazy="raise")


class Corporation(Base):
    """Clients of one corporation may dial each other's extensions (inter-VPBX)."""

    __tablename__ = "corporations"
    __table_args__ = (UniqueConstraint("brand_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))

    brand: Mapped[Brand] = relationship(back_populates="corporations", lazy="raise")


class Client(Base):
    """A Virtual PBX client (tenant) and every setting of DESIGN §3.1."""

    __tablename__ = "clients"
    __table_args__ = (
        UniqueConstraint("brand_id", "name"),
        CheckConstraint(in_list("billing_method", BILLING_METHODS), name="billing_method"),
        CheckConstraint(in_list("distribute_method", DISTRIBUTE_METHODS), name="distribute"),
        CheckConstraint(
            "distribute_method <> 'static' OR application_server_id IS NOT NULL",
            name="static_needs_server",
        ),
        CheckConstraint(in_list("on_demand_recording", ON_DEMAND_RECORDING), name="on_demand"),
        CheckConstraint(
            "on_demand_recording = 'off' OR on_demand_record_code IS NOT NULL",
            name="on_demand_code",
        ),
        CheckConstraint("max_calls >= 0", name="max_calls"),
        CheckConstraint("max_daily_usage IS NULL OR max_daily_usage >= 0", name="max_daily_usage"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(128))
    sip_domain: Mapped[str] = mapped_column(String(253), unique=True)
    corporation_id: Mapped[int | None] = mapped_column(
        ForeignKey("corporations.id", ondelete="SET NULL"), index=True
    )

    # Locale: numbers are normalised to E.164 with the client's country.
    language: Mapped[str] = mapped_column(String(8))
    timezone: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    country: Mapped[str] = mapped_column(String(2))

    billing_method: Mapped[str] = mapped_column(String(16), default="none")
    balance: Mapped[Decimal] = mapped_column(default=Decimal(0))

    max_calls: Mapped[int] = mapped_column(default=0)
    filter_by_ip: Mapped[bool] = mapped_column(default=False)
    max_daily_usage: Mapped[Decimal | None]
    max_daily_usage_email: Mapped[str | None] = mapped_column(String(254))
    # A (pseudo)prepaid balance falling below the threshold sends one e-mail per crossing.
    low_balance_threshold: Mapped[Decimal | None]
    low_balance_email: Mapped[str | None] = mapped_column(String(254))

    # Invoice data and what the client may see.
    tax_id: Mapped[str | None] = mapped_column(String(64))
    postal_address: Mapped[str | None]
    postal_code: Mapped[str | None] = mapped_column(String(16))
    town: Mapped[str | None] = mapped_column(String(128))
    province: Mapped[str | None] = mapped_column(String(128))
    invoice_country: Mapped[str | None] = mapped_column(String(2))
    show_invoices: Mapped[bool] = mapped_column(default=False)
    show_rating_profiles: Mapped[bool] = mapped_column(default=False)
    show_external_call_prices: Mapped[bool] = mapped_column(default=False)

    outgoing_ddi_id: Mapped[int | None] = mapped_column(
        ForeignKey("ddis.id", ondelete="SET NULL", use_alter=True)
    )
    outgoing_ddi_rule_id: Mapped[int | None] = mapped_column(
        ForeignKey("outgoing_ddi_rules.id", ondelete="SET NULL", use_alter=True)
    )
    media_relay_set_id: Mapped[int | None] = mapped_column(
        ForeignKey("media_relay_sets.id", ondelete="SET NULL")
    )
    # Platform-operator settings, not client-editable.
    distribute_method: Mapped[str] = mapped_column(String(8), default="hash")
    application_server_id: Mapped[int | None] = mapped_column(
        ForeignKey("application_servers.id", ondelete="RESTRICT")
    )

    on_demand_recording: Mapped[str] = mapped_column(String(16), default="off")
    on_demand_record_code: Mapped[str | None] = mapped_column(String(8))
    allow_recording_removal: Mapped[bool] = mapped_column(default=False)

    brand: Mapped[Brand] = relationship(back_populates="clients", lazy="raise")
    features: Mapped[list[ClientFeature]] = children(order_by="ClientFeature.feature")
    authorized_sources: Mapped[list[ClientAuthorizedSource]] = children(
        order_by="ClientAuthorizedSource.id"
    )
    geoip_countries: Mapped[list[ClientGeoipCountry]] = children(
        order_by="ClientGeoipCountry.country"
    )
    users: Mapped[list[User]] = children(order_by="User.name")
    terminals: Mapped[list[Terminal]] = children(order_by="Terminal.name")
    extensions: Mapped[list[Extension]] = children(order_by="Extension.number")
    ddis: Mapped[list[Ddi]] = children(order_by="Ddi.e164", foreign_keys="Ddi.client_id")
    match_lists: Mapped[list[MatchList]] = children(order_by="MatchList.name")
    call_acls: Mapped[list[CallAcl]] = children(order_by="CallAcl.name")
    outgoing_ddi_rules: Mapped[list[OutgoingDdiRule]] = children(
        order_by="OutgoingDdiRule.name", foreign_keys="OutgoingDdiRule.client_id"
    )
    rating_profiles: Mapped[list[RatingProfile]] = children(
        order_by="RatingProfile.activation_time"
    )
    admins: Mapped[list[ClientAdmin]] = children(order_by="ClientAdmin.username")
    templates: Mapped[list[NotificationTemplate]] = children(order_by="NotificationTemplate.name")
    template_choices: Mapped[list[ClientNotificationTemplate]] = children(
        order_by="ClientNotificationTemplate.type"
    )


class ClientFeature(Base):
    __tablename__ = "client_features"
    __table_args__ = (CheckConstraint(in_list("feature", FEATURES), name="known"),)

    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True
    )
    feature: Mapped[str] = mapped_column(String(32), primary_key=True)


class ClientAuthorizedSource(Base):
    """A network (IPv4 or IPv6 CIDR) the client's terminals may call from."""

    __tablename__ = "client_authorized_sources"
    __table_args__ = (UniqueConstraint("client_id", "cidr"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    cidr: Mapped[str] = mapped_column(String(43))
    description: Mapped[str] = mapped_column(default="")


class ClientGeoipCountry(Base):
    """An ISO 3166 country the client's terminals may call from (GeoIP)."""

    __tablename__ = "client_geoip_countries"
    __table_args__ = (CheckConstraint("length(country) = 2", name="iso3166"),)

    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True
    )
    country: Mapped[str] = mapped_column(String(2), primary_key=True)


class User(Base):
    """A person of a client; language and timezone override the client's."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("client_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    email: Mapped[str | None] = mapped_column(String(254))
    language: Mapped[str | None] = mapped_column(String(8))
    timezone: Mapped[str | None] = mapped_column(String(64))
    outgoing_ddi_id: Mapped[int | None] = mapped_column(
        ForeignKey("ddis.id", ondelete="SET NULL", use_alter=True)
    )
    outgoing_ddi_rule_id: Mapped[int | None] = mapped_column(
        ForeignKey("outgoing_ddi_rules.id", ondelete="SET NULL", use_alter=True)
    )
    call_acl_id: Mapped[int | None] = mapped_column(
        ForeignKey("call_acls.id", ondelete="SET NULL", use_alter=True)
    )


class Terminal(Base):
    """A SIP device: one PJSIP endpoint, named uniquely across the platform.

    Its password is stored only as the digest ``ha1`` = md5(name:client's SIP domain:password)
    (:func:`models.provisioning.passwords.sip_ha1`): a change of the client's domain needs the
    password again.
    """

    __tablename__ = "terminals"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), unique=True
    )
    name: Mapped[str] = mapped_column(String(64), unique=True)
    ha1: Mapped[str] = mapped_column(String(32))
    codecs: Mapped[str] = mapped_column(String(128), default="ulaw,alaw")


class Extension(Base):
    """A short number of a client, ringing a user or forwarding to a number."""

    __tablename__ = "extensions"
    __table_args__ = (
        UniqueConstraint("client_id", "number"),
        CheckConstraint(in_list("route", EXTENSION_ROUTES), name="route"),
        CheckConstraint(
            "(route = 'user' AND user_id IS NOT NULL)"
            " OR (route = 'number' AND target_number IS NOT NULL)",
            name="route_target",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(16))
    route: Mapped[str] = mapped_column(String(16), default="user")
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    target_number: Mapped[str | None] = mapped_column(String(32))


class Ddi(Base):
    """A public number (E.164, digits only) owned by one client."""

    __tablename__ = "ddis"
    __table_args__ = (
        CheckConstraint(in_list("route", DDI_ROUTES), name="route"),
        CheckConstraint(in_list("record_calls", RECORD_CALLS), name="record_calls"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    e164: Mapped[str] = mapped_column(String(16), unique=True)
    route: Mapped[str] = mapped_column(String(16), default="user")
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    extension_id: Mapped[int | None] = mapped_column(
        ForeignKey("extensions.id", ondelete="SET NULL")
    )
    record_calls: Mapped[str] = mapped_column(String(16), default="none")
    language: Mapped[str | None] = mapped_column(String(8))
    carrier_id: Mapped[int | None] = mapped_column(ForeignKey("carriers.id", ondelete="SET NULL"))


class ClientAdmin(Base):
    """A login of the client portal; the password is stored only as a hash.

    A ``restricted`` admin may use only what its privileges allow (one
    :class:`~models.admins.AdminPrivilege` per section, DESIGN §3.13)."""

    __tablename__ = "client_admins"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    username: Mapped[str] = mapped_column(String(128), unique=True)
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    restricted: Mapped[bool] = mapped_column(default=False)

    privileges: Mapped[list[AdminPrivilege]] = children(
        order_by="AdminPrivilege.section", foreign_keys="AdminPrivilege.client_admin_id"
    )
