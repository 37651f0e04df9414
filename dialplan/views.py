"""Plain, immutable views of the configuration the pipeline decides on.

The shell loads them (from SQL, a cache or test data) through a :class:`Directory`;
the core never sees an ORM row or a database session. Numbers are E.164 with '+'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class ClientView:
    id: int
    name: str
    brand_id: int
    corporation_id: int | None
    corporation: str | None
    country: str
    language: str
    timezone: str
    currency: str
    features: frozenset[str]
    billing_method: str = "none"
    max_calls: int = 0
    outgoing_ddi: str | None = None
    outgoing_ddi_rule_id: int | None = None
    on_demand_recording: str = "off"
    """``off``, ``dtmf``, ``service_code`` or ``both`` (DESIGN §3.8)."""
    on_demand_record_code: str | None = None
    filter_by_ip: bool = False
    authorized_sources: tuple[str, ...] = ()
    """CIDRs (IPv4, IPv6) the client's terminals may call from (DESIGN §3.3)."""
    geoip_countries: tuple[str, ...] = ()
    """ISO 3166 alpha-2 countries the client's terminals may call from."""
    max_daily_usage: Decimal | None = None
    max_daily_usage_email: str | None = None
    low_balance_threshold: Decimal | None = None
    """A (pseudo)prepaid balance falling below it is mailed, once per crossing."""
    low_balance_email: str | None = None
    sip_domain: str = ""
    """The client's SIP domain: its terminals are ``<name>@<sip_domain>`` at the edge."""
    media_relay_set_id: int | None = None
    """The media relay set that anchors its terminals' legs (None: the default set)."""

    def has(self, feature: str) -> bool:
        return feature in self.features


@dataclass(frozen=True, slots=True)
class UserView:
    id: int
    client_id: int
    name: str
    language: str | None = None
    timezone: str | None = None
    call_acl_id: int | None = None
    outgoing_ddi: str | None = None
    outgoing_ddi_rule_id: int | None = None
    extension: str | None = None
    """The user's first extension, presented as caller id on internal calls."""
    terminal: str | None = None
    """The PJSIP endpoint that rings when the user is called."""


@dataclass(frozen=True, slots=True)
class TerminalView:
    name: str
    client: ClientView
    user: UserView | None


@dataclass(frozen=True, slots=True)
class CarrierView:
    id: int
    name: str
    endpoint: str
    brand_id: int
    language: str = "en"
    """The brand's language: what the platform speaks to a caller no client claims."""
    host: str = ""
    port: int = 5060
    """Where the carrier's SIP peer is: legs to it leave through the edge in edge mode."""


@dataclass(frozen=True, slots=True)
class ExtensionView:
    number: str
    client: ClientView
    route: str
    user: UserView | None = None
    target_number: str | None = None


@dataclass(frozen=True, slots=True)
class DdiView:
    e164: str
    client: ClientView
    route: str
    user: UserView | None = None
    extension: ExtensionView | None = None
    record_calls: str = "none"
    language: str | None = None


@dataclass(frozen=True, slots=True)
class MatchPattern:
    kind: str
    """``number`` (an E.164 number) or ``regexp`` (searched in the E.164 number)."""
    value: str


@dataclass(frozen=True, slots=True)
class AclRuleView:
    priority: int
    policy: str
    match_list: str
    patterns: tuple[MatchPattern, ...]


@dataclass(frozen=True, slots=True)
class AclView:
    id: int
    name: str
    default_policy: str
    rules: tuple[AclRuleView, ...] = field(default=())
