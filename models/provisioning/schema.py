"""The shape of a provisioning document: platform pieces, brands, and the document itself.

Every node forbids unknown keys, so a typo is an error rather than a silently
ignored setting. Defaults here are the defaults of the database; the exporter
leaves out values equal to them, so an exported document reads like a written one.
Clients and the whole :class:`Document` are in :mod:`models.provisioning.schema_client`.
"""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from models.provisioning.scalars import (
    ALL_DAYS,
    WEEKDAYS,
    BodyType,
    ClockTime,
    Country,
    CurrencyCode,
    Destination,
    Email,
    EmergencyDigits,
    Feature,
    Host,
    Identifier,
    Increments,
    IpAddress,
    Language,
    Money,
    Name,
    NumberPrefix,
    Password,
    PasswordHash,
    Port,
    Priority,
    PrivilegeSection,
    RelayUrl,
    RelayWeight,
    RoutePrefix,
    Section,
    ShortName,
    TemplateBody,
    TemplateType,
    Text,
    Timezone,
    Verbs,
    Weekday,
    Weight,
    check_printable,
    days_text,
)


class Node(BaseModel):
    """A mapping of the document: unknown keys are errors; numbers may stand for digit strings."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, coerce_numbers_to_str=True, validate_by_name=True
    )
    multiline: ClassVar[frozenset[str]] = frozenset()
    """Fields whose text may hold newlines and tabs (every other text is one printable line)."""

    @field_validator("*", mode="after")
    @classmethod
    def _printable(cls, value: Any, info: ValidationInfo) -> Any:
        check_printable(value, "\n\t" if info.field_name in cls.multiline else "")
        return value

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        """``users:`` with nothing under it is an empty list, not an error."""
        if not isinstance(data, dict):
            return data
        return {
            key: value
            for key, value in data.items()
            if value is not None
            or key not in cls.model_fields
            or cls.model_fields[key].default_factory is None
        }


class CurrencyDoc(Node):
    code: CurrencyCode
    name: ShortName
    symbol: str = Field(default="", max_length=8)


class ApplicationServerDoc(Node):
    """A server running Asterisk and callcontrol; its name is written into the proxy's
    configuration, so it is an identifier (no space, quote or ``$``)."""

    name: Identifier
    address: IpAddress
    stasis_app: Identifier = "callcontrol"
    sip_port: Port = 5060
    drained: bool = False
    """Edge mode: takes no new call (``callcontrol platform drain`` sets it too)."""


class EmergencyNumberDoc(Node):
    """A number that no guard blocks for the clients of ``country`` (DESIGN §3.5). Listed
    ones are added or updated; one no longer listed stays (as every platform piece)."""

    country: Country
    number: EmergencyDigits
    description: Text = ""


class MediaRelayDoc(Node):
    """An rtpengine instance of the set, by its ng control socket."""

    control_url: RelayUrl
    weight: RelayWeight = 1
    enabled: bool = True


class MediaRelaySetDoc(Node):
    """A group of rtpengine instances; a listed set holds exactly the relays listed."""

    name: ShortName
    description: Text = ""
    relays: list[MediaRelayDoc] = Field(default_factory=list)


class TemplateContentDoc(Node):
    language: Language
    from_name: Name
    from_address: Email
    subject: Text
    body: TemplateBody
    body_type: BodyType = "text"
    multiline: ClassVar[frozenset[str]] = frozenset({"body"})


class TemplateDoc(Node):
    """A notification template of one type, with its text per language (Jinja2, sandboxed)."""

    name: Name
    type: TemplateType
    contents: list[TemplateContentDoc] = Field(default_factory=list)


class CarrierDoc(Node):
    name: Name
    endpoint: Identifier
    host: Host
    port: Port = 5060


class OutboundRouteDoc(Node):
    """External calls to ``prefix`` leave through ``carrier``; ``client`` narrows it to one."""

    carrier: Name
    prefix: RoutePrefix = ""
    priority: Priority = 0
    client: Name | None = None


class TimeWindowDoc(Node):
    """When a rate applies, in the client's local time: ``from`` inclusive to ``to``
    exclusive (both or neither), on ``days`` (default: every day)."""

    start: ClockTime | None = Field(default=None, alias="from")
    end: ClockTime | None = Field(default=None, alias="to")
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS))

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindowDoc:
        if (self.start is None) != (self.end is None):
            raise ValueError("give both 'from' and 'to', or neither")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("'to' must be later than 'from'; split windows crossing midnight")
        if not self.days:
            raise ValueError("'days' must name at least one weekday")
        if len(set(self.days)) != len(self.days):
            raise ValueError("'days' names a weekday twice")
        return self

    def bounds(self) -> tuple[time | None, time | None]:
        if self.start is None or self.end is None:
            return (None, None)
        return time.fromisoformat(self.start), time.fromisoformat(self.end)

    def weekdays(self) -> int:
        """The bitmask of :attr:`models.Rate.weekdays` (Monday = bit 0)."""
        return sum(1 << WEEKDAYS.index(day) for day in self.days)


class RateDoc(Node):
    prefix: NumberPrefix
    destination: Destination = ""
    connection_fee: Money = Decimal(0)
    price_per_minute: Money
    increments: Increments = (1, 1)
    weight: Weight = 0
    time_window: TimeWindowDoc | None = None

    def key(self) -> tuple[str, time | None, time | None, int, int]:
        """The natural key of a rate in its group: prefix, time window (from, to, weekday
        mask) and weight, so rates differing only by weight coexist (DESIGN §3.7)."""
        if self.time_window is None:
            return (self.prefix, None, None, ALL_DAYS, self.weight)
        return (self.prefix, *self.time_window.bounds(), self.time_window.weekdays(), self.weight)

    def describe(self) -> str:
        """The rate's identity for a person: ``'33' mon-fri 08:00-20:00 weight 10``."""
        _, start, end, weekdays, weight = self.key()
        window = f" {start:%H:%M}-{end:%H:%M}" if start is not None and end is not None else ""
        return f"{self.prefix!r} {days_text(weekdays)}{window} weight {weight}"


