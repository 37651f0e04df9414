"""Decisions are values: the core returns one, the shell carries it out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dialplan.rating import Billed
from dialplan.reasons import Cause, Direction, Reason
from dialplan.recording import RecordingPlan


@dataclass(frozen=True, slots=True)
class Dial:
    """Ring ``endpoint`` (a terminal, or a carrier with ``number``) and bridge on answer."""

    endpoint: str
    target: Literal["terminal", "carrier"]
    number: str
    caller_id: str | None = None
    caller_name: str | None = None
    max_duration: int | None = None
    """Seconds after answer when the call is hung up (prepaid); None = no cap."""
    diversion: str | None = None
    """A forwarded call's diverting DDI, sent as a Diversion header."""
    billing: Billed | None = None
    """The rate that prices the call when it ends; None when it is not billed."""
    recording: RecordingPlan | None = None
    """How the call is recorded once answered; None when it never is."""
    kind: Literal["dial"] = "dial"


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the call: play ``locution`` over early media when ``notify``, then hang up."""

    reason: Reason
    direction: Direction = "outbound"
    notify: bool = False
    language: str = "en"
    cause: Cause = field(init=False)
    kind: Literal["reject"] = "reject"

    def __post_init__(self) -> None:
        object.__setattr__(self, "cause", self.reason.cause(self.direction))

    @property
    def locution(self) -> str:
        return self.reason.locution


@dataclass(frozen=True, slots=True)
class RunService:
    """Run the service behind a ``*NN…`` code."""

    code: str
    kind: Literal["service"] = "service"


Decision = Dial | Reject | RunService
