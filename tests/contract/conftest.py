"""The contract suite: the same scenarios against the simulated and the real Asterisk."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: runs against the real Asterisk sandbox with SIPp")
