"""The fuzz suite: hypothesis with a fixed seed and bounded examples, on real backends.

Each target counts what it tried and what it found in :data:`TALLY`; the counts are
printed at the end of the run (the issue's figures come from there). Hypothesis runs
synchronous tests, so the async code under test runs on one event loop per module
(:class:`Loop`), on which that module's engines live too.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy.ext.asyncio import AsyncEngine

from models.db import create_engine
from tests.conftest import SERVERS, ServerDatabase, unavailable

T = TypeVar("T")

settings.register_profile(
    "fuzz",
    derandomize=True,  # the same inputs on every run: a failure is reproduced by rerunning
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TALLY: dict[str, Counter[str]] = {}
"""Per target: ``tried`` and the count of each outcome."""


def count(target: str, outcome: str) -> None:
    TALLY.setdefault(target, Counter())[outcome] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY:
        return
    terminalreporter.section("fuzz figures")
    for target, counts in sorted(TALLY.items()):
        outcomes = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
        terminalreporter.write_line(f"{target}: {outcomes}")


class Loop:
    """One event loop for a module's async work, driven from synchronous tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


@pytest.fixture(scope="module")
def engines(
    loop: Loop, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, AsyncEngine]]:
    """A migrated database of its own on each backend, for this module only."""
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    shutil.copy(sqlite_template, path)
    urls = {"sqlite": f"sqlite:///{path}"}
    created: list[ServerDatabase] = []
    for backend in ("postgresql", "mariadb"):
        database = ServerDatabase(backend, SERVERS[backend])
        try:
            loop.run(database.create())
        except Exception as exc:
            unavailable(backend, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
        created.append(database)
        urls[backend] = database.url
    found = {backend: create_engine(url) for backend, url in urls.items()}
    yield found
    for engine in found.values():
        loop.run(engine.dispose())
    for database in created:
        database.drop()


@pytest.fixture(scope="module")
def demo_loaded(loop: Loop, engines: dict[str, AsyncEngine]) -> dict[str, AsyncEngine]:
    """:func:`engines` with the demo document loaded."""
    from models.provisioning import DEMO_DATASET, load_text

    for engine in engines.values():
        loop.run(load_text(engine, DEMO_DATASET.read_text(encoding="utf-8")))
    return engines
