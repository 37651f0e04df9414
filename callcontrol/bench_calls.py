"""``callcontrol bench calls``: real calls per second, a static dialplan against callcontrol.

Three sides run on the same sandbox Asterisk in one run, stepping the offered rate
up together: (a) SIPp → Asterisk ``[static-bench]`` → Dial the SIPp carrier;
(b) the floor, a minimal app of the front with a fixed decision; (c) SIPp → Asterisk →
callcontrol → the same carrier, through one of callcontrol's two fronts: ``ari``
(Stasis; the pipeline, then the call handed back to the dialplan, or bridged when it
may be recorded) or ``fastagi`` (the pipeline answers an AGI request; the dialplan
dials). Per rate it prints each side's row; then probes the hooked sides between the
highest rate each sustained and the lowest it did not; at the end, the highest rate
each sustained (≤ 0.1 % failed, ≥ 95 % of the rate placed), and their ratios.
Then, without Asterisk, decisions per second and decision time through the
simulated Asterisk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from sqlalchemy import func, make_url, select
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.asterisk import sandbox
from callcontrol.asterisk.render import AmiUser, AriUser, Network
from callcontrol.bench import generate
from callcontrol.bench_floor import FloorAgi, FloorAmiEnds, FloorAri, fixed_decision
from callcontrol.bench_measure import (
    AMI_FLOOR,
    HEADER,
    SIDES,
    CpuMeter,
    LogCounter,
    RoundTrips,
    Run,
    pin_cores,
    probe,
    summary,
)
from callcontrol.config import Config
from callcontrol.fastagi import AgiFront
from callcontrol.guards import Guards
from callcontrol.service import AsteriskLink, settle_collector
from callcontrol.session import Outcome
from callcontrol.simulator.client import ControlClient, ControlError
from callcontrol.sipp import Sipp, SippResult, sipp_binary
from callcontrol.wiring import service_engine
from dialplan.errors import CallControlError
from dialplan.pipeline import Pipeline
from models.billing import BillableCall
from models.cdrs import CdrStore
from models.db import create_engine, scratch_database
from models.directory import SqlDirectory
from models.migrate import upgrade_async
from models.provisioning import load_text
from models.slot_stock import SlotStock
from models.slots import SlotKeeper

FRONTS = ("ari", "fastagi")
DATASET = """
currencies: [{code: EUR, name: Euro, symbol: "€"}]
brands:
  - name: bench
    default_language: en
    default_timezone: Europe/Madrid
    default_currency: EUR
    default_country: ES
    features: [billing, voice_notifications]
    carriers: [{name: bench-carrier, endpoint: bench-carrier, host: 127.0.0.1, port: CARRIER}]
    outbound_routes: [{carrier: bench-carrier, prefix: "", priority: 0}]
    rating_plan_groups:
      - name: bench-eur
        currency: EUR
        rates:
          - {prefix: "34", destination: Spain, price_per_minute: 0.012, increments: 60/60}
          - {prefix: "349", destination: Spain fixed, connection_fee: 0.01,
             price_per_minute: 0.01, increments: 30/6}
clients:
  - name: bench
    brand: bench
    sip_domain: bench.example.net
    features: [billing, voice_notifications]
    billing_method: postpaid
    max_calls: 100000
    max_daily_usage: 1000000
    filter_by_ip: true
    authorized_sources: [127.0.0.0/8]
    outgoing_ddi: "+34910000100"
    outgoing_ddi_rule:
      name: bench-presentation
      default_action: keep
      patterns:
        - {priority: 1, prefix: "111*", action: force, forced_ddi: "+34910000101"}
    users: [{name: caller}]
    terminals: [{name: bench-terminal, password: bench-terminal-secret, user: caller}]
    extensions: [{number: "100", user: caller}]
    ddis:
      - {e164: "+34910000100", user: caller}
      - {e164: "+34910000101", user: caller}
    rating_profiles:
      - {rating_plan_group: bench-eur, activation_time: "2025-01-01T00:00:00+00:00"}
