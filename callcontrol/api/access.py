"""Who may do what (DESIGN §3.13), as pure functions of plain values: no database, no HTTP.

:func:`decide` answers one question -- may ``principal`` apply ``verb`` to ``section`` of
``client``? -- with :class:`Decision`: ``ALLOW``, ``DENY`` (403: the section is there but
not for this administrator) or ``NOT_FOUND`` (404: the client is not in the
administrator's scope, or the section does not exist for this client or this viewer).
Rules, in order:

1. scope: god -> every client; brand admin -> its brand's clients; client admin -> its client;
2. a client without a section's feature has no such section;
3. a client admin does not see invoices or rating profiles its client's ``show_*`` flags hide;
4. a client admin only reads the billing its brand keeps (:data:`BRAND_WRITTEN`);
5. a restricted administrator needs the verb in its privileges for the section;
6. a client admin removes a recording only when its client allows recording removal.

Brands and servers: :func:`decide_brand` -- god every brand, a brand admin its own, a client
admin none -- for creating, removing and listing clients of a brand; the application
servers are god's alone (:func:`sees_servers`).

Fields: distribute method and application server are god's alone (:data:`GOD_FIELDS`);
a client admin changes only :data:`CLIENT_EDITABLE` settings; a CDR's price, the counters'
spend and balance, and the client's ``balance`` setting (:data:`MONEY_SETTINGS`) are hidden
from a client admin unless ``show_external_call_prices``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from models.admins import AuditedBy, AuditNote

Kind = Literal["god", "brand", "client"]
Verb = Literal["create", "read", "update", "delete"]


class Decision(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated administrator: its level, where it belongs, what it may use."""

    kind: Kind
    admin_id: int
    username: str
    brand_id: int | None = None
    client_id: int | None = None
    restricted: bool = False
    privileges: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def may(self, section: str, verb: str) -> bool:
        """Its privileges allow ``verb`` on ``section`` (always, when unrestricted)."""
        return not self.restricted or verb in self.privileges.get(section, frozenset())

    def note(self, action: str, target: str, **facts: Any) -> AuditNote:
        """An audit entry of ``action`` on ``target`` by this administrator; ``facts`` as
        :class:`~models.admins.AuditNote` takes them."""
        return AuditedBy(self.kind, self.username).note(action, target, **facts)


@dataclass(frozen=True, slots=True)
class ClientFacts:
    """What of a client the decisions read."""

    id: int
    brand_id: int
    features: frozenset[str] = frozenset()
    show_invoices: bool = False
    show_rating_profiles: bool = False
    show_external_call_prices: bool = False
    allow_recording_removal: bool = False


SECTION_FEATURES: Mapping[str, str] = {
    "recordings": "recordings",
    "invoices": "invoices",
    "rating_profiles": "billing",
}
"""A section that exists for a client only with this feature."""

BRAND_WRITTEN: frozenset[str] = frozenset({"rating_profiles"})
"""Sections a client admin may at most read: what its calls are priced with is set by its
brand (or god), never by the client that pays."""

GOD_FIELDS: frozenset[str] = frozenset({"distribute_method", "application_server"})
"""Platform-operator settings: seen and changed by god administrators only."""

CLIENT_EDITABLE: frozenset[str] = frozenset(
    {
        "language",
        "timezone",
        "filter_by_ip",
        "authorized_sources",
        "geoip_countries",
        "max_daily_usage_email",
        "low_balance_email",
        "outgoing_ddi",
        "on_demand_recording",
        "template_choices",
    }
)
"""Settings a client admin may change on its own client; the others are its brand's."""

PRICE_FIELDS: tuple[str, ...] = ("price", "currency", "rating_plan", "matched_prefix")
"""The parts of a CDR that tell its price."""

MONEY_SETTINGS: frozenset[str] = frozenset({"balance"})
"""Client settings that tell the client's money: hidden from its client admin where its
prices are, as the counters hide its balance and spend. Its currency and its limits
(``max_daily_usage``, ``low_balance_threshold``) stay: they are terms set by its brand,
not what it has or spent."""


