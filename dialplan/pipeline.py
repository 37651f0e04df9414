"""The feature pipeline: a registry of steps, per-client ordering and gating, and a trace.

A step is a small class registered with :func:`dialplan.registry.step`; the pipeline
runs the registered steps in :data:`~dialplan.registry.ORDER`, skipping those whose
feature the client lacks or that do not apply to the call, and records every step's
verdict (the service keeps only the deciding one's). The first step that decides ends
the run. To add a step: write
``dialplan/steps/<name>.py``, decorate the class, and put its name in ``ORDER``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dialplan.call import Call, CallRequest
from dialplan.deadlines import deadline
from dialplan.decisions import Decision, Reject
from dialplan.directory import Directory
from dialplan.errors import DatabaseUnavailable
from dialplan.reasons import Direction, Reason
from dialplan.registry import ORDER, PASS, REGISTRY, Decide, Next, Step, Verdict, reject, step

__all__ = [
    "ORDER",
    "PASS",
    "REGISTRY",
    "Decide",
    "Next",
    "Pipeline",
    "Result",
    "Step",
    "StepVerdict",
    "Verdict",
    "reject",
    "step",
    "unavailable",
]


@dataclass(frozen=True, slots=True)
class StepVerdict:
    """One line of the trace."""

    step: str
    verdict: Literal["pass", "decide", "skip"]
    summary: str
    details: dict[str, str]


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
        trace: bool = True,
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
        self.trace = trace
        """Whether a result carries every step's verdict (``callcontrol explain``, tests);
        without, only the deciding step's: a live call holds no more than it needs."""
        self.steps: tuple[Step, ...] = tuple(registry[name](directory) for name in order)

    async def run(self, request: CallRequest) -> Result:
        """The call's decision and every step's verdict. With the database unavailable
        the call is refused with ``service_unavailable``, spoken by the platform (nothing
        says which client it is, so in English), and the trace says why."""
        try:
            async with deadline(self.deadline), self.directory.scope():
                return await self._run(request)
        except DatabaseUnavailable as exc:
            return unavailable(request, str(exc), exc.detail)
        except TimeoutError:
            return unavailable(request, f"not decided within {self.deadline:g} s", "deadline")

    async def _run(self, request: CallRequest) -> Result:
        keep = self.trace
        call = Call(request=request, traced=keep)
        trace: list[StepVerdict] = []
        for current in self.steps:
            feature, client = current.feature, call.client
            if (
                feature is not None and (client is None or feature not in client.features)
            ) or not current.applies(call):
                if keep:  # why, in words, only for a trace that keeps it
                    skipped = self._skip_reason(current, call)
                    trace.append(StepVerdict(current.name, "skip", skipped, {}))
                continue
            verdict = await current.run(call)
            if isinstance(verdict, Decide):
                trace.append(StepVerdict(current.name, "decide", verdict.summary, verdict.details))
                return Result(call, verdict.decision, tuple(trace))
            if keep:
                trace.append(StepVerdict(current.name, "pass", verdict.summary, verdict.details))
        # ``connect`` always decides; reaching here is a bug in the step order.
        decision = Reject(Reason.SERVICE_UNAVAILABLE, call.direction, language=call.language)
        trace.append(StepVerdict("pipeline", "decide", "no step decided", {}))
        return Result(call, decision, tuple(trace))

    @staticmethod
    def _skip_reason(current: Step, call: Call) -> str:
        """Why a step the call skips is skipped."""
        if current.feature is not None and (
            call.client is None or not call.client.has(current.feature)
        ):
            return f"feature {current.feature} is off"
        return f"only for {current.applies_to}"


def _load_steps() -> None:
    """Import the step modules so their decorators register them."""
    import dialplan.steps  # noqa: F401  (registration happens on import)


def unavailable(request: CallRequest, summary: str, detail: str) -> Result:
    """The refusal of a call that could not be decided: ``service_unavailable``, spoken by
    the platform (nothing says which client it is, so in English)."""
    direction: Direction = "inbound" if request.origin == "carrier" else "outbound"
    decision = Reject(Reason.SERVICE_UNAVAILABLE, direction, notify=True)
    verdict = StepVerdict("pipeline", "decide", summary, {"detail": detail})
    return Result(Call(request=request), decision, (verdict,))
