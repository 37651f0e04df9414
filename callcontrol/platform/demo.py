"""``callcontrol demo --platform``: the demo calls through a real platform.

A scratch database on the PostgreSQL server gets the demo dataset, its carriers moved to
loopback (127.0.0.31 on, where this command stands in for them); ``platform up`` starts the
edge (Kamailio), one rtpengine per media relay set and two Asterisk sandboxes, each with its
own ``callcontrol run``. Each demo call (:data:`callcontrol.demo.DEMO_CALLS`) is placed by a
small SIP agent (:mod:`callcontrol.platform.agent`): a terminal authenticating at the edge
with its digest password, or the carrier; the party called is a terminal registered at the
edge, or the carrier. For each call the command prints what the pipeline decides
(``explain``), then what the caller got and which server handled the call: the one whose
``/metrics`` counted it, with the outcome it counted. ``platform down`` follows and the
scratch database is dropped, also after a failure or Ctrl-C.

The terminals are our agent rather than SIPp: a terminal must register with digest
credentials at the edge and stay reachable while calls arrive, each call needs a chosen
answer, and the Via headers tell which server a leg came through; one asyncio process plays
every terminal and carrier, with bounded waits, where SIPp would need a scenario and a
process per role and call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.demo import DEMO_CALLS, DemoCall
from callcontrol.explain import explain, to_text
from callcontrol.platform.agent import Agent, Message, agent, sdp
from callcontrol.platform.platform import PlatformSpec, Running, status, stop, up
from callcontrol.platform.processes import PlatformError

Echo = Callable[[str], None]

CARRIERS_FROM = 31
"""The carriers stand on 127.0.0.31, .32 … (by id), each on the platform's SIP port."""
TERMINALS_FROM = 41
"""The terminals' agents on 127.0.0.41, .42 … in the order the calls need them."""
CALLER_NUMBER = "+34600555666"
"""Who the carrier's inbound calls come from."""
MEDIA_PORT = 40000
"""The RTP port the agents' SDP names (nothing listens: the demo checks signalling)."""
CALL_WAIT = 30.0
"""Seconds for a call's final answer (a refusal comes after its locution)."""
COUNT_WAIT = 15.0
"""Seconds for a server's /metrics to count a call that ended."""
ANSWERS = {
    "answer": "200 OK",
    "busy": "486 Busy Here",
    "noanswer": "480 Temporarily Unavailable",
    "fail": "503 Service Unavailable",
}
"""How the party called answers, by the demo call's ``how``."""
COUNTED = re.compile(r'^callcontrol_calls_total\{client="([^"]*)",outcome="([^"]*)"\} (\S+)$')


@dataclass(frozen=True, slots=True)
class Terminal:
    """A demo terminal as the edge knows it: ``name@domain`` and its digest password."""

    name: str
    domain: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Handled:
    """What one call came to on the platform."""

    answer: str
    """The caller's final answer (``200 OK``) or why there is none."""
    server: str | None = None
    """The server whose /metrics counted the call (None: no server counted it)."""
    client: str | None = None
    outcome: str | None = None
    """The outcome that server counted (``answered``, ``busy``, ``not_allowed`` …)."""

    by_edge: bool = False
    """The edge gave the final answer itself (its ``Server`` header): no server saw the call."""

    def line(self) -> str:
        if self.by_edge:
            return f"on the platform: the edge answered {self.answer} itself; no server saw it"
        if self.server is None:
            return f"on the platform: the caller got {self.answer}; no server counted the call"
        return (
            f"on the platform: server {self.server} handled it (client {self.client}, "
            f"outcome {self.outcome}); the caller got {self.answer}"
        )


def missing_prerequisite(postgresql: str | None, cache: Path | None = None) -> str | None:
    """What is missing to run the platform demo, as one line saying what to do; None when
    nothing is."""
    from callcontrol.asterisk.chroot import cache_dir, chroot_path, is_complete

    if not postgresql:
        return (
            "demo --platform needs a PostgreSQL server the platform's parts share: "
            "--postgresql postgresql://USER@HOST:PORT/DATABASE (a scratch database is made there)"
        )
    try:
        backend = make_url(postgresql).get_backend_name()
    except ArgumentError:
        return f"--postgresql {postgresql!r}: not a database URL (postgresql://USER@HOST:PORT/DB)"
    if backend != "postgresql":
        return f"--postgresql: a postgresql:// URL, not {backend}"
    if os.geteuid() != 0:
        return "demo --platform needs root (its Asterisk sandboxes run in a chroot): run it as root"
    for program, package in (
        ("kamailio", "kamailio kamailio-postgres-modules"),
        ("rtpengine", "--no-install-recommends rtpengine-daemon"),
    ):
        if shutil.which(program) is None and shutil.which(program, path="/usr/sbin") is None:
            return f"{program} is not installed: apt-get install {package}"
    root = chroot_path(cache_dir(cache))
    if not is_complete(root):
        return (
            f"no Asterisk chroot in {root.parent}: build it once (about 15 min) with "
            "`callcontrol asterisk sandbox build`"
        )
    return None


