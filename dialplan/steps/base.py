"""What every step shares: its directory, no feature, applies to every call."""

from __future__ import annotations

from typing import ClassVar

from dialplan.call import Call
from dialplan.directory import Directory


class BaseStep:
    name: ClassVar[str]
    feature: ClassVar[str | None] = None
    applies_to: ClassVar[str] = "every call"

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def applies(self, call: Call) -> bool:
        return True
