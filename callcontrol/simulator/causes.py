"""Hang-up causes as Asterisk names them: ARI reasons, Q.850 codes, their texts, and the
causes chan_pjsip gives to SIP final responses.

``DELETE /channels/{id}?reason=busy`` hangs up with cause 17, and ``ChannelDestroyed``
carries ``cause`` 17 with ``cause_txt`` "User busy" -- the same table Asterisk uses
(``ast_str_to_cause`` for the ARI reasons, ``ast_cause2str`` for the texts).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class DialStatus(StrEnum):
    """The ``dialstatus`` values of ``Dial`` events the simulator emits (an empty status
    opens a dial)."""

    START = ""
    RINGING = "RINGING"
    ANSWER = "ANSWER"
    NOANSWER = "NOANSWER"
    CANCEL = "CANCEL"


APP_HANGUP_REQUEST: Final = 32
"""The cause ChannelHangupRequest carries for every ``DELETE /channels/{id}``, whatever
the reason (measured on Asterisk 22; the reason's cause goes to SIP and ChannelDestroyed)."""
NORMAL: Final = 16
BUSY: Final = 17
NO_USER_RESPONSE: Final = 18
NO_ANSWER: Final = 19
CALL_REJECTED: Final = 21
CONGESTION: Final = 34
FAILURE: Final = 38

REASONS: Final[dict[str, int]] = {
    "normal": NORMAL,
    "busy": BUSY,
    "congestion": CONGESTION,
    "no_answer": NO_ANSWER,
    "timeout": NO_USER_RESPONSE,
    "rejected": CALL_REJECTED,
    "unallocated": 1,
    "normal_unspecified": 31,
    "number_incomplete": 28,
    "codec_mismatch": 58,
    "interworking": 127,
    "failure": FAILURE,
    "answered_elsewhere": 26,
}
"""ARI ``reason`` values of ``DELETE /channels/{channelId}`` and their Q.850 causes."""

TEXTS: Final[dict[int, str]] = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    3: "No route to destination",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    26: "Answered elsewhere",
    27: "Destination out of order",
    29: "Facility rejected",
    28: "Invalid number format (addresses incomplete)",
    31: "Normal, unspecified",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    41: "Temporary failure",
    42: "Switching equipment congestion",
    58: "Bearer capability not available",
    102: "Recovery on timer expiry",
    127: "Interworking, unspecified",
}


SIP_CAUSES: Final[dict[int, int]] = {
    401: CALL_REJECTED,
    403: CALL_REJECTED,
    404: 1,
    408: NO_USER_RESPONSE,
    480: NO_ANSWER,
    484: 28,
    485: 1,
    486: BUSY,
    488: 58,
    500: FAILURE,
    502: 27,
    503: CONGESTION,
    504: 102,
    600: BUSY,
    603: CALL_REJECTED,
    604: 1,
}
"""The Q.850 cause chan_pjsip gives a channel whose INVITE got this final response."""


def sip_cause(code: int) -> int:
    """The cause of a failed outgoing INVITE answered ``code`` (Asterisk's sip2cause)."""
    return SIP_CAUSES.get(code, NORMAL if code < 400 else FAILURE if code >= 500 else 21)


def cause_text(cause: int) -> str:
    """Asterisk's text for a Q.850 ``cause`` ("Unknown" for one it does not name)."""
    return TEXTS.get(cause, "Unknown")
