"""A call as the pipeline sees it: the request from the shell and what the steps learn."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

from dialplan.ddi import DdiChoice
from dialplan.rating import BillingCheck
from dialplan.reasons import Direction
from dialplan.recording import RecordingPlan
from dialplan.views import CarrierView, ClientView, DdiView, ExtensionView, TerminalView, UserView

Origin = Literal["terminal", "carrier"]


@dataclass(frozen=True, slots=True)
class CallRequest:
    """What the shell knows when a call enters: who sent it, what was dialled, from where."""

    call_id: str
    endpoint: str
    """The PJSIP endpoint the call came from: a terminal or a carrier."""
    dialled: str
    """The number dialled by a terminal, or the called DDI of a carrier call."""
    at: datetime
    caller_id: str | None = None
    source_ip: str | None = None
    source_country: str | None = None
    """ISO 3166 alpha-2 of ``source_ip`` by GeoIP, when a GeoIP database is configured."""
    origin: Origin | None = None
    """Set when the shell already knows; otherwise identify looks the endpoint up."""
    unidentified: str | None = None
    """Why the shell cannot name the endpoint the call came from (an edge call from an
    address that is not a trusted proxy): identify refuses it ``no_client`` with this."""


@dataclass(frozen=True, slots=True)
class Internal:
    """An extension of the caller's own client (never counted, billed or filtered)."""

    extension: ExtensionView
    kind: Literal["internal"] = "internal"


@dataclass(frozen=True, slots=True)
class InterVpbx:
    """An extension of another client of the caller's corporation; internal too."""

    extension: ExtensionView
    kind: Literal["inter_vpbx"] = "inter_vpbx"


@dataclass(frozen=True, slots=True)
class Service:
    """A service code ``*NN…`` dialled by a terminal."""

    code: str
    kind: Literal["service"] = "service"


@dataclass(frozen=True, slots=True)
class External:
    """A public number, normalised to E.164; or an emergency number, as dialled."""

    e164: str
    ddi_prefix: str | None = None
    """A ``NNN*`` outgoing-DDI prefix dialled before the number (already stripped)."""
    forwarded_by: ExtensionView | None = None
    emergency: bool = False
    """An emergency number of the client's country (``e164`` holds it as dialled, e.g.
    ``112``): max calls, daily usage, billing and balance never refuse it (DESIGN §3.5)."""
    kind: Literal["external"] = "external"


@dataclass(frozen=True, slots=True)
class Inbound:
    """A carrier call to one of the client's DDIs."""

    ddi: DdiView
    user: UserView | None
    kind: Literal["inbound"] = "inbound"


Route = Internal | InterVpbx | Service | External | Inbound


@dataclass(slots=True)
class Call:
    """The state of one call while the pipeline runs; each step fills in its part."""

    request: CallRequest
    client: ClientView | None = None
    terminal: TerminalView | None = None
    user: UserView | None = None
    carrier: CarrierView | None = None
    """The carrier the call came from (inbound) or leaves through (external outbound)."""
    route: Route | None = None
    ddi: DdiChoice | None = None
    """The DDI an external call presents, and why (outgoing_ddi step)."""
    diversion: str | None = None
    """The diverting DDI of a forwarded call (a Diversion header)."""
    billing: BillingCheck | None = None
    """How an external call is billed (billing step); None when the step did not run."""
    daily_remaining: Decimal | None = None
    """What the client may still spend today (daily_usage step); None without a limit."""
    record_code_dialled: bool = False
    """The caller dialled the on-demand recording service code before the number."""
    recording: RecordingPlan | None = None
    """How the call is recorded (recording step); None when the step did not run."""
    notes: dict[str, str] = field(default_factory=dict)
    traced: bool = True
    """Whether the pipeline keeps every step's verdict (``explain``, tests). When it keeps
    only the deciding one's (a live call), a step that lets the call go on may return
    :data:`dialplan.registry.PASS` instead of wording what it found."""

    @property
    def direction(self) -> Direction:
        return "inbound" if isinstance(self.route, Inbound) else "outbound"

    @property
    def is_emergency(self) -> bool:
        return isinstance(self.route, External) and self.route.emergency

    @property
    def is_external(self) -> bool:
        return isinstance(self.route, External | Inbound)

    @property
    def language(self) -> str:
        """The language the caller hears: for a carrier's call to a DDI, the DDI's language
        when it has one; otherwise user → client (whose default is its brand's) → the
        carrier's brand, for a call no client claims → ``en``."""
        if isinstance(self.route, Inbound) and self.route.ddi.language:
            return self.route.ddi.language
        if self.user is not None and self.user.language:
            return self.user.language
        if self.client is not None:
            return self.client.language
        if self.carrier is not None:
            return self.carrier.language
        return "en"
