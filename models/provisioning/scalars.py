"""Scalar types of the provisioning document.

Each type validates one value on its own and, when it is wrong, says why in words an
operator understands (``must be 1-3 digits followed by '*'``). Checks that need
more than one value (references, uniqueness) live in :mod:`models.provisioning.checks`.
"""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Annotated

import phonenumbers
from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer
from pydantic.fields import FieldInfo

from dialplan.errors import shown
from dialplan.text import describe_unprintable, unprintable
from models.admins import SECTIONS
from models.provisioning import regexps
from models.vocabulary import (
    ACL_POLICIES,
    ADMIN_SECTIONS,
    BILLING_METHODS,
    BODY_TYPES,
    DDI_ACTIONS,
    DESTINATION_LENGTH,
    DISTRIBUTE_METHODS,
    FEATURES,
    NAME_LENGTH,
    ON_DEMAND_RECORDING,
    RECORD_CALLS,
    SHORT_NAME_LENGTH,
    TEMPLATE_BODY_LENGTH,
    TEMPLATE_TYPES,
    TEXT_LENGTH,
)

COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS)
"""ISO 3166 alpha-2 codes we accept: the regions whose numbers we can normalise."""

TIMEZONES = frozenset(zoneinfo.available_timezones())
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS = 0b1111111
"""The weekday bitmask (Monday = bit 0) of every day."""


def days_text(weekdays: int) -> str:
    """A weekday bitmask as people write it: ``every day``, ``mon-fri``, ``sat-sun``,
    ``mon,wed,fri``, ``mon-tue,thu`` (runs of two or more days joined by ``-``)."""
    if weekdays & ALL_DAYS == ALL_DAYS:
        return "every day"
    days = [index for index in range(len(WEEKDAYS)) if weekdays >> index & 1]
    runs: list[list[int]] = []
    for day in days:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        WEEKDAYS[run[0]] if len(run) == 1 else f"{WEEKDAYS[run[0]]}-{WEEKDAYS[run[-1]]}"
        for run in runs
    )


def check_printable(value: object, allowed: str = "") -> None:
    """Raise ValueError when ``value`` (a text, or texts in a list or map) holds a
    character :func:`unprintable` refuses; the message names it, not the whole value."""
    if isinstance(value, str):
        found = unprintable(value, allowed)
        if found is not None:
            raise ValueError(f"{describe_unprintable(value, found)}; text here must be printable")
    elif isinstance(value, list | tuple):
        for item in value:
            check_printable(item, allowed)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_printable(key, allowed)
            check_printable(item, allowed)