"""
NUMBER = "34910555123"


def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def bench_calls(
    rates: list[int],
    seconds: float,
    hold_ms: int,
    config: Config,
    echo: Callable[[str], None],
    simulated_calls: int = 2000,
    postgresql: str | None = None,
    front: str = "ari",
    mariadb: str | None = None,
    split_cores: bool = False,
    *,
    clients: int = 0,
    refine: int = 3,
    repeat: int = 1,
    ami_floor: bool = False,
) -> None:
    """``clients``: as many more clients provisioned (not rendered into Asterisk), so the
    configuration and the tables have a realistic size. ``postgresql`` / ``mariadb``: a
    server URL; the calls' shared database is then a
    scratch database there (created and dropped), not the embedded SQLite file.
    ``front``: ``ari`` or ``fastagi``, how callcontrol's side (and the floor) hook in.
    ``split_cores``: Asterisk and SIPp on the first core, the app and the database on
    the second. ``refine``: probes per hooked side between the highest rate it sustained
    and the lowest it did not, each halving the gap. ``repeat``: ladders (the steps, then
    the probes) run one after another, each starting with the other order of the sides;
    the limits are their medians. ``ami_floor`` (fastagi only): a fourth side, the floor
    with its end reports as AMI events instead of a second AGI connection, at each step."""
    if front not in FRONTS:
        raise CallControlError(f"front {front!r} is not one of {', '.join(FRONTS)}")
    if ami_floor and front != "fastagi":
        raise CallControlError("--ami-floor compares FastAGI's end reports: give --front fastagi")
    if os.geteuid() != 0:
        raise CallControlError("bench calls needs root (it runs the Asterisk sandbox)")
    if sipp_binary() is None:
        raise CallControlError("bench calls needs SIPp: apt-get install sip-tester")
    if split_cores and len(os.sched_getaffinity(0)) < 2:
        raise CallControlError("--split-cores needs two cores")
    with tempfile.TemporaryDirectory(prefix="callcontrol-bench-") as folder:
        work = Path(folder)
        async with shared_database(work, postgresql, mariadb) as url:
            echo(f"shared database: {make_url(url).get_backend_name()}")
            runs = await _real_calls(
                work,
                url,
                rates,
                seconds,
                hold_ms,
                config,
                echo,
                front,
                split_cores,
                clients,
                refine,
                repeat,
                ami_floor,
            )
        for line in summary(runs, hold_ms, front):
            echo(line)
        await _simulated(work, simulated_calls, config, echo)


@asynccontextmanager
async def shared_database(
    work: Path, postgresql: str | None, mariadb: str | None = None
) -> AsyncIterator[str]:
    server = postgresql or mariadb
    if server is None:
        yield f"sqlite:///{work / 'bench.db'}"
        return
    async with scratch_database(server, "cc_bench_calls") as url:
        yield url


class _Hook(Protocol):
    """How a side hooks into Asterisk: started before its calls, stopped after them."""

    @property
    def requests(self) -> int: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class _Callcontrol:
    """callcontrol's side: a fresh link (and FastAGI front) per run, over one warm
    pipeline and one CDR store."""

    def __init__(
        self,
        url: str,
        config: Config,
        pipeline: Pipeline,
        cdrs: CdrStore,
        guards: Guards,
        agi_port: int | None,
    ) -> None:
        self.url, self.config, self.pipeline = url, config, pipeline
        self.cdrs, self.guards, self.agi_port = cdrs, guards, agi_port
        self.requests = 0
        self._link: AsteriskLink | None = None
        self._task: asyncio.Task[None] | None = None
        self._agi: AgiFront | None = None

    async def start(self) -> None:
        # The slots' keeper (renewals, vacuums) runs with this side's calls only: the
        # other sides' figures carry none of its statements.
        if self.guards.keeper is not None:
            self.guards.keeper.start()
        if self.agi_port is not None:
            self._agi = AgiFront(self.config, self.pipeline, cdrs=self.cdrs, guards=self.guards)
            await self._agi.start("127.0.0.1", self.agi_port)
            return
        self._link = AsteriskLink(
            self.url, self.config, self.pipeline, cdrs=self.cdrs, guards=self.guards
        )
        self._link.journal = []
        self._task = asyncio.create_task(self._link.run())
        async with asyncio.timeout(30):
            await self._link.adopted.wait()

    async def stop(self) -> None:
        if self._agi is not None:
            await self._agi.stop(10.0)  # the run's last calls' ends heard: their CDRs
            self.requests += self._agi.exchanges
            self._agi = None
        if self._link is not None:
            await self._link.stop(10.0)
            if self._task is not None:
                await self._task
            journal = self._link.journal or []
            self.requests += sum(1 for name, _ in journal if name not in _ADOPTION)
            self._link = None
        if self.guards.keeper is not None:
            await self.guards.keeper.stop()


PACED = 200
"""Calls per second offered to the simulated Asterisk in its paced run."""

FILLER_IDS = 1000
"""The generated clients' ids start above this (the bench's own are provisioned first)."""

_ADOPTION = frozenset({"applications.filter", "channels.list", "bridges.list"})


class _Floor:
    def __init__(self, url: str, config: Config, packed: str, agi_port: int | None) -> None:
        self.agi_port = agi_port
        self.ari = FloorAri(url, config.ari_user, config.ari_password, config.app, packed)
        self.agi = FloorAgi(packed)

    @property
    def requests(self) -> int:
        return self.agi.requests if self.agi_port is not None else self.ari.requests

    async def start(self) -> None:
        if self.agi_port is not None:
            await self.agi.start("127.0.0.1", self.agi_port)
        else:
            await self.ari.start()

    async def stop(self) -> None:
        await (self.agi.stop() if self.agi_port is not None else self.ari.stop())


class _AmiFloor:
    """The FastAGI floor, its end reports as AMI events (see :class:`FloorAmiEnds`)."""

    def __init__(self, packed: str, agi_port: int, host: str, login: AmiUser) -> None:
        self.agi_port = agi_port
        self.agi = FloorAgi(packed)
        self.ends = FloorAmiEnds(host, login)

    @property
    def requests(self) -> int:
        return self.agi.requests

    async def start(self) -> None:
        await self.agi.start("127.0.0.1", self.agi_port)
        await self.ends.start()

    async def stop(self) -> None:
        # The last calls' events may still be on their way: the ends wait for them.
        try:
            await self.ends.stop()
        finally:
            await self.agi.stop()


class _Static:
    requests = 0

    async def start(self) -> None:
        return

    async def stop(self) -> None:
        return


def callcontrol_side(engine: AsyncEngine, config: Config) -> tuple[SqlDirectory, Pipeline, Guards]:
    """callcontrol as the benches run it, server ``bench`` with every guard on: its
    directory (load its snapshot before the first call), a pipeline that keeps no trace,
    and guards whose slots are taken ahead from a stock (start and stop their keeper)."""
    stock = SlotStock(engine, "bench", config.slot_lease)
    keeper = SlotKeeper(engine, "bench", config, stock=stock)
    directory = SqlDirectory(engine)
    pipeline = Pipeline(directory, deadline=config.decision_timeout or None, trace=False)
    return directory, pipeline, Guards(engine, "bench", config.slot_lease, keeper)


def floor_decision() -> str:
    """The packed decision the floor gives every call: the bench's number at its carrier."""
    return fixed_decision("bench-carrier", "+" + NUMBER, "+34910000100", 10)


