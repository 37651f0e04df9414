"""What a step is and how it registers: the order steps run in, their verdicts, the
registry and :func:`reject`. The steps import this, never :mod:`dialplan.pipeline`, which
loads them: the package's modules depend one way only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol, TypeVar

from dialplan.call import Call
from dialplan.decisions import Decision, Reject
from dialplan.directory import Directory
from dialplan.reasons import Reason

ORDER: tuple[str, ...] = (
    "identify",
    "source_filter",
    "emergency",
    "route",
    "call_acl",
    "max_calls",
    "daily_usage",
    "outgoing_ddi",
    "billing",
    "recording",
    "connect",
)
"""The order steps run in, for every client. Names must be registered steps."""


@dataclass(frozen=True, slots=True)
class Next:
    """The step lets the call go on; ``summary`` says what it found."""

    summary: str
    details: dict[str, str] = field(default_factory=dict)


PASS = Next("")
"""A step's "go on" when nobody reads why (``call.traced`` is False): no summary, no
details, nothing built per call."""


@dataclass(frozen=True, slots=True)
class Decide:
    """The step ends the pipeline with ``decision``."""

    decision: Decision
    summary: str
    details: dict[str, str] = field(default_factory=dict)


Verdict = Next | Decide


class Step(Protocol):
    """One feature of the pipeline. ``run`` reads the call, may fill it in, and says a verdict."""

    name: ClassVar[str]
    feature: ClassVar[str | None]
    """Client feature the step needs; None runs for every client."""

    def __init__(self, directory: Directory) -> None: ...

    applies_to: ClassVar[str]
    """Which calls the step judges, in words, for the trace of the others."""

    def applies(self, call: Call) -> bool:
        """False skips the step for this call (e.g. ACLs only judge external calls)."""

    async def run(self, call: Call) -> Verdict: ...


REGISTRY: dict[str, type[Step]] = {}
S = TypeVar("S", bound=type[Step])


def step(cls: S) -> S:
    """Register a step class under its ``name``; a duplicate or unordered name fails now."""
    if cls.name in REGISTRY:
        raise ValueError(f"step {cls.name!r} is registered twice")
    if cls.name not in ORDER:
        raise ValueError(f"step {cls.name!r} has no place in dialplan.registry.ORDER")
    REGISTRY[cls.name] = cls
    return cls


def reject(call: Call, reason: Reason) -> Reject:
    """A Reject for ``call``: direction, language and whether the caller hears why."""
    client = call.client
    notify = reason.platform_speaks or (client is not None and client.has("voice_notifications"))
    return Reject(reason, call.direction, notify=notify, language=call.language)
