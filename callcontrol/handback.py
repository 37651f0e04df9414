"""Calls handed back to Asterisk's dialplan (DESIGN §1: the hot path is lean).

A dialled call that needs no mid-call control (it cannot be recorded) is not bridged by
the ARI app: the app sets one channel variable, ``CC``, with the whole decision packed
in it, and continues the caller's channel in the rendered ``[callcontrol-dial]``
context, which dials natively. Two ARI requests instead of nine or ten, and Asterisk
bridges the call without Stasis.

``CC`` is ``dial.<dial string>.<ring seconds>.<Dial options>.<caller number>.<caller
name>.<Diversion header>``, each text field base64, so nothing a tenant wrote can split
it or reach the dialplan unescaped; the dialplan reads it with ``CUT`` and
``BASE64_DECODE``. The options are never empty: they hold ``g``.

In edge mode (:mod:`callcontrol.edge`) the dial string is ``PJSIP/edge/<Request-URI>`` and
``CC`` has two more fields: the digits of ``X-CC-Relay-Set``, which the edge-mode
``[callcontrol-dial]`` adds to the dialled leg in its pre-dial handler, and the sound the
caller hears when the edge has no media relay for that leg (cause 58; ``CC_BY`` is then
``relay``).

At hang-up the context's ``h`` extension enters the app once more, with
``Stasis(<app>,end,${DIALSTATUS},${ANSWEREDTIME_MS},${HANGUPCAUSE},${CC_BY})``: the
app learns the call's end (and writes its CDR, releases its slot) from that StasisStart's
arguments, and the channel leaves again at once. ``CC_BY`` is ``callee`` when Dial
returned because the callee hung up (Dial's ``g`` option), empty when the caller did.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
from dataclasses import dataclass

from callcontrol.edge import NO_RELAY_RESULT, EdgeLeg
from dialplan.decisions import Decision, Dial
from dialplan.reasons import Reason

CONTEXT = "callcontrol-dial"
"""The rendered context a handed-back call continues in, at ``s``, priority 1."""
END = "end"
"""The first Stasis argument of the ``h`` extension's report."""
VARIABLE = "CC"


def needs_control(decision: Decision) -> bool:
    """True when carrying the call out needs the ARI app throughout (a recording may
    start): such a call is bridged in Stasis, never handed back."""
    return (
        isinstance(decision, Dial) and decision.recording is not None and decision.recording.records
    )


def dial_string(decision: Dial, edge: EdgeLeg | None = None) -> str:
    """What ``Dial()`` is given: a terminal's endpoint, or a number at a carrier; in edge
    mode (``edge``, the leg addressed through the edge) the edge endpoint and its URI."""
    if edge is not None:
        return edge.dial_string
    if decision.target == "terminal":
        return f"PJSIP/{decision.endpoint}"
    return f"PJSIP/{decision.number}@{decision.endpoint}"


DIAL_FIELDS = (
    "CC_DIAL",
    "CC_TIMEOUT",
    "CC_OPTIONS",
    "CC_CALLERID",
    "CC_CALLERNAME",
    "CC_DIVERSION",
    "CC_UNREACHABLE",
    "CC_LANG",
)
EDGE_FIELDS = (*DIAL_FIELDS, "CC_RELAY_SET", "CC_NO_RELAY")
"""A dial through the edge: the fields of a dial, the leg's ``X-CC-Relay-Set``, and the
sound the caller hears (in ``CC_LANG``) when the edge has no media relay for the leg."""
REJECT_FIELDS = ("CC_CAUSE", "CC_SOUND", "CC_LANG")
_FIELDS = {"dial": DIAL_FIELDS, "reject": REJECT_FIELDS, "stasis": ()}
_DIGITS = frozenset({"CC_TIMEOUT", "CC_CAUSE", "CC_RELAY_SET"})
"""Fields that are digits, packed as they are; every other one is base64."""


