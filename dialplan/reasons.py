"""Why a call was refused: the stable reason identifiers of DESIGN §3, with their causes.

A reason is what an operator greps for; the cause is what Asterisk hangs up with
(an ARI hang-up reason) and the SIP response the caller sees.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

Direction = Literal["inbound", "outbound"]


class Reason(StrEnum):
    NO_CLIENT = "no_client"
    IP_NOT_ALLOWED = "ip_not_allowed"
    NOT_ALLOWED = "not_allowed"
    MAX_CALLS_REACHED = "max_calls_reached"
    DAILY_LIMIT_REACHED = "daily_limit_reached"
    NO_OUTGOING_DDI = "no_outgoing_ddi"
    CANNOT_BE_BILLED = "cannot_be_billed"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    INVALID_NUMBER = "invalid_number"
    DESTINATION_UNREACHABLE = "destination_unreachable"
    SERVICE_UNAVAILABLE = "service_unavailable"

    @property
    def locution(self) -> str:
        """The sound name of the voice notification for this reason."""
        return str(self.value)

    @property
    def platform_speaks(self) -> bool:
        """True when the notification plays even without the client's voice_notifications."""
        return self in (Reason.IP_NOT_ALLOWED, Reason.NO_CLIENT)

    def cause(self, direction: Direction = "outbound") -> Cause:
        if self is Reason.MAX_CALLS_REACHED and direction == "inbound":
            return BUSY
        return _CAUSES[self]


class Cause:
    """An ARI hang-up reason and the SIP response code it becomes."""

    __slots__ = ("ari", "sip")

    def __init__(self, ari: str, sip: int) -> None:
        self.ari = ari
        self.sip = sip

    def __repr__(self) -> str:
        return f"Cause({self.ari!r}, {self.sip})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cause) and (self.ari, self.sip) == (other.ari, other.sip)

    def __hash__(self) -> int:
        return hash((self.ari, self.sip))


UNALLOCATED = Cause("unallocated", 404)
REJECTED = Cause("rejected", 403)
BUSY = Cause("busy", 486)
NUMBER_INCOMPLETE = Cause("number_incomplete", 484)
CONGESTION = Cause("congestion", 503)
# ARI's ``failure`` (38) becomes SIP 500 on chan_pjsip; DESIGN's "failure (503)" is
# what ``congestion`` (34) sends, so the internal-fault reason uses that.
FAILURE = Cause("congestion", 503)

_CAUSES: dict[Reason, Cause] = {
    Reason.NO_CLIENT: UNALLOCATED,
    Reason.IP_NOT_ALLOWED: REJECTED,
    Reason.NOT_ALLOWED: REJECTED,
    Reason.MAX_CALLS_REACHED: REJECTED,
    Reason.DAILY_LIMIT_REACHED: REJECTED,
    Reason.NO_OUTGOING_DDI: REJECTED,
    Reason.CANNOT_BE_BILLED: REJECTED,
    Reason.INSUFFICIENT_BALANCE: REJECTED,
    Reason.INVALID_NUMBER: NUMBER_INCOMPLETE,
    # With a carrier involved the carrier's own cause is used; this is the cause
    # when no carrier could even be tried (no outbound route).
    Reason.DESTINATION_UNREACHABLE: CONGESTION,
    Reason.SERVICE_UNAVAILABLE: FAILURE,
}
