"""``callcontrol bench cost``: both sides run under callgrind and their calls are counted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from callcontrol.bench_cost import SIDES, bench_cost
from callcontrol.cli import app
from callcontrol.config import Config
from tests.conftest import unavailable


def valgrind() -> None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        unavailable("Valgrind", "apt-get install valgrind")


async def test_each_side_is_counted_per_call_and_callcontrol_does_more_than_the_floor() -> None:
    valgrind()
    printed: list[str] = []
    rounds = await bench_cost(4, 20.0, 1, Config(), printed.append, clients=0, warm=2)
    assert [r.side for r in rounds] == list(SIDES)
    assert [r.calls for r in rounds] == [4, 4]
    floor, ours = (r.per_call for r in rounds)
    # Under a million is no Python call at all; the floor reads the AGI environment, answers
    # and closes two connections per call. callcontrol also decides, counts and writes.
    assert floor > 300_000
    assert ours > floor
    assert printed[-1].startswith("median: floor ")
    assert printed[-1].endswith(f"ratio {ours / floor:.2f}")
    assert [line.split()[1] for line in printed if line.startswith("1 ")] == list(SIDES)


def test_without_valgrind_the_bench_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = CliRunner().invoke(app, ["bench", "cost", "--clients", "0"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "error: bench cost needs Valgrind: apt-get install valgrind"
    )


def test_two_databases_at_once_are_refused_in_one_line() -> None:
    result = CliRunner().invoke(
        app, ["bench", "cost", "--postgresql", "postgresql://x/y", "--mariadb", "mariadb://x/y"]
    )
    assert result.exit_code != 0
    assert "give --postgresql or --mariadb, not both" in result.output