async def _real_calls(
    work: Path,
    url: str,
    rates: list[int],
    seconds: float,
    hold_ms: int,
    config: Config,
    echo: Callable[[str], None],
    front: str = "ari",
    split_cores: bool = False,
    clients: int = 0,
    refine: int = 3,
    repeat: int = 1,
    ami_floor: bool = False,
) -> list[Run]:
    carrier_port = _free_port()
    agi_port = _free_port(socket.SOCK_STREAM)
    await upgrade_async(url)
    engine = service_engine(config, url)
    await load_text(engine, DATASET.replace("CARRIER", str(carrier_port)))
    ari = AriUser("bench", f"bench-{os.getpid()}")
    settings = sandbox.SandboxSettings(
        name=f"bench-{os.getpid()}",
        network=Network("127.0.0.1", _free_port(), _free_port(socket.SOCK_STREAM), 20000, 39999),
        ari=ari,
        app=config.app,
        bench_password="static-bench-secret",
        fastagi=f"127.0.0.1:{agi_port}" if front == "fastagi" else None,
        fastagi_secret=config.fastagi_secret,
        manager=AmiUser(_free_port(socket.SOCK_STREAM), "bench", secrets.token_hex(12))
        if ami_floor
        else None,
    )
    echo("starting the Asterisk sandbox …")
    instance, state = await sandbox.up(engine, settings, echo=echo)
    carrier = Sipp("uas_answer.xml", carrier_port, _even_port(), work, messages=False)
    uas = carrier.start(calls=10**7, timeout=3600)
    # The whole job, as in production: every call filtered by source, counted in the shared
    # slots and the day's usage, decided, priced and written as a CDR.
    cdrs = CdrStore(engine, work / "spool")
    bench_config = replace(config, ari_user=ari.user, ari_password=ari.password, dial_timeout=10)
    if clients:  # after the sandbox: only the bench's own terminals are rendered into it
        started = time.perf_counter()
        await generate(engine, clients, 1, offset=FILLER_IDS, brand="filler")
        echo(f"{clients:,} more clients provisioned in {time.perf_counter() - started:.1f} s")
    directory, pipeline, guards = callcontrol_side(engine, bench_config)
    started = time.perf_counter()
    snapshot = await directory.snapshots.current()  # before the first call, as the service
    settle_collector()
    echo(
        f"configuration snapshot: {snapshot.size.text()}, loaded in"
        f" {(time.perf_counter() - started) * 1000:.0f} ms"
    )
    ari_url = f"http://127.0.0.1:{state.http_port}/"
    hooked_port = agi_port if front == "fastagi" else None
    packed = floor_decision()
    hooks: dict[str, _Hook] = {
        "static": _Static(),
        "floor": _Floor(ari_url, bench_config, packed, hooked_port),
        "callcontrol": _Callcontrol(ari_url, bench_config, pipeline, cdrs, guards, hooked_port),
    }
    if settings.manager is not None:
        assert hooked_port is not None
        hooks[AMI_FLOOR] = _AmiFloor(packed, hooked_port, "127.0.0.1", settings.manager)
    stepped = (*SIDES, AMI_FLOOR) if AMI_FLOOR in hooks else SIDES
    credentials = {
        "static": ("static-bench", "static-bench-secret"),
        "floor": ("bench-terminal", "bench-terminal-secret"),
        "callcontrol": ("bench-terminal", "bench-terminal-secret"),
        AMI_FLOOR: ("bench-terminal", "bench-terminal-secret"),
    }
    core = sorted(os.sched_getaffinity(0))[0] if split_cores else None
    trips = RoundTrips(engine)
    counter = LogCounter()
    logging.getLogger().addHandler(counter)
    runs: list[Run] = []
    target = f"127.0.0.1:{state.sip_port}"
    meter = CpuMeter(state.pid, make_url(url).get_backend_name())

    async def measure(side: str, rate: int, ladder: int) -> Run:
        """One side at one rate: its row printed, Asterisk restarted if it died."""
        nonlocal instance, state, meter
        calls = max(1, round(rate * seconds))
        hook = hooks[side]
        await hook.start()
        requests, spooled, timeouts = hook.requests, counter.spooled, counter.pool_timeouts
        before, round_trips = meter.sample(), trips.count
        started = time.monotonic()
        user, password = credentials[side]
        result = await _offer(work, target, user, password, rate, calls, hold_ms, core)
        elapsed = time.monotonic() - started
        await hook.stop()  # its calls' ends written: their cost counts
        died = not instance.running()
        run = Run(
            side,
            rate,
            calls,
            result,
            elapsed,
            CpuMeter.since(before, meter.sample()),
            trips.count - round_trips,
            hook.requests - requests,
            counter.spooled - spooled,
            counter.pool_timeouts - timeouts,
            asterisk_died=died,
            ladder=ladder,
        )
        runs.append(run)
        echo(run.row(hold_ms))
        if result.failed:  # why, in SIPp's words: its last two errors
            for line in [line for line in result.errors.splitlines() if line.strip()][-2:]:
                echo(f"       SIPp: {line.strip()[:200]}")
        if not died:
            instance.rx("channel request hangup all")
            return run
        # Overloaded through ARI, Asterisk 22 has been seen to die (a segfault in libc
        # while its app's event queue was far behind): say so, count the rate as not
        # sustained, and go on.
        echo(f"Asterisk died during the {side} run at {rate}/s; starting it again")
        instance, state = await sandbox.up(engine, settings, echo=echo)
        meter = CpuMeter(state.pid, make_url(url).get_backend_name())
        if split_cores:
            pin_cores(state.pid, engine)
        return run

    try:
        if split_cores:
            pin_cores(state.pid, engine)
        echo(HEADER)
        for ladder in range(repeat):
            if repeat > 1:
                echo(f"ladder {ladder + 1} of {repeat}")
            saturated: set[str] = set()
            for number, rate in enumerate(rates):
                if len(saturated) == len(stepped):
                    break  # every side failed at a lower rate: higher rates say nothing new
                # Alternate the order per step and per ladder: the box is noisy.
                order = stepped if (number + ladder) % 2 == 0 else stepped[::-1]
                for side in order:
                    if side in saturated:
                        continue
                    if not (await measure(side, rate, ladder)).sustained(hold_ms):
                        saturated.add(side)
            # Then the hooked sides' limits to finer than the step: each probe halves the
            # gap between the highest rate a side sustained and the lowest it did not.
            for number in range(refine):
                hooked = ["floor", "callcontrol"] if number % 2 else ["callcontrol", "floor"]
                these = [run for run in runs if run.ladder == ladder]
                pending = [(side, at) for side in hooked if (at := probe(these, side, hold_ms))]
                if not pending:
                    break
                for side, at in pending:
                    await measure(side, at, ladder)
        ami = hooks.get(AMI_FLOOR)
        if isinstance(ami, _AmiFloor):
            answered = sum(run.result.successful for run in runs if run.side == AMI_FLOOR)
            echo(f"AMI end reports heard: {ami.ends.ended} of {answered} calls")
    finally:
        logging.getLogger().removeHandler(counter)
        for hook in hooks.values():
            with contextlib.suppress(Exception):
                await hook.stop()
        uas.process.kill()
        carrier.finish(uas, timeout=10)
        instance.stop(settings.stop_timeout)
        left = (await cdrs.flush()).remaining  # those spooled under load, now written
        await cdrs.close()
        async with engine.connect() as connection:
            written = await connection.scalar(select(func.count()).select_from(BillableCall))
        echo(f"CDRs written by callcontrol: {written}" + (f", {left} spooled" if left else ""))
        await engine.dispose()
    return runs


