"""Platform pieces: application servers, media relay sets, notification templates, recordings,
emergency numbers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, children
from models.vocabulary import BODY_TYPES, TEMPLATE_TYPES, in_list


class ApplicationServer(Base):
    """An Asterisk application server; each runs its own callcontrol and Stasis app."""

    __tablename__ = "application_servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    address: Mapped[str] = mapped_column(String(45))
    stasis_app: Mapped[str] = mapped_column(String(64), default="callcontrol")
    sip_port: Mapped[int] = mapped_column(default=5060, server_default="5060")
    """The UDP port its Asterisk takes SIP on (the edge's dispatcher sends there)."""
    drained: Mapped[bool] = mapped_column(default=False, server_default=false())
    """Edge mode: no new call is dispatched to it; its live calls and its legs to terminals
    still pass (``callcontrol platform drain``)."""
    console_url: Mapped[str | None] = mapped_column(String(255), default=None)
    """Where its console (``/calls``) answers, e.g. ``http://10.0.0.5:8089``."""
    console_token: Mapped[str | None] = mapped_column(Text, default=None)
    """Its ``console_token``, sealed with the API's ``api_secret_key`` (never in clear)."""


class EmergencyNumber(Base):
    """A number of a country that no guard ever blocks (DESIGN §3.5): a call of a client of
    ``country`` dialling ``number`` bypasses max calls, daily usage, billing and balance."""

    __tablename__ = "emergency_numbers"
    __table_args__ = (UniqueConstraint("country", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    country: Mapped[str] = mapped_column(String(2))
    """ISO 3166 alpha-2, as a client's ``country``."""
    number: Mapped[str] = mapped_column(String(16))
    """Digits, as a terminal dials them (``112``, ``091``)."""
    description: Mapped[str] = mapped_column(default="")


class MediaRelaySet(Base):
    """A group of media relays a client's RTP is anchored on."""

    __tablename__ = "media_relay_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(default="")

    relays: Mapped[list[MediaRelay]] = children(order_by="MediaRelay.control_url")


class MediaRelay(Base):
    """One rtpengine instance of a set, reached by the edge on its ng control socket."""

    __tablename__ = "media_relays"
    __table_args__ = (
        UniqueConstraint("media_relay_set_id", "control_url"),
        CheckConstraint("weight >= 1", name="weight"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    media_relay_set_id: Mapped[int] = mapped_column(
        ForeignKey("media_relay_sets.id", ondelete="CASCADE")
    )
    control_url: Mapped[str] = mapped_column(String(64))
    """``udp:IP:PORT`` of its ng control protocol (IPv6 in brackets)."""
    weight: Mapped[int] = mapped_column(default=1, server_default="1")
    enabled: Mapped[bool] = mapped_column(default=True, server_default=true())


class NotificationTemplate(Base):
    """An e-mail template of one type: generic (no owner), a brand's, or a client's."""

    __tablename__ = "notification_templates"
    __table_args__ = (
        CheckConstraint(in_list("type", TEMPLATE_TYPES), name="type"),
        CheckConstraint("brand_id IS NULL OR client_id IS NULL", name="one_owner"),
        UniqueConstraint("brand_id", "client_id", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(32))
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))

    contents: Mapped[list[NotificationTemplateContent]] = children(
        order_by="NotificationTemplateContent.language"
    )


class NotificationTemplateContent(Base):
    """The text of a template in one language (a Jinja2 template, rendered sandboxed)."""

    __tablename__ = "notification_template_contents"
    __table_args__ = (
        UniqueConstraint("template_id", "language"),
        CheckConstraint(in_list("body_type", BODY_TYPES), name="body_type"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(
        ForeignKey("notification_templates.id", ondelete="CASCADE")
    )
    language: Mapped[str] = mapped_column(String(8))
    from_name: Mapped[str] = mapped_column(String(128))
    from_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str]
    body: Mapped[str] = mapped_column(Text)
    body_type: Mapped[str] = mapped_column(String(8), default="text")


class BrandNotificationTemplate(Base):
    """The template a brand uses for one type, unless a client chooses its own."""

    __tablename__ = "brand_notification_templates"
    __table_args__ = (CheckConstraint(in_list("type", TEMPLATE_TYPES), name="type"),)

    brand_id: Mapped[int] = mapped_column(
        ForeignKey("brands.id", ondelete="CASCADE"), primary_key=True
    )
    type: Mapped[str] = mapped_column(String(32), primary_key=True)
    template_id: Mapped[int] = mapped_column(
        ForeignKey("notification_templates.id", ondelete="CASCADE")
    )


class ClientNotificationTemplate(Base):
    """The template a client uses for one type."""

    __tablename__ = "client_notification_templates"
    __table_args__ = (CheckConstraint(in_list("type", TEMPLATE_TYPES), name="type"),)

    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True
    )
    type: Mapped[str] = mapped_column(String(32), primary_key=True)
    template_id: Mapped[int] = mapped_column(
        ForeignKey("notification_templates.id", ondelete="CASCADE")
    )


class Recording(Base):
    """One recorded segment of a call; several segments per call are allowed."""

    __tablename__ = "recordings"
    __table_args__ = (
        UniqueConstraint("call_id", "segment"),
        CheckConstraint("segment >= 1", name="segment"),
        CheckConstraint("duration >= 0", name="duration"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    call_id: Mapped[str] = mapped_column(String(64))
    segment: Mapped[int]
    caller: Mapped[str] = mapped_column(String(64))
    callee: Mapped[str] = mapped_column(String(64))
    recorder_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    recorder: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime]
    duration: Mapped[Decimal] = mapped_column(Numeric(10, 3), default=Decimal(0))
    file_path: Mapped[str] = mapped_column(String(512), unique=True)


class ConfigVersion(Base):
    """One row: a counter provisioning raises with every change of the configuration, so
    running servers know when to reload their snapshot of it (``models.snapshot``)."""

    __tablename__ = "config_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
