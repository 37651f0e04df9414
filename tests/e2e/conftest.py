"""End-to-end tests: the fixtures live in :mod:`tests.e2e.fixtures` (a plugin that test modules
load, so the contract suite shares the same sandbox); this only registers the marker."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: runs against the real Asterisk sandbox with SIPp")
