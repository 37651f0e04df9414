"""``callcontrol bench calls``: real calls per second, a static dialplan against callcontrol.

Both sides run on the same sandbox Asterisk in one run, stepping the offered rate
up together: (a) SIPp → Asterisk ``[static-bench]`` → Dial the SIPp carrier;
(b) SIPp → Asterisk → callcontrol → the same carrier, through one of callcontrol's two
fronts: ``ari`` (Stasis; the pipeline, then create + dial + bridge over ARI) or
``fastagi`` (the pipeline answers an AGI request; the dialplan dials). Per rate it
prints the success ratio of each; at the end, the highest rate each sustained with
≤ 0.1 % failed calls, and their ratio b/a.
Then, without Asterisk, decisions per second and decision time through the
simulated Asterisk.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import func, make_url, select

from callcontrol.asterisk import sandbox
from callcontrol.asterisk.render import AriUser, Network
from callcontrol.config import Config
from callcontrol.fastagi import AgiFront
from callcontrol.guards import Guards
from callcontrol.service import AsteriskLink
from callcontrol.session import Outcome
from callcontrol.simulator import Behaviour, Simulator, SimulatorConfig
from callcontrol.simulator.client import ControlClient
from callcontrol.sipp import Sipp, SippResult, sipp_binary
from dialplan.cache import CachedDirectory
from dialplan.errors import CallControlError
from dialplan.pipeline import Pipeline
from models.billing import BillableCall
from models.cdrs import CdrStore
from models.db import create_engine, execute_autocommit
from models.directory import SqlDirectory
from models.migrate import upgrade_async
from models.provisioning import load_text
from models.slots import SlotKeeper

FRONTS = ("ari", "fastagi")
MAX_FAILED = 0.001
"""A rate is sustained when at most this share of its calls failed."""

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


@dataclass(frozen=True)
class Cpu:
    """CPU seconds one side of a step cost: Asterisk's, this process's (callcontrol) and
    the SIPp caller's."""

    asterisk: float
    callcontrol: float
    sipp: float

    def per_call_ms(self, calls: int) -> str:
        scale = 1000 / calls if calls else 0.0
        return f"{self.asterisk * scale:.1f}/{self.callcontrol * scale:.1f}/{self.sipp * scale:.1f}"