async def _offer(
    work: Path,
    target: str,
    user: str,
    password: str,
    rate: int,
    calls: int,
    hold_ms: int,
    core: int | None = None,
) -> SippResult:
    # No message trace: reading it back, in this process, would count as the app's CPU.
    caller = Sipp("terminal_answered.xml", _free_port(), _even_port(), work, messages=False)

    def place() -> SippResult:
        if core is not None:  # this worker thread, and so SIPp, on Asterisk's core
            os.sched_setaffinity(0, {core})
        return caller.run(
            target,
            calls=calls,
            timeout=calls / rate + hold_ms / 1000 + 30,
            service=NUMBER,
            user=user,
            password=password,
            hold_ms=hold_ms,
            rate=rate,
        )

    return await asyncio.to_thread(place)


def _even_port() -> int:
    for _ in range(50):
        port = _free_port()
        if port % 2 == 0 and port < 65000:
            return port
    raise CallControlError("no free even port for SIPp media")


async def _until(holds: Callable[[], bool], within: float, what: str) -> None:
    for _ in range(int(within / 0.05)):
        if holds():
            return
        await asyncio.sleep(0.05)
    raise CallControlError(f"simulated run: {what} not within {within:g} s")


async def _simulated(work: Path, count: int, config: Config, echo: Callable[[str], None]) -> None:
    """Decisions through the simulated Asterisk, which runs in a process of its own (as an
    Asterisk does): ``count`` calls paced at :data:`PACED` per second, each answered and
    held until all are live at once (the decision's p50 and p99 while they pile up); then
    ``count`` calls offered at once and refused busy (the highest end-to-end rate)."""
    url = f"sqlite:///{work / 'simulated.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    await load_text(engine, DATASET.replace("CARRIER", "5999"))
    outcomes: list[Outcome] = []
    done = asyncio.Event()

    def record(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if len(outcomes) >= count:
            done.set()

    try:
        async with simulated_asterisk(work, config) as sim_url, ControlClient(sim_url) as control:
            directory = SqlDirectory(engine)
            await directory.snapshots.current()  # loaded at start, as the service does
            settle_collector()
            link = AsteriskLink(
                sim_url,
                replace(config, ari_url=sim_url, health_port=0),
                Pipeline(directory, trace=False),
                record,
            )
            service = asyncio.create_task(link.run())
            try:
                async with asyncio.timeout(30):
                    await link.connected.wait()
                # Paced: every call answered (the carrier) and held.
                await control.endpoint("_default", "answer", after=0.01)
                started = time.perf_counter()
                for n in range(count):
                    await control.call("bench-terminal", NUMBER, source_ip="127.0.0.1")
                    await asyncio.sleep(max(0.0, started + (n + 1) / PACED - time.perf_counter()))
                await _until(lambda: link.calls + len(outcomes) >= count, 60, "every call live")
                live = link.calls
                paced = sorted(
                    [s.decision_seconds for s in link.sessions]
                    + [o.decision_seconds for o in outcomes]
                )
                for channel in await control.channels():
                    with contextlib.suppress(ControlError):  # gone with its other leg
                        await control.hang_up(str(channel["id"]))
                await _until(lambda: not link.calls, 60, "every call ended")
                await asyncio.sleep(0.2)  # the last outcomes reported
                # All at once: the carrier busy, every call refused.
                outcomes.clear()
                done.clear()
                await control.endpoint("_default", "busy", after=0.01)
                started = time.perf_counter()
                for _ in range(count):
                    await control.call("bench-terminal", NUMBER, source_ip="127.0.0.1")
                async with asyncio.timeout(120):
                    await done.wait()
                elapsed = time.perf_counter() - started
            finally:
                await link.stop(5.0)
                await service
    finally:
        await engine.dispose()
    cuts = statistics.quantiles(paced, n=100)
    echo(
        f"simulated Asterisk: {count} calls paced at {PACED}/s, {live} live at once at the"
        f" end; decision p50 {cuts[49] * 1e3:.2f} ms, p99 {cuts[98] * 1e3:.2f} ms"
    )
    decisions = sorted(o.decision_seconds for o in outcomes)
    cuts = statistics.quantiles(decisions, n=100)
    echo(
        f"simulated Asterisk: {count} calls in {elapsed:.1f} s ({count / elapsed:.0f} calls/s"
        f" end to end); decision p50 {cuts[49] * 1e3:.2f} ms, p99 {cuts[98] * 1e3:.2f} ms"
    )


@asynccontextmanager
async def simulated_asterisk(work: Path, config: Config) -> AsyncIterator[str]:
    """The simulated Asterisk in a process of its own (as an Asterisk is), serving
    ``config``'s app and ARI user; its URL while the block runs."""
    port = _free_port(socket.SOCK_STREAM)
    simulator = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callcontrol",
        "simulate",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--app",
        config.app,
        "--user",
        config.ari_user,
        "--password",
        config.ari_password,
        "--recordings-dir",
        str(work / "recordings"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert simulator.stdout is not None
        async with asyncio.timeout(30):
            while b"simulated Asterisk on" not in (line := await simulator.stdout.readline()):
                if not line:  # it exited
                    raise CallControlError("the simulated Asterisk did not start")
        yield f"http://127.0.0.1:{port}/"
    finally:
        if simulator.returncode is None:
            simulator.terminate()
        await simulator.wait()
