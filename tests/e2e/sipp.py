"""SIPp for the end-to-end tests: the product's runner, with the tests' own scenarios."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from callcontrol.sipp import Message, Running, SippResult, sipp_binary
from callcontrol.sipp import Sipp as _Sipp

SCENARIOS = Path(__file__).parent / "scenarios"


@dataclass(frozen=True)
class Sipp(_Sipp):
    scenarios: Path = SCENARIOS


__all__ = ["SCENARIOS", "Message", "Running", "Sipp", "SippResult", "sipp_binary"]