class CpuMeter:
    """Reads the CPU time of the Asterisk pid, of this process and of waited children."""

    def __init__(self, asterisk_pid: int) -> None:
        self.asterisk_pid = asterisk_pid
        self.ticks = os.sysconf("SC_CLK_TCK")

    def _asterisk(self) -> float:
        try:
            fields = Path(f"/proc/{self.asterisk_pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        # utime and stime are fields 14 and 15 of stat(5); index 11 and 12 after the name.
        return (int(fields[11]) + int(fields[12])) / self.ticks

    def sample(self) -> tuple[float, float, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return self._asterisk(), time.process_time(), children.ru_utime + children.ru_stime

    @staticmethod
    def since(before: tuple[float, float, float], after: tuple[float, float, float]) -> Cpu:
        return Cpu(*(b - a for a, b in zip(before, after, strict=True)))


@dataclass(frozen=True)
class Step:
    rate: int
    calls: int
    static: SippResult | None
    """None when the side was not offered this rate (it failed at a lower one)."""
    ours: SippResult | None
    static_cpu: Cpu | None
    ours_cpu: Cpu | None

    def row(self) -> str:
        def ok(result: SippResult | None) -> str:
            return f"{result.successful / self.calls:.2%}" if result else "-"

        def cpu(spent: Cpu | None) -> str:
            return spent.per_call_ms(self.calls) if spent else "-"

        return (
            f"{self.rate:>7}{self.calls:>7}{ok(self.static):>11}{ok(self.ours):>16}"
            f"   {cpu(self.static_cpu):>15} | {cpu(self.ours_cpu)}"
        )


def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _sustained(steps: list[Step], pick: Callable[[Step], SippResult | None]) -> int:
    best = 0
    for step in steps:
        result = pick(step)
        if result is not None and step.calls - result.successful <= MAX_FAILED * step.calls:
            best = max(best, step.rate)
    return best


async def bench_calls(
    rates: list[int],
    seconds: float,
    hold_ms: int,
    config: Config,
    echo: Callable[[str], None],
    simulated_calls: int = 2000,
    postgresql: str | None = None,
    front: str = "ari",
) -> None:
    """``postgresql``: a server URL; the calls' shared database is then a scratch database
    there (created and dropped), not the embedded SQLite file. ``front``: ``ari`` or
    ``fastagi``, how callcontrol's side reaches the pipeline."""
    if front not in FRONTS:
        raise CallControlError(f"front {front!r} is not one of {', '.join(FRONTS)}")
    if os.geteuid() != 0:
        raise CallControlError("bench calls needs root (it runs the Asterisk sandbox)")
    if sipp_binary() is None:
        raise CallControlError("bench calls needs SIPp: apt-get install sip-tester")
    with tempfile.TemporaryDirectory(prefix="callcontrol-bench-") as folder:
        work = Path(folder)
        async with _shared_database(work, postgresql) as url:
            echo(f"shared database: {make_url(url).get_backend_name()}")
            steps = await _real_calls(work, url, rates, seconds, hold_ms, config, echo, front)
        echo(_table(steps, front))
        await _simulated(work, simulated_calls, config, echo)


@asynccontextmanager
async def _shared_database(work: Path, postgresql: str | None) -> AsyncIterator[str]:
    if postgresql is None:
        yield f"sqlite:///{work / 'bench.db'}"
        return
    name = f"cc_bench_calls_{uuid.uuid4().hex[:8]}"
    await execute_autocommit(postgresql, f"CREATE DATABASE {name}")
    try:
        yield make_url(postgresql).set(database=name).render_as_string(False)
    finally:
        await execute_autocommit(postgresql, f"DROP DATABASE IF EXISTS {name}")


async def _real_calls(
    work: Path,
    url: str,
    rates: list[int],
    seconds: float,
    hold_ms: int,
    config: Config,
    echo: Callable[[str], None],
    front: str = "ari",
) -> list[Step]:
    carrier_port = _free_port()
    agi_port = _free_port(socket.SOCK_STREAM)
    await upgrade_async(url)
    engine = create_engine(url, pool_size=20)
    await load_text(engine, DATASET.replace("CARRIER", str(carrier_port)))
    ari = AriUser("bench", f"bench-{os.getpid()}")
    settings = sandbox.SandboxSettings(
        name=f"bench-{os.getpid()}",
        network=Network("127.0.0.1", _free_port(), _free_port(socket.SOCK_STREAM), 20000, 39999),
        ari=ari,
        app=config.app,
        bench_password="static-bench-secret",
        fastagi=f"127.0.0.1:{agi_port}" if front == "fastagi" else None,
    )
    echo("starting the Asterisk sandbox …")
    instance, state = await sandbox.up(engine, settings, echo=echo)
    carrier = Sipp("uas_answer.xml", carrier_port, _even_port(), work)
    uas = carrier.start(calls=10**7, timeout=3600)
    # The whole job, as in production: every call filtered by source, counted in the shared
    # slots and the day's usage, decided, priced and written as a CDR.
    cdrs = CdrStore(engine, work / "spool")
    bench_config = replace(config, ari_user=ari.user, ari_password=ari.password, dial_timeout=10)
    keeper = SlotKeeper(engine, "bench", bench_config)
    pipeline = Pipeline(
        CachedDirectory(SqlDirectory(engine), ttl=config.directory_cache_ttl or 5.0)
    )
    guards = Guards(engine, "bench", bench_config.slot_lease, keeper)
    link = AsteriskLink(
        f"http://127.0.0.1:{state.http_port}/", bench_config, pipeline, cdrs=cdrs, guards=guards
    )
    agi = AgiFront(bench_config, pipeline, cdrs=cdrs, guards=guards) if front == "fastagi" else None
    if agi is not None:
        await agi.start("127.0.0.1", agi_port)
    service = asyncio.create_task(link.run())
    steps: list[Step] = []
    try:
        async with asyncio.timeout(30):
            await link.connected.wait()
        target = f"127.0.0.1:{state.sip_port}"
        meter = CpuMeter(state.pid)
        echo(
            f"{'rate/s':>7}{'calls':>7}{'static ok':>11}{front + ' ok':>16}"
            f"   CPU ms per call, Asterisk/callcontrol/SIPp: static | {front}"
        )
        sides = {
            "static": ("static-bench", "static-bench-secret"),
            "callcontrol": ("bench-terminal", "bench-terminal-secret"),
        }
        saturated: set[str] = set()
        for rate in rates:
            if len(saturated) == len(sides):
                break  # both sides failed at a lower rate: higher rates say nothing new
            calls = max(1, round(rate * seconds))
            results: dict[str, SippResult | None] = {}
            cpu: dict[str, Cpu | None] = {}
            for side, (user, password) in sides.items():
                if side in saturated:
                    results[side] = cpu[side] = None
                    continue
                before = meter.sample()
                result = await _offer(work, target, user, password, rate, calls, hold_ms)
                cpu[side] = CpuMeter.since(before, meter.sample())
                results[side] = result
                if calls - result.successful > MAX_FAILED * calls:
                    saturated.add(side)
                if instance.running():
                    instance.rx("channel request hangup all")
                    continue
                # Overloaded through ARI, Asterisk 22 has been seen to die (a segfault in
                # libc while its app's event queue was far behind): say so and go on.
                echo(f"Asterisk died during the {side} run at {rate}/s; starting it again")
                saturated.add(side)
                instance, state = await sandbox.up(engine, settings, echo=echo)
                meter = CpuMeter(state.pid)
                async with asyncio.timeout(30):
                    await link.connected.wait()
            step = Step(
                rate,
                calls,
                results["static"],
                results["callcontrol"],
                cpu["static"],
                cpu["callcontrol"],
            )
            steps.append(step)
            echo(step.row())
    finally:
        if agi is not None:
            await agi.stop()
        await link.stop(5.0)
        await service
        uas.process.kill()
        carrier.finish(uas, timeout=10)
        instance.stop(settings.stop_timeout)
        left = (await cdrs.flush()).remaining  # those spooled under load, now written
        await cdrs.close()
        async with engine.connect() as connection:
            written = await connection.scalar(select(func.count()).select_from(BillableCall))
        echo(f"CDRs written by callcontrol: {written}" + (f", {left} spooled" if left else ""))
        await engine.dispose()
    return steps


async def _offer(
    work: Path, target: str, user: str, password: str, rate: int, calls: int, hold_ms: int
) -> SippResult:
    caller = Sipp("terminal_answered.xml", _free_port(), _even_port(), work)
    return await asyncio.to_thread(
        caller.run,
        target,
        calls=calls,
        timeout=calls / rate + hold_ms / 1000 + 30,
        service=NUMBER,
        user=user,
        password=password,
        hold_ms=hold_ms,
        rate=rate,
    )


def _even_port() -> int:
    for _ in range(50):
        port = _free_port()
        if port % 2 == 0 and port < 65000:
            return port
    raise CallControlError("no free even port for SIPp media")


def _table(steps: list[Step], front: str = "ari") -> str:
    static = _sustained(steps, lambda s: s.static)
    ours = _sustained(steps, lambda s: s.ours)
    ratio = ours / static if static else 0.0
    return (
        f"highest rate with ≤ {MAX_FAILED:.1%} failed calls: static {static}/s, "
        f"callcontrol ({front}) {ours}/s, ratio callcontrol/static {ratio:.2f}"
    )


async def _simulated(work: Path, count: int, config: Config, echo: Callable[[str], None]) -> None:
    """Decisions through the simulated Asterisk: ``count`` calls, all at once."""
    url = f"sqlite:///{work / 'simulated.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    await load_text(engine, DATASET.replace("CARRIER", "5999"))
    outcomes: list[Outcome] = []
    all_done = asyncio.Event()

    def record(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if len(outcomes) >= count:
            all_done.set()

    simulated = SimulatorConfig(
        port=0,
        app=config.app,
        user=config.ari_user,
        password=config.ari_password,
        recordings_dir=work / "recordings",
        default_behaviour=Behaviour("busy", after=0.01),
    )
    try:
        async with Simulator(simulated) as sim, ControlClient(sim.url) as control:
            link = AsteriskLink(
                sim.url,
                replace(config, ari_url=sim.url, health_port=0),
                Pipeline(CachedDirectory(SqlDirectory(engine), ttl=5.0)),
                record,
            )
            service = asyncio.create_task(link.run())
            try:
                async with asyncio.timeout(30):
                    await link.connected.wait()
                started = time.perf_counter()
                for _ in range(count):
                    await control.call("bench-terminal", NUMBER, source_ip="127.0.0.1")
                async with asyncio.timeout(120):
                    await all_done.wait()
                elapsed = time.perf_counter() - started
            finally:
                await link.stop(5.0)
                await service
    finally:
        await engine.dispose()
    decisions = sorted(o.decision_seconds for o in outcomes)
    cuts = statistics.quantiles(decisions, n=100)
    echo(
        f"simulated Asterisk: {count} calls in {elapsed:.1f} s ({count / elapsed:.0f} calls/s"
        f" end to end); decision p50 {cuts[49] * 1e3:.2f} ms, p99 {cuts[98] * 1e3:.2f} ms"
    )