def demo_terminals(document: Mapping[str, Any]) -> dict[str, Terminal]:
    """Every terminal of a provisioning document, by name, with its client's SIP domain."""
    found = {}
    for client in document.get("clients") or []:
        for terminal in client.get("terminals") or []:
            found[terminal["name"]] = Terminal(
                terminal["name"], client["sip_domain"], str(terminal["password"])
            )
    return found


def parse_counted(exposition: str) -> dict[tuple[str, str], float]:
    """``callcontrol_calls_total`` of a /metrics page: (client, outcome) → calls."""
    counted = {}
    for line in exposition.splitlines():
        match = COUNTED.match(line.strip())
        if match:
            counted[(match.group(1), match.group(2))] = float(match.group(3))
    return counted


def _metrics(address: str, port: int) -> dict[tuple[str, str], float]:
    url = f"http://{address}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return parse_counted(answer.read().decode())
    except OSError as exc:  # URLError and HTTPError are OSErrors
        raise PlatformError(f"{url} did not answer: {getattr(exc, 'reason', exc)}") from exc


class Counter:
    """Tells which server counted the call that just ended, from both servers' /metrics."""

    def __init__(self, servers: Mapping[str, str], port: int) -> None:
        self.servers = dict(servers)
        """name → address"""
        self.port = port
        self.seen: dict[str, dict[tuple[str, str], float]] = {}

    async def snapshot(self) -> dict[str, dict[tuple[str, str], float]]:
        return {
            name: await asyncio.to_thread(_metrics, address, self.port)
            for name, address in self.servers.items()
        }

    async def start(self) -> None:
        self.seen = await self.snapshot()

    async def counted(self, within: float = COUNT_WAIT) -> tuple[str, str, str] | None:
        """(server, client, outcome) of a call counted since the last look, waiting at
        most ``within`` seconds; None when no server counted one."""
        for _ in range(max(1, int(within / 0.2))):
            now = await self.snapshot()
            for name, counts in now.items():
                before = self.seen.get(name, {})
                for (client, outcome), value in counts.items():
                    if value > before.get((client, outcome), 0.0):
                        self.seen = now
                        return name, client, outcome
            await asyncio.sleep(0.2)
        return None


async def move_carriers(engine: AsyncEngine, sip_port: int) -> dict[str, tuple[str, int]]:
    """Every carrier (by id) onto its loopback address, where the demo stands in for it:
    endpoint → (host, port)."""
    from models.routing import Carrier

    placed: dict[str, tuple[str, int]] = {}
    async with engine.begin() as connection:
        rows = (
            await connection.execute(select(Carrier.id, Carrier.endpoint).order_by(Carrier.id))
        ).all()
        if len(rows) > 9:
            raise PlatformError(f"{len(rows)} carriers: the platform demo stands in for 9 at most")
        for index, row in enumerate(rows):
            host = f"127.0.0.{CARRIERS_FROM + index}"
            await connection.execute(
                update(Carrier).where(Carrier.id == row.id).values(host=host, port=sip_port)
            )
            placed[row.endpoint] = (host, sip_port)
    return placed


class Calls:
    """The demo's SIP side: one agent per carrier, one per terminal (made when a call
    needs it), and the calls placed through the edge."""

    def __init__(
        self,
        stack: contextlib.AsyncExitStack,
        edge: tuple[str, int],
        carriers: Mapping[str, Agent],
        terminals: Mapping[str, Terminal],
    ) -> None:
        self.stack = stack
        self.edge = edge
        self.carriers = dict(carriers)
        self.known = dict(terminals)
        self.terminals: dict[str, Agent] = {}
        self.registered: set[str] = set()

    async def terminal(self, name: str) -> Agent:
        if name not in self.known:
            raise PlatformError(f"demo call from or to {name!r}: no such demo terminal")
        if name not in self.terminals:
            host = f"127.0.0.{TERMINALS_FROM + len(self.terminals)}"
            self.terminals[name] = await self.stack.enter_async_context(agent(host))
        return self.terminals[name]

    async def callee(self, call: DemoCall) -> None:
        """Make the party called answer as the call says (a terminal registers first)."""
        if call.answer is None:
            return
        endpoint, how, _ = call.answer
        status = ANSWERS[how]
        if endpoint in self.carriers:
            self.carriers[endpoint].answer["INVITE"] = status
            return
        phone = await self.terminal(endpoint)
        phone.answer["INVITE"] = status
        if endpoint not in self.registered:
            terminal = self.known[endpoint]
            _, final = await phone.register(
                self.edge, terminal.name, terminal.domain, terminal.password, within=CALL_WAIT
            )
            if final.status != 200:
                raise PlatformError(f"{endpoint} could not register at the edge: {final.first}")
            self.registered.add(endpoint)

    def reset(self, call: DemoCall) -> None:
        if call.answer is not None and call.answer[0] in self.carriers:
            self.carriers[call.answer[0]].answer["INVITE"] = "486 Busy Here"

    async def place(self, call: DemoCall) -> tuple[str, bool]:
        """Place ``call`` and end it as the caller would: (its final answer in words,
        whether the edge gave that answer itself)."""
        await self.callee(call)
        try:
            caller, final = await self._invite(call)
        except TimeoutError:
            return f"no final answer within {CALL_WAIT:.0f} s", False
        finally:
            self.reset(call)
        if final.status == 200:
            await caller.in_dialog(self.edge, "ACK", final)
            await asyncio.sleep(call.caller_hangs_up_after or 0.0)
            with contextlib.suppress(TimeoutError):
                await caller.in_dialog(self.edge, "BYE", final, within=CALL_WAIT)
        by_edge = final.header("server").lower().startswith("kamailio")
        return final.first.removeprefix("SIP/2.0 "), by_edge

    async def _invite(self, call: DemoCall) -> tuple[Agent, Message]:
        if call.origin == "carrier":
            carrier = self.carriers[call.endpoint]
            final = await carrier.call_in(
                self.edge, call.dialled, CALLER_NUMBER, media_port=MEDIA_PORT, within=CALL_WAIT
            )
            return carrier, final
        phone = await self.terminal(call.endpoint)
        terminal = self.known[call.endpoint]
        _, final = await phone.invite(
            self.edge,
            terminal.name,
            terminal.domain,
            terminal.password,
            call.dialled,
            body=sdp(phone.address[0], MEDIA_PORT),
            within=CALL_WAIT,
        )
        return phone, final