def _one_of(kind: str, values: tuple[str, ...]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in values:
            raise ValueError(f"unknown {kind} {shown(value)}; one of: {', '.join(values)}")
        return value

    return AfterValidator(check)


def _matching(pattern: str, explanation: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(explanation)
        return value

    return AfterValidator(check)


def _check(predicate: Callable[[str], bool], explanation: Callable[[str], str]) -> AfterValidator:
    def check(value: str) -> str:
        if not predicate(value):
            raise ValueError(explanation(value))
        return value

    return AfterValidator(check)


def _text(max_length: int) -> AfterValidator:
    def check(value: str) -> str:
        if not value or value != value.strip():
            raise ValueError("must be non-empty, without leading or trailing spaces")
        if len(value) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        return value

    check.max_length = max_length  # type: ignore[attr-defined]  # read by longest_text()
    return AfterValidator(check)


def longest_text(metadata: Sequence[object]) -> int | None:
    """The most characters a field's validators let through, when one of them says so."""
    for item in metadata:
        limit = getattr(item, "max_length", None)
        if limit is None and isinstance(item, AfterValidator):
            limit = getattr(item.func, "max_length", None)
        if limit is None and isinstance(item, FieldInfo):
            limit = longest_text(item.metadata)
        if isinstance(limit, int):
            return limit
    return None


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        bits = " (it has host bits set)" if "host bits" in str(exc) else ""
        raise ValueError(
            f"{shown(value)} is not an IPv4/IPv6 network in CIDR notation{bits}"
        ) from None


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{shown(value)} is not an IPv4 or IPv6 address") from None


def _regexp(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    if regexps.ways(value) > regexps.LIMIT:
        raise ValueError(
            f"too costly to test: more than {regexps.LIMIT} ways to try a number; "
            "nest or chain fewer repeats ('*', '+', '?', '{m,n}') and alternatives ('|')"
        )
    return value


def _increments(value: object) -> object:
    """``"30/6"`` (first period, then each next period, in seconds) or ``60`` for 60/60."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"{value}/{value}"
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,5}/[0-9]{1,5}", value):
        first, _, following = value.partition("/")
        if int(first) > 0 and int(following) > 0:
            return (int(first), int(following))
    if isinstance(value, tuple):
        return value
    raise ValueError("must be 'first/next' seconds, both at least 1, e.g. '30/6' or '60/60'")


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*"


def _host(value: str) -> bool:
    if re.fullmatch(_HOST, value):
        return True
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


Name = Annotated[str, _text(NAME_LENGTH)]
ShortName = Annotated[str, _text(SHORT_NAME_LENGTH)]
Text = Annotated[str, Field(max_length=TEXT_LENGTH)]
Destination = Annotated[str, Field(max_length=DESTINATION_LENGTH)]
TemplateBody = Annotated[str, Field(max_length=TEMPLATE_BODY_LENGTH)]
Identifier = Annotated[
    str,
    _matching(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", "must be 1-64 letters, digits, '_', '.' or '-'"),
]
Language = Annotated[
    str, _matching(r"[a-z]{2}(-[A-Z]{2})?", "must be an ISO 639-1 code such as 'es' or 'en-GB'")
]
Country = Annotated[
    str,
    _check(
        COUNTRIES.__contains__,
        lambda v: f"{shown(v)} is not an ISO 3166 alpha-2 country code such as 'ES'",
    ),
]
CurrencyCode = Annotated[
    str, _matching(r"[A-Z]{3}", "must be an ISO 4217 code of 3 uppercase letters, such as 'EUR'")
]
Timezone = Annotated[
    str,
    _check(
        TIMEZONES.__contains__,
        lambda v: f"unknown time zone {shown(v)}; use an IANA name such as 'Europe/Madrid'",
    ),
]
E164 = Annotated[
    str,
    _matching(
        r"\+[1-9][0-9]{6,14}",
        "must be an E.164 number: '+', country code and number, e.g. '+34910000000'",
    ),
]
DialPrefix = Annotated[str, _matching(r"[0-9]{1,3}\*", "must be 1-3 digits followed by '*'")]
NumberPrefix = Annotated[str, _matching(r"[0-9]{1,16}", "must be 1-16 digits (an E.164 prefix)")]
RoutePrefix = Annotated[
    str, _matching(r"[0-9]{0,16}", "must be up to 16 digits (an E.164 prefix; '' matches all)")
]
ExtensionNumber = Annotated[str, _matching(r"[0-9]{2,8}", "must be 2-8 digits")]
EmergencyDigits = Annotated[
    str, _matching(r"[0-9]{2,8}", "must be 2-8 digits, as a terminal dials it (e.g. '112')")
]
ServiceCode = Annotated[str, _matching(r"[0-9]{1,4}", "must be 1-4 digits (dialled as *<code>)")]
ForwardNumber = Annotated[
    str, _matching(r"\+?[0-9]{3,20}", "must be a phone number: optional '+' and 3-20 digits")
]
Host = Annotated[str, _check(_host, lambda v: f"{shown(v)} is not a host name or IP address")]
Domain = Annotated[
    str,
    _matching(_HOST, "must be a domain name such as 'acme.example.com'"),
    AfterValidator(str.lower),
]
SipDomain = Annotated[
    str,
    _matching(_HOST, "must be a domain name such as 'acme.example.com'"),
    _check(
        lambda v: v == v.lower(),
        lambda v: (
            f"must be lower case ({v.lower()!r}): it is the realm of the terminals' digests and"
            " the domain of their registrations, which the edge's database compares exactly"
        ),
    ),
]
"""A client's SIP domain: lower case, never folded silently (a terminal's stored digest
was computed with the realm as written)."""


def _relay_url(value: str) -> str:
    """``udp:IP:PORT`` (IPv6 in brackets): an rtpengine's ng control socket."""
    explanation = "must be 'udp:IP:PORT' (an rtpengine ng socket, e.g. 'udp:10.0.0.5:2223')"
    if not value.startswith("udp:"):
        raise ValueError(explanation)
    host, _, port = value[4:].rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ValueError(explanation)
    elif ":" in host:
        raise ValueError(explanation)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(explanation) from None
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(explanation)
    return value


RelayUrl = Annotated[str, Field(max_length=64), AfterValidator(_relay_url)]
IpAddress = Annotated[str, AfterValidator(_address)]
Cidr = Annotated[str, AfterValidator(_network)]
Email = Annotated[
    str,
    Field(max_length=254),
    _matching(r"[^@\s]+@[^@\s]+\.[^@\s]+", "must be an e-mail address such as 'ops@example.com'"),
]
Regexp = Annotated[str, Field(max_length=255), AfterValidator(_regexp)]
ClockTime = Annotated[
    str, _matching(r"([01][0-9]|2[0-3]):[0-5][0-9]", "must be a local time 'HH:MM', e.g. '08:00'")
]
Codecs = Annotated[
    str, _matching(r"[a-z0-9_]+(,[a-z0-9_]+)*", "must be codec names separated by commas")
]
Password = Annotated[str, Field(min_length=8, max_length=128)]
PasswordHash = Annotated[
    str,
    _matching(
        r"scrypt\$[0-9]+\$[0-9]+\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+",
        "must be a hash written by this tool ('scrypt$n$r$p$salt$hash')",
    ),
]
Priority = Annotated[int, Field(ge=0, le=1_000_000)]
Weight = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
Port = Annotated[int, Field(ge=1, le=65535)]
RelayWeight = Annotated[int, Field(ge=1, le=1000)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=4)]
Balance = Annotated[Decimal, Field(max_digits=18, decimal_places=4)]
Increments = Annotated[
    tuple[int, int],
    BeforeValidator(_increments),
    PlainSerializer(lambda value: f"{value[0]}/{value[1]}", return_type=str),
]

Feature = Annotated[str, _one_of("feature", FEATURES)]
BillingMethod = Annotated[str, _one_of("billing method", BILLING_METHODS)]
DistributeMethod = Annotated[str, _one_of("distribute method", DISTRIBUTE_METHODS)]
OnDemandMode = Annotated[str, _one_of("on-demand recording mode", ON_DEMAND_RECORDING)]
RecordCalls = Annotated[str, _one_of("record_calls value", RECORD_CALLS)]
Policy = Annotated[str, _one_of("policy", ACL_POLICIES)]
DdiAction = Annotated[str, _one_of("action", DDI_ACTIONS)]
TemplateType = Annotated[str, _one_of("template type", TEMPLATE_TYPES)]
BodyType = Annotated[str, _one_of("body type", BODY_TYPES)]
Section = Annotated[str, _one_of("restricted section", ADMIN_SECTIONS)]
PrivilegeSection = Annotated[str, _one_of("privilege section", SECTIONS)]
Verbs = Annotated[
    str,
    Field(
        pattern=r"^c?r?u?d?$",
        description="the verbs allowed, in this order: c(reate) r(ead) u(pdate) d(elete)",
    ),
]
Weekday = Annotated[str, _one_of("weekday", WEEKDAYS)]
