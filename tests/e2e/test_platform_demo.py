"""``callcontrol demo --platform`` for real: the demo dataset in a scratch PostgreSQL
database, ``platform up`` (Kamailio, two rtpengines, two Asterisk sandboxes each with its
own ``callcontrol run``), the eight demo calls placed by the package's SIP agent, then
``platform down``. Each call's line says which server handled it and what it came to, and
nothing of the platform is left running or in the database afterwards, also after Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from callcontrol.cli import app
from callcontrol.platform.processes import command_line
from models.db import create_engine
from tests.conftest import SERVERS, unavailable
from tests.e2e.platforms import require_platform

pytestmark = pytest.mark.e2e

PID = re.compile(r"^\s+(?:rtpengine|edge|asterisk|service)\s+\S+\s+\S+\s+pid (\d+)$", re.M)
HANDLED = re.compile(
    r"^on the platform: (?:server (\S+) handled it \(client (\S+), outcome (\w+)\); "
    r"the caller got (.+)|the edge answered (.+) itself; no server saw it)$",
    re.M,
)


async def _scratch_databases(server_url: str) -> list[str]:
    engine = create_engine(server_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE 'cc_demo_platform_%'")
            )
            return [row.datname for row in rows]
    finally:
        await engine.dispose()


def scratch_databases() -> list[str]:
    """The demo's scratch databases on the test server (skips, or fails in CI, when the
    server does not answer)."""
    try:
        return asyncio.run(_scratch_databases(SERVERS["postgresql"]))
    except Exception as exc:  # any failure to reach the server
        unavailable("PostgreSQL", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
        raise


def test_the_demo_calls_go_through_both_servers_and_nothing_is_left_running() -> None:
    require_platform()
    before = scratch_databases()
    result = CliRunner().invoke(app, ["demo", "--platform", "--postgresql", SERVERS["postgresql"]])
    output = result.stdout
    assert result.exit_code == 0, output + result.stderr
    pids = [int(pid) for pid in PID.findall(output)]
    assert len(pids) == 7, output  # 2 rtpengines, the edge, 2 × (Asterisk, service)
    assert all(command_line(pid) is None for pid in pids)
    assert scratch_databases() == before
    calls = HANDLED.findall(output)
    assert len(calls) == 8, output
    by_server = [(server, client, outcome, answer) for server, client, outcome, answer, _ in calls]
    # What each demo call came to, and the caller's final answer.
    assert [(outcome, answer) for _, _, outcome, answer in by_server[:7]] == [
        ("answered", "200 OK"),
        ("answered", "200 OK"),
        ("invalid_number", "484 Address Incomplete"),
        ("answered", "200 OK"),
        ("no_answer", "480 Temporarily Unavailable"),
        ("not_allowed", "403 Forbidden"),
        ("busy", "486 Busy Here"),
    ]
    # A DDI nobody owns is refused at the edge: no server sees that call.
    assert calls[7][4] == "404 No such number"
    # hudson-dental is static on as-2; acme-north (hash) stays on one server.
    assert by_server[4][:2] == ("as-2", "hudson-dental")
    assert len({server for server, client, *_ in by_server if client == "acme-north"}) == 1
    assert {server for server, *_ in by_server[:7]} == {"as-1", "as-2"}
    counts = re.search(r"^calls handled: as-1 (\d+), as-2 (\d+)$", output, re.M)
    assert counts is not None, output
    assert int(counts.group(1)) > 0
    assert int(counts.group(2)) > 0


def read_until(process: subprocess.Popen[bytes], marker: bytes, within: float) -> bytes:
    """What ``process`` wrote until ``marker`` appeared (at most ``within`` seconds)."""
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + within
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            seen += chunk
    return seen


def test_ctrl_c_during_the_calls_stops_the_platform_and_drops_its_database() -> None:
    require_platform()
    before = scratch_databases()
    command = ("demo", "--platform", "--postgresql", SERVERS["postgresql"])
    process = subprocess.Popen(
        [sys.executable, "-m", "callcontrol", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        seen = read_until(process, b"[2/8]", 180)
        assert b"[2/8]" in seen, seen.decode(errors="replace")
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    output = (seen + rest).decode(errors="replace")
    assert process.returncode == 130, output
    assert "error: interrupted: the platform was stopped" in output
    assert "Traceback" not in output
    pids = [int(pid) for pid in PID.findall(output)]
    assert len(pids) == 7, output
    assert all(command_line(pid) is None for pid in pids)
    assert scratch_databases() == before
