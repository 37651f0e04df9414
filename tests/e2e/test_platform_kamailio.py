"""A real Kamailio started and stopped by the platform's supervisor on today's dispatcher
(rendered from the demo platform, with a ctl socket added): ``status`` shows the edge up and
the dispatcher's view of both servers; ``drain`` marks a server in the database and disables
it in the running dispatcher, ``undrain`` brings it back."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.asterisk.render import write_files
from callcontrol.platform import kamailio
from callcontrol.platform.platform import Layout, dispatcher_edge, drain, status
from callcontrol.platform.processes import PlatformError, Supervisor, command_line
from models.platform import ApplicationServer
from tests.ports import free_port
from tests.test_kamailio import kamailio_binary
from tests.test_service import demo_engine

__all__ = ["demo_engine"]

pytestmark = pytest.mark.e2e

SERVERS = {"as-1": "127.0.0.11", "as-2": "127.0.0.12"}
EDGE = "127.0.0.2"


@dataclass
class Edge:
    engine: AsyncEngine
    folder: Path
    spec: kamailio.EdgeSpec
    supervisor: Supervisor
    server_port: int

    def view(self) -> dict[str, tuple[str, str]]:
        """Server name → (URI, flags) as the running dispatcher has them."""
        found = kamailio.dispatcher_list(self.spec.ctl_socket)
        return {d.name: (d.uri, d.flags) for d in found}


@pytest.fixture
async def edge(demo_engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Edge]:
    kamailio_binary()  # skips (fails under CI=true) without Kamailio
    async with demo_engine.begin() as connection:
        for name, address in SERVERS.items():
            await connection.execute(
                update(ApplicationServer)
                .where(ApplicationServer.name == name)
                .values(address=address)
            )
        # application_servers.drained comes with migration 0009 (helper kam); until then the
        # test adds it to its SQLite file.
        columns = await connection.execute(text("PRAGMA table_info(application_servers)"))
        if "drained" not in {row[1] for row in columns}:
            await connection.execute(
                text("ALTER TABLE application_servers ADD COLUMN drained BOOLEAN DEFAULT 0")
            )
    folder = tmp_path / "run"
    spec = kamailio.EdgeSpec(
        folder / "edge", EDGE, free_port(socket.SOCK_DGRAM, EDGE), folder / "kamailio.ctl"
    )
    server_port = free_port()
    write_files(spec.folder, dict(await dispatcher_edge(demo_engine, spec, server_port)))
    supervisor = Supervisor(folder)
    Layout(
        servers=[],
        relays=[],
        edge={
            "name": spec.name,
            "address": f"{EDGE}:{spec.listen_port}",
            "ctl_socket": str(spec.ctl_socket),
        },
    ).write(folder)
    try:
        await asyncio.to_thread(kamailio.start, supervisor, spec, 90.0, 10.0)
        yield Edge(demo_engine, folder, spec, supervisor, server_port)
    finally:
        supervisor.stop_all(timeout=10)


async def drained_in_database(engine: AsyncEngine, name: str) -> bool:
    async with engine.connect() as connection:
        found = await connection.execute(
            text("SELECT drained FROM application_servers WHERE name = :name"), {"name": name}
        )
        return bool(found.scalar_one())


async def test_status_shows_the_edge_and_its_view_of_both_servers(edge: Edge) -> None:
    found = status(edge.folder)
    assert found is not None
    [part] = found.parts
    assert (part.kind, part.name, part.running) == ("edge", "kamailio", True)
    assert found.dispatcher_error is None
    assert {d.name: d.uri for d in found.dispatcher} == {
        name: f"sip:{address}:{edge.server_port}" for name, address in SERVERS.items()
    }
    # Nothing answers at the servers' addresses: the probes find them inactive, not disabled.
    assert all(d.state != "disabled" for d in found.dispatcher)


async def test_drain_disables_a_server_in_the_running_edge_and_undrain_restores_it(
    edge: Edge,
) -> None:
    line = await drain(edge.engine, edge.folder, "as-1", True, edge.server_port)
    assert line == "as-1 drained: no new calls (edge reloaded)"
    assert await drained_in_database(edge.engine, "as-1")
    view = edge.view()
    assert view["as-1"][1].startswith("D")
    assert not view["as-2"][1].startswith("D")
    line = await drain(edge.engine, edge.folder, "as-1", False, edge.server_port)
    assert line == "as-1 undrained: takes new calls (edge reloaded)"
    assert not await drained_in_database(edge.engine, "as-1")
    assert not edge.view()["as-1"][1].startswith("D")
    with pytest.raises(PlatformError, match="no application server is named 'as-9'"):
        await drain(edge.engine, edge.folder, "as-9", True, edge.server_port)


async def test_the_edge_stops_by_its_pid_and_a_second_one_is_refused(edge: Edge) -> None:
    recorded = edge.supervisor.recorded("kamailio")
    assert recorded is not None
    other = Supervisor(edge.folder / "other")
    with pytest.raises(PlatformError, match=r"kamailio: something answers SIP on 127\.0\.0\.2"):
        kamailio.start(other, edge.spec, 30.0, 10.0)
    assert other.names() == []
    assert edge.supervisor.stop("kamailio", timeout=10)
    assert command_line(recorded.pid) is None
    assert kamailio.options(EDGE, edge.spec.listen_port, within=0.5) == 0
    found = status(edge.folder)
    assert found is not None
    assert found.dispatcher_error == "the edge is not running"
    assert not found.parts[0].running


async def test_kamcmd_failures_and_a_refused_configuration_are_one_line(
    edge: Edge, tmp_path: Path
) -> None:
    with pytest.raises(PlatformError, match=r"kamcmd htable\.reload nosuch failed: error: 500"):
        kamailio.htable_reload(edge.spec.ctl_socket, "nosuch")
    with pytest.raises(PlatformError, match="htable name 'a;b'"):
        kamailio.htable_reload(edge.spec.ctl_socket, "a;b")
    with pytest.raises(PlatformError, match="dispatcher state 'x' is not one of"):
        kamailio.dispatcher_set_state(edge.spec.ctl_socket, "x", 1, "sip:127.0.0.11:5060")
    # A destination the dispatcher does not know.
    with pytest.raises(PlatformError, match="State Update Failed"):
        kamailio.dispatcher_set_state(edge.spec.ctl_socket, "d", 1, "sip:192.0.2.99:5060")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "kamailio.cfg").write_text('#!KAMAILIO\nloadmodule "nosuch.so"\n')
    spec = kamailio.EdgeSpec(broken, EDGE, free_port(socket.SOCK_DGRAM, EDGE), broken / "ctl")
    with pytest.raises(
        PlatformError,
        match=r"kamailio\.cfg is refused by Kamailio: parse error in config file .*line 2",
    ):
        kamailio.start(Supervisor(tmp_path / "other"), spec)
    missing = kamailio.EdgeSpec(tmp_path / "none", EDGE, spec.listen_port, broken / "ctl")
    with pytest.raises(PlatformError, match="does not exist: render the edge first"):
        kamailio.start(Supervisor(tmp_path / "other"), missing)
