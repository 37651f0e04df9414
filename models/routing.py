"""Carriers and outbound routes, call ACLs with their match lists, outgoing DDI rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, children
from models.vocabulary import ACL_POLICIES, DDI_ACTIONS, DDI_PATTERN_KINDS, MATCH_KINDS, in_list

if TYPE_CHECKING:
    from models.tenants import Brand


class Carrier(Base):
    """A SIP trunk of a brand: a PJSIP endpoint external calls leave through."""

    __tablename__ = "carriers"
    __table_args__ = (UniqueConstraint("brand_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    endpoint: Mapped[str] = mapped_column(String(64), unique=True)
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(default=5060)

    brand: Mapped[Brand] = relationship(back_populates="carriers", lazy="raise")


class OutboundRoute(Base):
    """Which carrier an external call leaves through, by E.164 prefix.

    A route of a brand serves all its clients unless it names one client; a
    client's own routes are tried before the brand's. The longest matching prefix
    wins, then the lowest priority; an empty prefix matches every destination.
    """

    __tablename__ = "outbound_routes"
    __table_args__ = (
        UniqueConstraint("brand_id", "client_id", "prefix", "priority"),
        CheckConstraint("priority >= 0", name="priority"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    carrier_id: Mapped[int] = mapped_column(ForeignKey("carriers.id", ondelete="CASCADE"))
    prefix: Mapped[str] = mapped_column(String(16), default="")
    priority: Mapped[int] = mapped_column(default=0)


class MatchList(Base):
    """A named list of numbers and regular expressions of a client."""

    __tablename__ = "match_lists"
    __table_args__ = (UniqueConstraint("client_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))

    patterns: Mapped[list[MatchListPattern]] = children(order_by="MatchListPattern.id")


class MatchListPattern(Base):
    """An E.164 number (exact) or a regular expression matched against the E.164 number."""

    __tablename__ = "match_list_patterns"
    __table_args__ = (
        UniqueConstraint("match_list_id", "kind", "value"),
        CheckConstraint(in_list("kind", MATCH_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    match_list_id: Mapped[int] = mapped_column(ForeignKey("match_lists.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    value: Mapped[str] = mapped_column(String(255))


class CallAcl(Base):
    """Which external destinations a user may call: rules by priority, first match decides."""

    __tablename__ = "call_acls"
    __table_args__ = (
        UniqueConstraint("client_id", "name"),
        CheckConstraint(in_list("default_policy", ACL_POLICIES), name="default_policy"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    default_policy: Mapped[str] = mapped_column(String(8), default="deny")

    rules: Mapped[list[CallAclRule]] = children(order_by="CallAclRule.priority")


class CallAclRule(Base):
    __tablename__ = "call_acl_rules"
    __table_args__ = (
        UniqueConstraint("call_acl_id", "priority"),
        CheckConstraint(in_list("policy", ACL_POLICIES), name="policy"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_acl_id: Mapped[int] = mapped_column(ForeignKey("call_acls.id", ondelete="CASCADE"))
    priority: Mapped[int]
    match_list_id: Mapped[int] = mapped_column(ForeignKey("match_lists.id", ondelete="CASCADE"))
    policy: Mapped[str] = mapped_column(String(8))


class OutgoingDdiRule(Base):
    """Which DDI an external call presents (DESIGN §3.6)."""

    __tablename__ = "outgoing_ddi_rules"
    __table_args__ = (
        UniqueConstraint("client_id", "name"),
        CheckConstraint(in_list("default_action", DDI_ACTIONS), name="default_action"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    default_action: Mapped[str] = mapped_column(String(8), default="keep")
    # NULL with action 'force' falls back to the client's outgoing DDI.
    forced_ddi_id: Mapped[int | None] = mapped_column(ForeignKey("ddis.id", ondelete="SET NULL"))

    patterns: Mapped[list[OutgoingDdiRulePattern]] = children(
        order_by="OutgoingDdiRulePattern.priority"
    )


class OutgoingDdiRulePattern(Base):
    __tablename__ = "outgoing_ddi_rule_patterns"
    __table_args__ = (
        UniqueConstraint("rule_id", "priority"),
        CheckConstraint(in_list("kind", DDI_PATTERN_KINDS), name="kind"),
        CheckConstraint(in_list("action", DDI_ACTIONS), name="action"),
        CheckConstraint(
            "(kind = 'prefix' AND prefix IS NOT NULL AND match_list_id IS NULL)"
            " OR (kind = 'destination' AND match_list_id IS NOT NULL AND prefix IS NULL)",
            name="kind_target",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("outgoing_ddi_rules.id", ondelete="CASCADE"))
    priority: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str | None] = mapped_column(String(4))
    match_list_id: Mapped[int | None] = mapped_column(
        ForeignKey("match_lists.id", ondelete="CASCADE")
    )
    action: Mapped[str] = mapped_column(String(8))
    forced_ddi_id: Mapped[int | None] = mapped_column(ForeignKey("ddis.id", ondelete="SET NULL"))
