"""On-demand and automatic call recording (DESIGN §3.8): who may record, when it starts.

Pure: the recording step asks :func:`plan` what a call's recording is, and the shell
feeds the digits a party presses to a :class:`Toggle`, which says when ``*<code>``
was completed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OnDemand = Literal["off", "dtmf", "service_code", "both"]
RecordCalls = Literal["none", "all", "inbound", "outbound"]


@dataclass(frozen=True, slots=True)
class RecordingPlan:
    """How a call is recorded: from its answer, and/or toggled by ``*<dtmf_code>``."""

    from_answer: bool
    dtmf_code: str | None
    why: str

    @property
    def records(self) -> bool:
        """True when anything may ever record this call."""
        return self.from_answer or self.dtmf_code is not None


def by_dtmf(mode: str) -> bool:
    return mode in ("dtmf", "both")


def by_service_code(mode: str) -> bool:
    return mode in ("service_code", "both")


def ddi_records(record_calls: str, direction: Literal["inbound", "outbound"]) -> bool:
    """Does a DDI with ``record_calls`` record a call of ``direction`` through it?"""
    return record_calls == "all" or record_calls == direction


def plan(
    *,
    on_demand: str,
    code: str | None,
    service_code_dialled: bool,
    ddi: str | None,
    ddi_record_calls: str,
    direction: Literal["inbound", "outbound"],
) -> RecordingPlan:
    """The recording of one call of a client that has the ``recordings`` feature.

    From answer when the caller dialled the service code ``*<code>`` before the number,
    or when the call's DDI (the called one inbound, the presented one outbound) records
    calls of its direction. Toggled by ``*<code>`` pressed during the call when the
    client's on-demand recording includes DTMF.
    """
    reasons: list[str] = []
    from_answer = False
    if service_code_dialled and code is not None and by_service_code(on_demand):
        from_answer = True
        reasons.append(f"service code *{code} dialled: recorded from answer")
    if ddi is not None and ddi_records(ddi_record_calls, direction):
        from_answer = True
        reasons.append(f"DDI {ddi} records {ddi_record_calls} calls: recorded from answer")
    dtmf_code = code if code is not None and by_dtmf(on_demand) else None
    if dtmf_code is not None:
        reasons.append(f"*{dtmf_code} during the call starts and stops a segment")
    if not reasons:
        reasons.append(
            "not recorded: on-demand recording is off"
            if on_demand == "off"
            else f"not recorded: on-demand recording is by {on_demand.replace('_', ' ')} only"
        )
    return RecordingPlan(from_answer, dtmf_code, "; ".join(reasons))


class Toggle:
    """Watches the digits one party presses; True each time ``*<code>`` is completed.

    Digits pressed more than ``gap`` seconds apart do not form a code: a ``*`` and
    a ``5`` pressed a minute apart are not ``*5``.
    """

    def __init__(self, code: str, gap: float = 3.0) -> None:
        self.code = f"*{code}"
        self.gap = gap
        self._typed = ""
        self._last = float("-inf")

    def press(self, digit: str, at: float) -> bool:
        if at - self._last > self.gap:
            self._typed = ""
        self._last = at
        self._typed = (self._typed + digit)[-len(self.code) :]
        if self._typed == self.code:
            self._typed = ""
            return True
        return False
