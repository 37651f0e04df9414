"""``callcontrol bench cost``: both sides run under callgrind and their calls are counted."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from callcontrol.bench_cost import (
    SIDES,
    Callgrind,
    _AgiAsterisk,
    _call,
    _callgrind,
    _counted,
    _offer,
    _round,
    bench_cost,
)
from callcontrol.bench_floor import FloorAgi
from callcontrol.cli import app
from callcontrol.config import Config
from callcontrol.handback import packed
from dialplan.errors import CallControlError
from tests.conftest import unavailable


def valgrind() -> None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        unavailable("Valgrind", "apt-get install valgrind")


async def test_each_side_is_counted_per_call_and_callcontrol_does_more_than_the_floor(
    tmp_path: Path,
) -> None:
    valgrind()
    printed: list[str] = []
    kept = tmp_path / "dumps"
    rounds = await bench_cost(4, 20.0, 1, Config(), printed.append, clients=3, warm=2, keep=kept)
    assert [r.side for r in rounds] == list(SIDES)
    assert [r.calls for r in rounds] == [4, 4]
    floor, ours = (r.per_call for r in rounds)
    # Under a million is no Python call at all; the floor reads the AGI environment, answers
    # and closes two connections per call. callcontrol also decides, counts and writes.
    assert floor > 300_000
    assert ours > floor
    assert "3 more clients provisioned in " in printed[1]
    assert printed[-1].startswith("median: floor ")
    assert printed[-1].endswith(f"ratio {ours / floor:.2f}")
    assert [line.split()[1] for line in printed if line.startswith("1 ")] == list(SIDES)
    # The dumps are kept for callgrind_annotate: the one taken after each side's calls.
    assert {"floor-0.1", "callcontrol-0.1"} <= {dump.name for dump in kept.iterdir()}


async def test_on_the_ari_front_each_side_hands_back_the_simulated_calls_and_is_counted() -> None:
    valgrind()
    printed: list[str] = []
    rounds = await bench_cost(3, 20.0, 1, Config(), printed.append, clients=0, warm=1, front="ari")
    # Each side saw its 4 calls end answered (the round says so or fails), then was counted.
    assert [(r.side, r.calls) for r in rounds] == [("floor", 3), ("callcontrol", 3)]
    floor, ours = (r.per_call for r in rounds)
    assert floor > 300_000
    assert ours > floor
    assert printed[0] == "shared database: sqlite; front: ari"
    assert printed[-1].endswith(f"ratio {ours / floor:.2f}")


async def test_an_unknown_front_is_one_line() -> None:
    with pytest.raises(CallControlError, match="front 'sip': give ari or fastagi"):
        await bench_cost(1, 1.0, 1, Config(), print, front="sip")


def test_every_dump_of_a_run_is_summed_and_a_run_that_counted_nothing_is_an_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "side-0.1").write_text("events: Ir\nsummary: 0\ntotals: 700\n")
    (tmp_path / "side-0").write_text("events: Ir\nsummary: 5\ntotals: 5\n")
    (tmp_path / "other-0.1").write_text("totals: 1000\n")
    assert _counted(tmp_path / "side-0") == 705
    (tmp_path / "empty-0").write_text("events: Ir\ntotals: 0\n")
    with pytest.raises(CallControlError, match="counted nothing in empty-0"):
        _counted(tmp_path / "empty-0")


async def test_a_side_that_takes_no_calls_is_one_line_saying_to_lower_the_rate() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: every call is refused
        with pytest.raises(CallControlError, match="lower --rate"):
            await _offer(port, "refused", 3, 50.0)


async def test_a_side_that_does_not_dial_the_call_stops_the_bench() -> None:
    refusing = FloorAgi(
        packed({"CC_ACTION": "reject", "CC_CAUSE": "34", "CC_SOUND": "", "CC_LANG": "en"})
    )
    port = await refusing.start("127.0.0.1", 0)
    try:
        with pytest.raises(CallControlError, match=r"call refused\.0 was not dialled"):
            await _call(port, "refused.0")
    finally:
        await refusing.stop()


def test_without_valgrind_the_bench_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = CliRunner().invoke(app, ["bench", "cost", "--clients", "0"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "error: bench cost needs Valgrind: apt-get install valgrind"
    )


def test_an_unknown_front_on_the_command_line_is_one_line() -> None:
    result = CliRunner().invoke(app, ["bench", "cost", "--front", "sip"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "error: --front 'sip': give ari or fastagi"


def test_two_databases_at_once_are_refused_in_one_line() -> None:
    result = CliRunner().invoke(
        app, ["bench", "cost", "--postgresql", "postgresql://x/y", "--mariadb", "mariadb://x/y"]
    )
    assert result.exit_code != 0
    assert "give --postgresql or --mariadb, not both" in result.output


async def test_a_side_that_does_not_start_or_a_control_that_fails_is_one_line(
    tmp_path: Path,
) -> None:
    false = shutil.which("false")
    assert false is not None
    # A "valgrind" that exits at once, saying nothing: the side never tells its port.
    with pytest.raises(CallControlError, match="the floor side did not start: ''"):
        await _round(
            "floor",
            "sqlite://",
            tmp_path / "floor-0",
            (1, 10.0, 1),
            Callgrind(false, false),
            _AgiAsterisk(),
        )
    with pytest.raises(CallControlError, match="callgrind_control --dump 1 failed"):
        await _callgrind(false, "--dump", 1)


class _Silent:
    """An Asterisk that offers no call: the side sees none end."""

    def side_args(self) -> list[str]:
        return []

    def started(self, line: str) -> bool:
        return line.strip() == "ready"

    async def offer(self, prefix: str, calls: int, rate: float) -> None:
        return


async def test_a_side_that_saw_fewer_calls_end_answered_says_so_with_its_last_warning(
    tmp_path: Path,
) -> None:
    # A "valgrind" that runs a side which is up at once, warns, and saw no call end.
    side = tmp_path / "side"
    side.write_text(
        "#!/bin/sh\necho ready\necho 'WARNING:root:call x not answered: refused' >&2\n"
        "cat > /dev/null\necho 'ended 0'\n"
    )
    side.chmod(0o755)
    true = shutil.which("true")
    assert true is not None
    with pytest.raises(
        CallControlError,
        match=r"the callcontrol side saw 0 of its 3 calls end answered; its last warning:"
        r" WARNING:root:call x not answered: refused",
    ):
        await _round(
            "callcontrol",
            "sqlite://",
            tmp_path / "callcontrol-0",
            (2, 10.0, 1),
            Callgrind(str(side), true),
            _Silent(),
        )
