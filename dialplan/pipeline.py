"""The feature pipeline: a registry of steps, per-client ordering and gating, and a trace.

A step is a small class registered with :func:`step`; the pipeline runs the
registered steps in :data:`ORDER`, skipping those whose feature the client lacks
or that do not apply to the call, and records every step's verdict. The first
step that decides ends the run. To add a step: write ``dialplan/steps/<name>.py``,
decorate the class, and put its name in :data:`ORDER`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol, TypeVar

from dialplan.call import Call, CallRequest
from dialplan.decisions import Decision, Reject
from dialplan.directory import Directory
from dialplan.errors import DatabaseUnavailable
from dialplan.reasons import Direction, Reason

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
        raise ValueError(f"step {cls.name!r} has no place in dialplan.pipeline.ORDER")
    REGISTRY[cls.name] = cls
    return cls


@dataclass(frozen=True, slots=True)
class StepVerdict:
    """One line of the trace."""

    step: str
    verdict: Literal["pass", "decide", "skip"]
    summary: str
    details: dict[str, str]
    seconds: float


@dataclass(frozen=True, slots=True)
class Result:
    call: Call
    decision: Decision
    trace: tuple[StepVerdict, ...]


class Pipeline:
    """Runs a call through the steps; no side effects beyond the directory's reads."""

    def __init__(
        self,
        directory: Directory,
        order: tuple[str, ...] = ORDER,
        registry: dict[str, type[Step]] | None = None,
        *,
        deadline: float | None = None,
    ) -> None:
        if registry is None:
            _load_steps()
            registry = REGISTRY
        unknown = [name for name in order if name not in registry]
        if unknown:
            raise ValueError(f"unknown pipeline steps: {', '.join(unknown)}")
        self.directory = directory
        self.deadline = deadline
        """Seconds a decision may take; past them the call is refused as an outage would
        (a database that accepts connections but never answers). None: no deadline."""
        self.steps: tuple[Step, ...] = tuple(registry[name](directory) for name in order)

    async def run(self, request: CallRequest) -> Result:
        """The call's decision and every step's verdict. With the database unavailable
        the call is refused with ``service_unavailable``, spoken by the platform (nothing
        says which client it is, so in English), and the trace says why."""
        try:
            async with asyncio.timeout(self.deadline):
                async with self.directory.scope():
                    return await self._run(request)
        except DatabaseUnavailable as exc:
            return unavailable(request, str(exc), exc.detail)
        except TimeoutError:
            return unavailable(request, f"not decided within {self.deadline:g} s", "deadline")

    async def _run(self, request: CallRequest) -> Result:
        call = Call(request=request)
        trace: list[StepVerdict] = []
        for current in self.steps:
            skipped = self._skip_reason(current, call)
            if skipped is not None:
                trace.append(StepVerdict(current.name, "skip", skipped, {}, 0.0))
                continue
            started = time.perf_counter()
            verdict = await current.run(call)
            elapsed = time.perf_counter() - started
            if isinstance(verdict, Decide):
                trace.append(
                    StepVerdict(current.name, "decide", verdict.summary, verdict.details, elapsed)
                )
                return Result(call, verdict.decision, tuple(trace))
            trace.append(
                StepVerdict(current.name, "pass", verdict.summary, verdict.details, elapsed)
            )
        # ``connect`` always decides; reaching here is a bug in the step order.
        decision = Reject(Reason.SERVICE_UNAVAILABLE, call.direction, language=call.language)
        trace.append(StepVerdict("pipeline", "decide", "no step decided", {}, 0.0))
        return Result(call, decision, tuple(trace))

    @staticmethod
    def _skip_reason(current: Step, call: Call) -> str | None:
        if current.feature is not None and (
            call.client is None or not call.client.has(current.feature)
        ):
            return f"feature {current.feature} is off"
        if not current.applies(call):
            return f"only for {current.applies_to}"
        return None


def _load_steps() -> None:
    """Import the step modules so their decorators register them."""
    import dialplan.steps  # noqa: F401  (registration happens on import)


def unavailable(request: CallRequest, summary: str, detail: str) -> Result:
    """The refusal of a call that could not be decided: ``service_unavailable``, spoken by
    the platform (nothing says which client it is, so in English)."""
    direction: Direction = "inbound" if request.origin == "carrier" else "outbound"
    decision = Reject(Reason.SERVICE_UNAVAILABLE, direction, notify=True)
    verdict = StepVerdict("pipeline", "decide", summary, {"detail": detail}, 0.0)
    return Result(Call(request=request), decision, (verdict,))


def reject(call: Call, reason: Reason) -> Reject:
    """A Reject for ``call``: direction, language and whether the caller hears why."""
    client = call.client
    notify = reason.platform_speaks or (client is not None and client.has("voice_notifications"))
    return Reject(reason, call.direction, notify=notify, language=call.language)