async def place_calls(
    engine: AsyncEngine,
    spec: PlatformSpec,
    running: Running,
    carriers: Mapping[str, tuple[str, int]],
    echo: Echo,
) -> dict[str, int]:
    """Every demo call through the running platform, reported as it goes: the calls each
    server handled, by name."""
    import yaml

    from models.directory import SqlDirectory
    from models.provisioning import DEMO_DATASET

    document = yaml.safe_load(DEMO_DATASET.read_text(encoding="utf-8"))
    directory = SqlDirectory(engine)
    servers = {server["name"]: server["address"] for server in running.layout.servers}
    counter = Counter(servers, spec.health_port)
    handled = dict.fromkeys(servers, 0)
    edge = (spec.edge_address, spec.sip_port)
    async with contextlib.AsyncExitStack() as stack:
        stand_ins = {
            endpoint: await stack.enter_async_context(agent(host, port))
            for endpoint, (host, port) in carriers.items()
        }
        calls = Calls(stack, edge, stand_ins, demo_terminals(document))
        for number, call in enumerate(DEMO_CALLS, start=1):
            echo("")
            echo(f"[{number}/{len(DEMO_CALLS)}] {call.title}")
            echo(to_text(await explain(directory, call.endpoint, call.dialled, datetime.now(UTC))))
            await counter.start()
            answer, by_edge = await calls.place(call)
            counted = None if by_edge else await counter.counted()
            result = Handled(answer, *counted) if counted else Handled(answer, by_edge=by_edge)
            if result.server is not None:
                handled[result.server] += 1
            echo(result.line())
    return handled


async def run_platform_demo(
    postgresql: str | None,
    echo: Echo,
    *,
    cache: Path | None = None,
) -> dict[str, int]:
    """The demo calls through a platform started for them and stopped after them (also on
    a failure or Ctrl-C); the calls each server handled. PlatformError names what is
    missing before anything starts."""
    from models import provisioning
    from models.db import create_engine, scratch_database
    from models.migrate import upgrade_async

    missing = missing_prerequisite(postgresql, cache)
    if missing is not None:
        raise PlatformError(missing)
    assert postgresql is not None
    echo("callcontrol demo --platform: the edge, rtpengine and two Asterisk servers on loopback")
    with tempfile.TemporaryDirectory(prefix="callcontrol-platform-demo-") as folder:
        async with scratch_database(postgresql, "cc_demo_platform") as url:
            engine = create_engine(url)
            spec = PlatformSpec(url, servers=2, run_dir=Path(folder) / "run", cache=cache)
            running: Running | None = None
            try:
                await upgrade_async(url)
                report = await provisioning.load_file(engine, provisioning.DEMO_DATASET)
                echo(
                    f"provisioned {provisioning.DEMO_DATASET.name} in a scratch database: {report}"
                )
                carriers = await move_carriers(engine, spec.sip_port)
                running = await up(engine, spec, echo=echo)
                found = status(spec.folder)
                for part in found.parts if found else []:
                    echo(f"  {part.kind:10} {part.name:18} {part.address:12} pid {part.pid}")
                handled = await place_calls(engine, spec, running, carriers, echo)
            finally:
                # Not awaited: a Ctrl-C must not cut the stop short.
                stopped = stop(spec.folder, spec.stop_timeout, running)
                await engine.dispose()
                if stopped:
                    echo(f"platform down: stopped {', '.join(stopped)}")
    echo("")
    echo("calls handled: " + ", ".join(f"{name} {count}" for name, count in handled.items()))
    return handled