def dial_variables(
    decision: Dial,
    ring_seconds: float,
    unreachable: str = "",
    language: str = "en",
    edge: EdgeLeg | None = None,
    no_relay: str = "",
) -> dict[str, str]:
    """What the dialplan needs to dial ``decision``, by name (see :func:`packed`):
    ``unreachable`` is the sound the caller hears, in ``language``, when the endpoint has
    no contact to call (empty: none, only the 480); ``edge``: the leg goes through the
    edge (its Request-URI and relay set), and ``no_relay`` is the sound the caller hears
    when the edge has no media relay for it (empty: none, only the 503)."""
    # g: Dial returns to the dialplan when the callee ends the call (to tell who did).
    options = f"gS({decision.max_duration})" if decision.max_duration else "g"
    relay = {"CC_RELAY_SET": edge.header, "CC_NO_RELAY": no_relay} if edge is not None else {}
    return {
        "CC_ACTION": "dial",
        "CC_DIAL": dial_string(decision, edge),
        "CC_TIMEOUT": str(max(1, round(ring_seconds))),
        "CC_OPTIONS": options,
        "CC_CALLERID": decision.caller_id or "",
        "CC_CALLERNAME": _printable(decision.caller_name or ""),
        "CC_DIVERSION": (
            f"<tel:{decision.diversion}>;reason=unconditional" if decision.diversion else ""
        ),
        "CC_UNREACHABLE": unreachable,
        "CC_LANG": language,
        **relay,
    }


def packed(variables: dict[str, str]) -> str:
    """The one ``CC`` value of a decision's variables: the action, then its fields in
    order, joined by dots (``reject.<cause>.<sound>.<language>``, ``stasis``)."""
    action = variables["CC_ACTION"]
    names = EDGE_FIELDS if action == "dial" and "CC_RELAY_SET" in variables else _FIELDS[action]
    fields = [variables[name] if name in _DIGITS else _b64(variables[name]) for name in names]
    return ".".join([action, *fields])


def unpack(value: str) -> dict[str, str]:
    """The variables :func:`packed` packed (what the dialplan reads); ``ValueError`` for
    anything else."""
    action, *fields = value.split(".")
    names = _FIELDS.get(action)
    if action == "dial" and len(fields) == len(EDGE_FIELDS):
        names = EDGE_FIELDS
    if names is None or len(fields) != len(names):
        raise ValueError(f"not a packed decision: {value[:80]!r}")
    variables = {"CC_ACTION": action}
    for name, field in zip(names, fields, strict=True):
        variables[name] = field if name in _DIGITS else _text(field)
    return variables


def pack(
    decision: Dial,
    ring_seconds: float,
    unreachable: str = "",
    language: str = "en",
    edge: EdgeLeg | None = None,
    no_relay: str = "",
) -> str:
    """The ``CC`` variable that tells ``[callcontrol-dial]`` how to carry ``decision`` out."""
    return packed(dial_variables(decision, ring_seconds, unreachable, language, edge, no_relay))


@functools.lru_cache(maxsize=4096)
def _b64(text: str) -> str:
    # binascii straight: base64.b64encode is a Python wrapper around the same call. Most
    # fields repeat from call to call (a client's carrier, sounds, language): remembered.
    return binascii.b2a_base64(text.encode(), newline=False).decode("ascii")


def _text(field: str) -> str:
    try:
        return base64.b64decode(field, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"not base64: {field[:80]!r}") from exc


def _printable(text: str) -> str:
    """A caller name without control characters (Asterisk's strings end at NUL)."""
    return "".join(char for char in text if char.isprintable())


SLACK = 2.0
"""Seconds an end report may claim beyond the time since its call was decided (clocks
read at different moments); anything more is more than the call can have talked."""
UNBOUNDED = 1e6
"""Seconds of talk believed at most when nothing else bounds a report."""


@dataclass(frozen=True, slots=True)
class Ended:
    """What the ``h`` extension reported of a handed-back call."""

    status: str
    """``DIALSTATUS``: ANSWER, BUSY, NOANSWER, CANCEL, CONGESTION, CHANUNAVAIL."""
    answered_seconds: float
    cause: int
    """The caller's ``HANGUPCAUSE`` (Q.850)."""
    by_callee: bool
    """True when the callee ended an answered call (Dial returned), else the caller did."""
    clamped: str = ""
    """Why the answered time reported was not believed as it was (empty when it was)."""
    no_relay: bool = False
    """True when the edge had no media relay for the dialled leg (``CC_BY`` ``relay``)."""


