"""``callcontrol bench calls`` runs end to end on a small scale (its figures are not asserted:
a benchmark measures, a test only checks that it measures)."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from callcontrol.asterisk import chroot
from callcontrol.bench_measure import MIN_ACHIEVED
from callcontrol.cli import app
from callcontrol.sipp import sipp_binary
from tests.conftest import unavailable

POSTGRESQL = "postgresql://postgres@127.0.0.1/postgres"
HOW = "run as root on Debian with SIPp and a Debian mirror (bash tools/test.sh does)"


@pytest.mark.parametrize("front", ["ari", "fastagi"])
def test_bench_calls_compares_the_static_dialplan_with_callcontrol(front: str) -> None:
    if os.geteuid() != 0 or sipp_binary() is None or chroot.tool("chroot") is None:
        unavailable("the call benchmark", HOW)
    options = ["--rates", "5", "--seconds", "2", "--simulated", "40", "--front", front]
    options += ["--clients", "30"]
    ladders = 2 if front == "ari" else 1  # the ari front runs its ladder twice
    sides = ["static", "floor", "callcontrol"]
    if front == "fastagi":  # the shared database on PostgreSQL, each side on its own core
        options += ["--postgresql", POSTGRESQL, "--split-cores", "--ami-floor"]
        sides.append("floor-ami")  # the floor again, its ends reported over AMI
    else:
        options += ["--repeat", "2"]
    # In a process of its own, as it is run: the app's CPU it measures is that process's.
    command = [sys.executable, "-m", "callcontrol", "bench", "calls", *options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    lines = output.splitlines()
    header = next(n for n, line in enumerate(lines) if line.split()[:2] == ["rate/s", "side"])
    table = [line.split() for line in lines[header + 1 :] if line[:6].strip() == "5"]
    assert sorted(row[1] for row in table) == sorted(sides * ladders)
    rows = {row[1]: row for row in table}
    for row in table:
        assert row[2] == "100.00%", (row[1], output)  # every call completed
    # callcontrol's calls reached the database and cost it a few round trips each; the
    # floor's none; neither spooled a CDR or ran out of pooled connections.
    assert float(rows["callcontrol"][8]) > 0
    assert float(rows["floor"][8]) == 0
    assert rows["callcontrol"][-2:] == ["0", "0"]
    if front == "ari":  # two ARI requests per handed-back call, on both hooked sides
        assert (rows["floor"][9], rows["callcontrol"][9]) == ("2.0", "2.0")
    else:  # one AGI exchange to decide; the AMI floor's ends reached it as events
        assert (rows["floor"][9], rows["callcontrol"][9], rows["floor-ami"][9]) == ("1.0",) * 3
        assert "AMI end reports heard: 10 of 10 calls" in lines
        assert any(line.startswith("end reports") for line in lines)  # sustained or not
    # Every call of our side has its CDR, either front: written, or spooled under load.
    [cdrs] = [line for line in lines if line.startswith("CDRs written by callcontrol: ")]
    counts = re.fullmatch(r"CDRs written by callcontrol: (\d+)(?:, (\d+) spooled)?", cdrs)
    assert counts is not None, cdrs
    assert int(counts[1]) + int(counts[2] or 0) == 10 * ladders
    # Whether a side sustained 5/s depends on how fast SIPp placed the calls on this
    # (shared) machine: the summary must agree with the table's own figures, whatever
    # they are (with two ladders, their median); every call completed is asserted above.
    best = {
        side: statistics.median(
            5 if float(row[3]) >= MIN_ACHIEVED * 5 else 0 for row in table if row[1] == side
        )
        for side in rows
    }
    summary = (
        f"static {best['static']:g}/s, floor ({front}) {best['floor']:g}/s, "
        f"callcontrol ({front}) {best['callcontrol']:g}/s"
    )
    if ladders > 1:
        assert [line for line in lines if line.startswith("ladder ")][:2] == [
            "ladder 1 of 2",
            "ladder 2 of 2",
        ]
        assert any(line.startswith("sustained (the median of 2 ladders, ") for line in lines)
    assert any(line.startswith("sustained ") and line.endswith(summary) for line in lines)
    ratio = best["callcontrol"] / best["floor"] if best["floor"] else 0
    assert any(line.startswith(f"ratios: callcontrol/floor {ratio:.2f}") for line in lines)
    assert any(line.startswith("simulated Asterisk: 40 calls in ") for line in lines)
    # The 30 more clients are in the configuration the calls were decided on.
    assert "30 more clients provisioned in " in output
    assert any(
        line.startswith("configuration snapshot: 31 clients, 31 terminals,") for line in lines
    )


def test_bench_calls_rejects_bad_rates_and_fronts() -> None:
    result = CliRunner().invoke(app, ["bench", "calls", "--rates", "ten"])
    assert result.exit_code == 1
    assert "give whole numbers separated by commas" in result.stderr
    result = CliRunner().invoke(app, ["bench", "calls", "--front", "sip"])
    assert (result.exit_code, result.stderr) == (1, "error: --front 'sip': give ari or fastagi\n")
    result = CliRunner().invoke(app, ["bench", "calls", "--ami-floor"])
    assert (result.exit_code, result.stderr) == (
        1,
        "error: --ami-floor compares FastAGI's end reports: give --front fastagi\n",
    )