def in_scope(principal: Principal, client: ClientFacts) -> bool:
    if principal.kind == "god":
        return True
    if principal.kind == "brand":
        return principal.brand_id == client.brand_id
    return principal.client_id == client.id


def decide(principal: Principal, client: ClientFacts, section: str, verb: Verb) -> Decision:
    """May ``principal`` ``verb`` the ``section`` of ``client``? (the rules of the module)"""
    if not in_scope(principal, client):
        return Decision.NOT_FOUND
    feature = SECTION_FEATURES.get(section)
    if feature is not None and feature not in client.features:
        return Decision.NOT_FOUND
    if principal.kind == "client" and hidden_from_client(client, section):
        return Decision.NOT_FOUND
    if principal.kind == "client" and section in BRAND_WRITTEN and verb != "read":
        return Decision.DENY
    if not principal.may(section, verb):
        return Decision.DENY
    if (
        principal.kind == "client"
        and section == "recordings"
        and verb == "delete"
        and not client.allow_recording_removal
    ):
        return Decision.DENY
    return Decision.ALLOW


def hidden_from_client(client: ClientFacts, section: str) -> bool:
    """The client's ``show_*`` flags hide ``section`` from its client admins."""
    if section == "invoices":
        return not client.show_invoices
    if section == "rating_profiles":
        return not client.show_rating_profiles
    return False


def visible_fields(
    principal: Principal, names: frozenset[str], client: ClientFacts | None
) -> frozenset[str]:
    """The settings of ``client`` among ``names`` that ``principal`` may see: the god-only
    ones left out for the others, and the money (:data:`MONEY_SETTINGS`) wherever the
    counters hide it (:func:`shows_prices`). ``client`` None: no client's money is in
    ``names``."""
    shown = names if principal.kind == "god" else names - GOD_FIELDS
    if client is not None and not shows_prices(principal, client):
        shown -= MONEY_SETTINGS
    return shown


def refused_field(principal: Principal, names: frozenset[str]) -> str | None:
    """The first setting among ``names`` that ``principal`` may not change, or None."""
    for name in sorted(names):
        if name in GOD_FIELDS and principal.kind != "god":
            return name
        if principal.kind == "client" and name not in CLIENT_EDITABLE:
            return name
    return None


def shows_prices(principal: Principal, client: ClientFacts) -> bool:
    """CDR prices are shown, except to a client admin whose client hides them."""
    return principal.kind != "client" or client.show_external_call_prices


def audit_scope(principal: Principal) -> tuple[int | None, int | None] | None:
    """Which audit entries ``principal`` reads: (brand id, client id) to filter on (None:
    no filter), or None when it may read none."""
    if not principal.may("audit", "read"):
        return None
    if principal.kind == "god":
        return (None, None)
    if principal.kind == "brand":
        return (principal.brand_id, None)
    return (None, principal.client_id)


def manages_admins(who: Principal) -> bool:
    """Only an unrestricted administrator creates, changes or removes client admins: a
    restricted one could otherwise give an admin more than it holds itself."""
    return not who.restricted


def decide_brand(principal: Principal, brand_id: int, verb: Verb) -> Decision:
    """May ``principal`` ``verb`` a client of brand ``brand_id`` as the brand's own -- create
    one, remove one, read the brand: god in every brand, a brand admin in its own (another
    brand reads as absent), a client admin never; a restricted one needs ``verb`` on the
    ``client`` section."""
    if principal.kind == "client":
        return Decision.DENY
    if principal.kind == "brand" and principal.brand_id != brand_id:
        return Decision.NOT_FOUND
    if not principal.may("client", verb):
        return Decision.DENY
    return Decision.ALLOW


def sees_servers(principal: Principal) -> bool:
    """The application servers are the platform's, as a client's application server
    setting is god's (:data:`GOD_FIELDS`): a god administrator's, with the ``client``
    section's read when restricted."""
    return principal.kind == "god" and principal.may("client", "read")
