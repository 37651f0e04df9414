"""``platform up`` for real: PostgreSQL, one rtpengine, Kamailio, two Asterisk sandboxes each
with its own ``callcontrol run``, all on loopback; ``status`` sees every part and the
dispatcher's view of both servers; ``drain`` disables one; ``down`` leaves no process."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from callcontrol.cli import app
from callcontrol.platform.platform import Layout, drain, status, stop, up
from callcontrol.platform.processes import command_line
from models.db import create_engine
from models.provisioning import DEMO_DATASET, load_file
from tests.conftest import _empty, server_database
from tests.e2e.platforms import platform_spec, require_platform

pytestmark = pytest.mark.e2e


def http_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return int(answer.status)


async def test_up_starts_every_part_status_sees_them_drain_and_down(tmp_path: Path) -> None:
    require_platform()
    database = await server_database("postgresql")
    await _empty(database.url)
    engine = create_engine(database.url)
    folder = tmp_path / "run"
    spec = platform_spec(database.url, folder)
    said: list[str] = []
    running = None
    try:
        await load_file(engine, DEMO_DATASET)
        running = await up(engine, spec, echo=said.append)
        layout = running.layout
        assert [s["address"] for s in layout.servers] == ["127.0.0.11", "127.0.0.12"]
        # The demo's two media relay sets: one rtpengine each.
        assert [r["address"] for r in layout.relays] == ["127.0.0.21", "127.0.0.22"]
        assert Layout.read(folder.resolve()) == layout
        found = status(folder.resolve())
        assert found is not None
        assert [(p.kind, p.running) for p in found.parts] == [
            ("rtpengine", True),
            ("rtpengine", True),
            ("edge", True),
            ("asterisk", True),
            ("service", True),
            ("asterisk", True),
            ("service", True),
        ]
        # The edge's dispatcher reads the servers from the database (no names there).
        assert sorted(d.uri for d in found.dispatcher) == [
            f"sip:127.0.0.11:{spec.sip_port}",
            f"sip:127.0.0.12:{spec.sip_port}",
        ]
        for address in ("127.0.0.11", "127.0.0.12"):
            url = f"http://{address}:{spec.health_port}/health"
            assert await asyncio.to_thread(http_status, url) == 200
        # The command prints each part and the edge's view of both servers.
        shown = CliRunner().invoke(app, ["platform", "status", "--run-dir", str(folder)])
        assert shown.exit_code == 0, shown.output
        for address in ("127.0.0.11", "127.0.0.12"):
            assert f"sip:{address}:{spec.sip_port}" in shown.output, shown.output
        dispatcher_lines = [
            line for line in shown.output.splitlines() if line.startswith("dispatcher ")
        ]
        assert len(dispatcher_lines) == 2, shown.output
        assert all(" active " in line for line in dispatcher_lines), shown.output
        line = await drain(engine, folder.resolve(), "as-2", True, spec.sip_port)
        assert line == "as-2 drained: no new calls (edge reloaded)"
        again = status(folder.resolve())
        assert again is not None
        states = {d.uri: d.state for d in again.dispatcher}
        assert states[f"sip:127.0.0.12:{spec.sip_port}"] == "disabled"
    finally:
        at_end = status(folder.resolve())
        pids = [part.pid for part in at_end.parts if part.pid] if at_end else []
        stop(folder.resolve(), 10.0, running)
        await engine.dispose()
    assert pids
    assert all(command_line(pid) is None for pid in pids)
    assert status(folder.resolve()) is None
