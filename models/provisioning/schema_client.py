"""The shape of a client (tenant) in a provisioning document, and of the whole document.

Only what one node can say about itself is checked here ("exactly one of user or
forward_to"); whether a named user, DDI or match list exists is checked by
:mod:`models.provisioning.checks`, which knows the whole document and the database.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, model_validator

from models.provisioning.passwords import HA1
from models.provisioning.scalars import (
    E164,
    Balance,
    BillingMethod,
    Cidr,
    Codecs,
    Count,
    Country,
    CurrencyCode,
    DdiAction,
    DialPrefix,
    DistributeMethod,
    Email,
    ExtensionNumber,
    Feature,
    ForwardNumber,
    Identifier,
    Language,
    Money,
    Name,
    OnDemandMode,
    Policy,
    Priority,
    RecordCalls,
    Regexp,
    ServiceCode,
    ShortName,
    SipDomain,
    TemplateType,
    Text,
    Timezone,
)
from models.provisioning.schema import (
    AdminDoc,
    ApplicationServerDoc,
    BrandDoc,
    CurrencyDoc,
    EmergencyNumberDoc,
    MediaRelaySetDoc,
    Node,
    TemplateDoc,
    exactly_one,
)


def _sip_password(value: str) -> str:
    """Refused without echoing the value: it is a secret, and the error goes to logs."""
    if any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in value):
        raise ValueError("must not hold a newline or another control character")
    if '"' in value or "\\" in value:
        raise ValueError("must not hold a double quote or a backslash (SIP quotes them)")
    return value


def _ha1(value: str) -> str:
    if not HA1.fullmatch(value):
        raise ValueError(
            "must be an HA1 digest: 32 lowercase hex digits, md5(name:domain:password)"
        )
    return value


SipPassword = Annotated[str, Field(min_length=8, max_length=128), AfterValidator(_sip_password)]
"""A terminal's SIP password, hashed on load: one line a SIP phone can send in a quoted string."""
Ha1 = Annotated[str, AfterValidator(_ha1)]
"""A terminal's stored secret: md5 of ``<terminal name>:<client sip_domain>:<password>``."""


class InvoiceDoc(Node):
    tax_id: str | None = Field(default=None, max_length=64)
    postal_address: Text | None = None
    postal_code: str | None = Field(default=None, max_length=16)
    town: str | None = Field(default=None, max_length=128)
    province: str | None = Field(default=None, max_length=128)
    country: Country | None = None
    show_invoices: bool = False
    show_rating_profiles: bool = False
    show_external_call_prices: bool = False


class DdiRulePatternDoc(Node):
    """First match by priority wins: a dialled ``prefix`` such as ``111*`` or a destination list."""

    priority: Priority
    prefix: DialPrefix | None = None
    destination: Name | None = None
    action: DdiAction
    forced_ddi: E164 | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> DdiRulePatternDoc:
        exactly_one(self, "prefix", "destination")
        return self


class DdiRuleDoc(Node):
    name: Name
    default_action: DdiAction = "keep"
    forced_ddi: E164 | None = None
    patterns: list[DdiRulePatternDoc] = Field(default_factory=list)


class OnDemandRecordingDoc(Node):
    mode: OnDemandMode = "off"
    code: ServiceCode | None = None

    @model_validator(mode="after")
    def _code_when_on(self) -> OnDemandRecordingDoc:
        if self.mode != "off" and self.code is None:
            raise ValueError(f"mode {self.mode!r} needs a digit 'code' (dialled as *<code>)")
        return self


class UserDoc(Node):
    name: Name
    email: Email | None = None
    language: Language | None = None
    timezone: Timezone | None = None
    outgoing_ddi: E164 | None = None
    outgoing_ddi_rule: Name | None = None
    call_acl: Name | None = None


class TerminalDoc(Node):
    """A SIP device; ``name`` is its PJSIP endpoint, unique across the platform.

    Give ``password`` (hashed on load) or ``ha1`` (the export writes ``ha1``): the digest
    md5(name:client sip_domain:password), which a change of the client's domain invalidates.
    """

    name: Identifier
    password: SipPassword | None = None
    ha1: Ha1 | None = None
    user: Name | None = None
    codecs: Codecs = "ulaw,alaw"

    @model_validator(mode="after")
    def _one_secret(self) -> TerminalDoc:
        exactly_one(self, "password", "ha1")
        return self