class RatingPlanGroupDoc(Node):
    name: Name
    currency: CurrencyCode
    rates: list[RateDoc] = Field(default_factory=list)


def exactly_one(node: Node, *fields: str) -> None:
    """Refuse ``node`` unless exactly one of ``fields`` is given."""
    given = [name for name in fields if getattr(node, name) is not None]
    if len(given) != 1:
        choices = " or ".join(repr(name) for name in fields)
        raise ValueError(f"give exactly one of {choices}")


class AdminDoc(Node):
    """A login of the API: a client's admin, or a brand's administrator. ``password`` is
    hashed on load; export writes ``password_hash``.

    With neither ``restricted_sections`` nor ``privileges`` the admin is unrestricted.
    ``restricted_sections`` denies those sections (every other one fully allowed);
    ``privileges`` maps each section the admin may use to its verbs (``"r"`` read only,
    ``"crud"`` everything; a section left out is denied). Both may be given: the listed
    restricted sections are then denied whatever ``privileges`` says."""

    username: Name
    email: Email | None = None
    password: Password | None = None
    password_hash: PasswordHash | None = None
    active: bool = True
    restricted_sections: list[Section] = Field(default_factory=list)
    privileges: dict[PrivilegeSection, Verbs] | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> AdminDoc:
        exactly_one(self, "password", "password_hash")
        return self


class BrandDoc(Node):
    """A brand and everything it owns; absent owned items are deleted on load.

    The defaults are required: they are what a client gets when it names no
    language, timezone, currency or country of its own.

    ``admins`` are the brand's administrators. Unlike the owned lists it is ``None`` when
    the key is absent, and then the stored ones are left alone; given (``admins:`` with
    nothing under it included) the brand's administrators become exactly those.
    """

    name: Name
    default_language: Language
    default_timezone: Timezone
    default_currency: CurrencyCode
    default_country: Country
    features: list[Feature] = Field(default_factory=list)
    corporations: list[Name] = Field(default_factory=list)
    carriers: list[CarrierDoc] = Field(default_factory=list)
    outbound_routes: list[OutboundRouteDoc] = Field(default_factory=list)
    rating_plan_groups: list[RatingPlanGroupDoc] = Field(default_factory=list)
    templates: list[TemplateDoc] = Field(default_factory=list)
    template_choices: dict[TemplateType, Name] = Field(default_factory=dict)
    admins: list[AdminDoc] | None = None

    @field_validator("admins", mode="before")
    @classmethod
    def _admins_given(cls, value: Any) -> Any:
        """``admins:`` with nothing under it is the key given with no administrator."""
        return [] if value is None else value
