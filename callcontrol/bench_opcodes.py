"""Python opcodes per call, charged to callcontrol's own functions (``bench cost --opcodes``).

callgrind counts the instructions a side runs, but not whose Python code runs them. Here
the side traces itself instead (``sys.settrace`` with opcode events): every opcode run
while counting is charged to the innermost function of callcontrol's packages on the stack,
so a library's work (SQLAlchemy, aiohttp, a dataclass's ``__init__``) is charged to the
function of ours that called it, and the event loop's own work to :data:`OUTSIDE`. The two
sides can then be compared function by function, and the count is as steady as callgrind's.
Only this thread is counted (not a driver's worker thread), and a greenlet's stack ends at
its start: SQLAlchemy's bridge between its async and sync code is charged outside, what it
runs of ours to our functions.

The trace function is installed when the side starts and only counts between :meth:`on`
and :meth:`off`: installed later, from a signal handler, Python 3.11 would trace the
handler's frames only. Tracing slows a side about twenty times, as callgrind does.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

PACKAGES = ("callcontrol", "dialplan", "models", "locutions")
OUTSIDE = "(outside callcontrol: the event loop, the libraries it calls back)"

Tracer = Callable[[FrameType, str, Any], Any]


def package_roots() -> tuple[str, ...]:
    """The folders of callcontrol's packages, as their code objects name their files."""
    base = Path(__file__).resolve().parent.parent
    return tuple(f"{base / name}/" for name in PACKAGES)


class OpcodeCounter:
    """Counts the opcodes run while on, by the function they are charged to: the innermost
    frame whose file is under one of ``roots``, named ``path:line qualname``."""

    def __init__(self, roots: tuple[str, ...] | None = None) -> None:
        self.roots = roots if roots is not None else package_roots()
        self._base = str(Path(self.roots[0]).parent) + "/" if self.roots else ""
        self.counting = False
        self.counts: Counter[str] = Counter()
        self._names: dict[CodeType, str] = {}

    def install(self) -> None:
        """Trace every frame made from now on in this thread (counting only while on)."""
        sys.settrace(self._call)

    def on(self) -> None:
        self.counting = True

    def off(self) -> None:
        self.counting = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(dict(self.counts)))

    def _owner(self, frame: FrameType) -> str:
        current: FrameType | None = frame
        while current is not None:
            code = current.f_code
            name = self._names.get(code)
            if name is None:  # first seen: named if it is ours, "" if not
                shown = code.co_filename.removeprefix(self._base)
                # A module's body is not a function: the side's ``__main__`` runs the
                # event loop, whose own work is charged outside.
                ours = code.co_filename.startswith(self.roots) and code.co_name != "<module>"
                name = f"{shown}:{code.co_firstlineno} {code.co_qualname}" if ours else ""
                self._names[code] = name
            if name:
                return name
            current = current.f_back
        return OUTSIDE

    def _call(self, frame: FrameType, event: str, arg: Any) -> Tracer | None:
        if event != "call" or not self.counting:
            return None
        frame.f_trace_opcodes = True
        counts, owner = self.counts, self._owner(frame)

        def opcode(frame: FrameType, event: str, arg: Any) -> Tracer:
            if event == "opcode":
                counts[owner] += 1
            return opcode

        return opcode


def read(path: Path) -> Counter[str]:
    """The counts a side dumped with :meth:`OpcodeCounter.dump`."""
    return Counter({str(name): int(count) for name, count in json.loads(path.read_text()).items()})