class ExtensionDoc(Node):
    number: ExtensionNumber
    user: Name | None = None
    forward_to: ForwardNumber | None = None

    @model_validator(mode="after")
    def _one_target(self) -> ExtensionDoc:
        exactly_one(self, "user", "forward_to")
        return self


class DdiDoc(Node):
    """A public number; inbound calls ring ``user`` or ``extension`` (with neither, the
    number is only presented on outgoing calls and inbound calls find no one)."""

    e164: E164
    user: Name | None = None
    extension: ExtensionNumber | None = None
    record_calls: RecordCalls = "none"
    language: Language | None = None
    carrier: Name | None = None

    @model_validator(mode="after")
    def _one_target(self) -> DdiDoc:
        if self.user is not None and self.extension is not None:
            raise ValueError("give at most one of 'user' or 'extension'")
        return self


class MatchPatternDoc(Node):
    """An E.164 number (exact match) or a regular expression over the E.164 digits."""

    number: E164 | None = None
    regexp: Regexp | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> MatchPatternDoc:
        exactly_one(self, "number", "regexp")
        return self


class MatchListDoc(Node):
    name: Name
    patterns: list[MatchPatternDoc] = Field(default_factory=list)


class CallAclRuleDoc(Node):
    priority: Priority
    match_list: Name
    policy: Policy


class CallAclDoc(Node):
    name: Name
    default_policy: Policy = "deny"
    rules: list[CallAclRuleDoc] = Field(default_factory=list)


class RatingProfileDoc(Node):
    rating_plan_group: Name
    activation_time: AwareDatetime


class ClientDoc(Node):
    """A Virtual PBX client (DESIGN §3.1); absent owned items are deleted on load.

    ``language``, ``timezone``, ``currency`` and ``country`` default to the brand's
    defaults at load time. ``balance`` changes with calls, so it is only written
    when given (a new client starts at 0).
    """

    name: Name
    brand: Name
    sip_domain: SipDomain
    corporation: Name | None = None
    language: Language | None = None
    timezone: Timezone | None = None
    currency: CurrencyCode | None = None
    country: Country | None = None
    features: list[Feature] = Field(default_factory=list)
    billing_method: BillingMethod = "none"
    balance: Balance | None = None
    max_calls: Count = 0
    filter_by_ip: bool = False
    authorized_sources: list[Cidr] = Field(default_factory=list)
    geoip_countries: list[Country] = Field(default_factory=list)
    max_daily_usage: Money | None = None
    max_daily_usage_email: Email | None = None
    low_balance_threshold: Money | None = None
    low_balance_email: Email | None = None
    invoice: InvoiceDoc | None = None
    outgoing_ddi: E164 | None = None
    outgoing_ddi_rule: DdiRuleDoc | None = None
    outgoing_ddi_rules: list[DdiRuleDoc] = Field(default_factory=list)
    media_relay_set: ShortName | None = None
    distribute_method: DistributeMethod = "hash"
    application_server: Identifier | None = None
    on_demand_recording: OnDemandRecordingDoc | None = None
    allow_recording_removal: bool = False
    users: list[UserDoc] = Field(default_factory=list)
    terminals: list[TerminalDoc] = Field(default_factory=list)
    extensions: list[ExtensionDoc] = Field(default_factory=list)
    ddis: list[DdiDoc] = Field(default_factory=list)
    match_lists: list[MatchListDoc] = Field(default_factory=list)
    call_acls: list[CallAclDoc] = Field(default_factory=list)
    rating_profiles: list[RatingProfileDoc] = Field(default_factory=list)
    admins: list[AdminDoc] = Field(default_factory=list)
    templates: list[TemplateDoc] = Field(default_factory=list)
    template_choices: dict[TemplateType, Name] = Field(default_factory=dict)

    def all_rules(self) -> list[DdiRuleDoc]:
        """The client's own rule first, then the further named rules."""
        own = [self.outgoing_ddi_rule] if self.outgoing_ddi_rule else []
        return own + self.outgoing_ddi_rules


class Document(Node):
    """A whole provisioning document. Every key is optional; an empty document loads nothing."""

    currencies: list[CurrencyDoc] = Field(default_factory=list)
    application_servers: list[ApplicationServerDoc] = Field(default_factory=list)
    media_relay_sets: list[MediaRelaySetDoc] = Field(default_factory=list)
    emergency_numbers: list[EmergencyNumberDoc] = Field(default_factory=list)
    templates: list[TemplateDoc] = Field(default_factory=list)
    brands: list[BrandDoc] = Field(default_factory=list)
    clients: list[ClientDoc] = Field(default_factory=list)