def is_end(args: list[str]) -> bool:
    """True when a StasisStart's arguments are the ``h`` extension's report."""
    return bool(args) and args[0] == END


def ended(args: list[str], cap: int | None = None, elapsed: float | None = None) -> Ended:
    """The report in a StasisStart's arguments (``end``, status, ms, cause, by).

    The answered time is believed only as a finite number of milliseconds, at least 0 and
    at most what the call can have talked: the cap it was dialled with (``S()``) and
    ``elapsed``, the seconds since it was decided (plus :data:`SLACK`). Whatever a report
    says beyond that (a forged or broken one), the call is billed at most that;
    ``clamped`` says what was not believed."""
    _, status, answered_ms, cause, by = [*args, "", "", "", "", ""][:5]
    seconds, clamped = _answered(answered_ms, cap, elapsed)
    cause_number = int(_number(cause)) or 16
    return Ended(status, seconds, cause_number, by == "callee", clamped, no_relay=by == "relay")


def _answered(text: str, cap: int | None, elapsed: float | None) -> tuple[float, str]:
    """(seconds, why it was clamped or "") of a reported ``ANSWEREDTIME_MS``."""
    if not text.strip():  # not answered: Asterisk reports nothing
        return 0.0, ""
    shown = repr(text[:80])
    try:
        milliseconds = float(text)
    except ValueError:
        return 0.0, f"{shown} ms is not a number: 0 s"
    if math.isnan(milliseconds) or milliseconds < 0:
        return 0.0, f"{shown} ms is not a duration: 0 s"
    bounds = [(UNBOUNDED, "believed of any call")]
    if cap:
        bounds.append((float(cap), "the cap it was dialled with"))
    if elapsed is not None:
        bounds.append((max(elapsed, 0.0) + SLACK, "the time since it was decided"))
    limit, what = min(bounds)
    seconds = milliseconds / 1000
    if seconds > limit:
        return limit, f"{shown} ms is more than {what}: {limit:.1f} s"
    return seconds, ""


def _number(text: str) -> float:
    """A reported figure: 0 for garbage (not a finite number, or below 0), at most 1e9."""
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return min(value, 1e9) if math.isfinite(value) and value >= 0 else 0.0


UNREACHABLE_CAUSE = "no_answer"
"""How a call to an endpoint with no reachable contact ends the caller's leg: cause 19,
which chan_pjsip answers 480 Temporarily Unavailable (ARI names no reason for cause 20)."""
UNREACHABLE_RESULT = "callee unreachable"

DIAL_FAILURES = {
    "BUSY": "busy",
    "NOANSWER": "no_answer",
    "CONGESTION": "congestion",
    "CHANUNAVAIL": UNREACHABLE_CAUSE,
}
"""The hang-up reason of a Dial() that was not answered, by DIALSTATUS."""


def result_of(end: Ended, max_duration: int | None, by_operator: bool) -> tuple[str, str, bool]:
    """(result, cause, answered) of a handed-back call, worded as a bridged call's."""
    if end.status == "ANSWER":
        if max_duration and end.answered_seconds >= max_duration - 0.5 and end.by_callee:
            return "answered, balance ran out", "normal", True
        who = "operator" if by_operator else "callee" if end.by_callee else "caller"
        return f"answered, {who} hung up", "normal", True
    if end.status in ("CANCEL", ""):  # "": the caller left before Dial() ran
        if by_operator:
            return "hung up by operator before answer", "normal", False
        return "caller hung up before answer", "normal", False
    if end.no_relay:
        return NO_RELAY_RESULT, Reason.SERVICE_UNAVAILABLE.cause().ari, False
    if end.status == "CHANUNAVAIL":
        return UNREACHABLE_RESULT, UNREACHABLE_CAUSE, False
    return "callee failed", DIAL_FAILURES.get(end.status, "congestion"), False


def reason_of(end: Ended) -> str | None:
    """The refusal reason an unanswered dial ends with, when it is ours to say: a leg the
    edge had no media relay for is ``service_unavailable``, a callee with no contact to
    call ``destination_unreachable``."""
    if end.no_relay:
        return Reason.SERVICE_UNAVAILABLE.value
    return Reason.DESTINATION_UNREACHABLE.value if end.status == "CHANUNAVAIL" else None
