"""``callcontrol bench calls``: real calls per second, a static dialplan against callcontrol.

Both sides run on the same sandbox Asterisk in one run, stepping the offered rate
up together: (a) SIPp → Asterisk ``[static-bench]`` → Dial the SIPp carrier;
(b) SIPp → Asterisk → Stasis → callcontrol (pipeline, create + dial + bridge) → the
same carrier. Per rate it prints the success ratio of each; at the end, the
highest rate each sustained with ≤ 0.1 % failed calls, and their ratio b/a.
Then, without Asterisk, decisions per second and decision time through the
simulated Asterisk.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from callcontrol.asterisk import sandbox
from callcontrol.asterisk.render import AriUser, Network
from callcontrol.config import Config
from callcontrol.service import AsteriskLink
from callcontrol.session import Outcome
from callcontrol.simulator import Behaviour, Simulator, SimulatorConfig
from callcontrol.simulator.client import ControlClient
from callcontrol.sipp import Sipp, SippResult, sipp_binary
from dialplan.cache import CachedDirectory
from dialplan.errors import CallControlError
from dialplan.pipeline import Pipeline
from models.db import create_engine
from models.directory import SqlDirectory
from models.migrate import upgrade_async
from models.provisioning import load_text

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
    features: [voice_notifications]
    carriers: [{name: bench-carrier, endpoint: bench-carrier, host: 127.0.0.1, port: CARRIER}]
    outbound_routes: [{carrier: bench-carrier, prefix: "", priority: 0}]
clients:
  - name: bench
    brand: bench
    sip_domain: bench.example.net
    features: [voice_notifications]
    outgoing_ddi: "+34910000100"
    users: [{name: caller}]
    terminals: [{name: bench-terminal, password: bench-terminal-secret, user: caller}]
    extensions: [{number: "100", user: caller}]
    ddis: [{e164: "+34910000100", user: caller}]
"""
NUMBER = "34910555123"


@dataclass(frozen=True)
class Step:
    rate: int
    calls: int
    static: SippResult
    ours: SippResult

    @staticmethod
    def ratio(result: SippResult, calls: int) -> float:
        return result.successful / calls if calls else 0.0


def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _sustained(steps: list[Step], pick: Callable[[Step], SippResult]) -> int:
    best = 0
    for step in steps:
        result = pick(step)
        if step.calls - result.successful <= MAX_FAILED * step.calls:
            best = max(best, step.rate)
    return best


async def bench_calls(
    rates: list[int],
    seconds: float,
    hold_ms: int,
    config: Config,
    echo: Callable[[str], None],
    simulated_calls: int = 2000,
) -> None:
    if os.geteuid() != 0:
        raise CallControlError("bench calls needs root (it runs the Asterisk sandbox)")
    if sipp_binary() is None:
        raise CallControlError("bench calls needs SIPp: apt-get install sip-tester")
    with tempfile.TemporaryDirectory(prefix="callcontrol-bench-") as folder:
        work = Path(folder)
        steps = await _real_calls(work, rates, seconds, hold_ms, config, echo)
        echo(_table(steps))
        await _simulated(work, simulated_calls, config, echo)


async def _real_calls(
    work: Path,
    rates: list[int],
    seconds: float,
    hold_ms: int,
    config: Config,
    echo: Callable[[str], None],
) -> list[Step]:
    carrier_port = _free_port()
    url = f"sqlite:///{work / 'bench.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    await load_text(engine, DATASET.replace("CARRIER", str(carrier_port)))
    ari = AriUser("bench", f"bench-{os.getpid()}")
    settings = sandbox.SandboxSettings(
        name=f"bench-{os.getpid()}",
        network=Network("127.0.0.1", _free_port(), _free_port(socket.SOCK_STREAM), 20000, 39999),
        ari=ari,
        app=config.app,
        bench_password="static-bench-secret",
    )
    echo("starting the Asterisk sandbox …")
    instance, state = await sandbox.up(engine, settings, echo=echo)
    carrier = Sipp("uas_answer.xml", carrier_port, _even_port(), work)
    uas = carrier.start(calls=10**7, timeout=3600)
    link = AsteriskLink(
        f"http://127.0.0.1:{state.http_port}/",
        replace(config, ari_user=ari.user, ari_password=ari.password, dial_timeout=10),
        Pipeline(CachedDirectory(SqlDirectory(engine), ttl=config.directory_cache_ttl or 5.0)),
    )
    service = asyncio.create_task(link.run())
    steps: list[Step] = []
    try:
        async with asyncio.timeout(30):
            await link.connected.wait()
        target = f"127.0.0.1:{state.sip_port}"
        echo(f"{'rate/s':>7}{'calls':>7}{'static ok':>11}{'callcontrol ok':>16}")
        for rate in rates:
            calls = max(1, round(rate * seconds))
            static = await _offer(
                work, target, "static-bench", "static-bench-secret", rate, calls, hold_ms
            )
            instance.rx("channel request hangup all")
            ours = await _offer(
                work, target, "bench-terminal", "bench-terminal-secret", rate, calls, hold_ms
            )
            instance.rx("channel request hangup all")
            step = Step(rate, calls, static, ours)
            steps.append(step)
            echo(
                f"{rate:>7}{calls:>7}{Step.ratio(static, calls):>11.2%}"
                f"{Step.ratio(ours, calls):>16.2%}"
            )
            if Step.ratio(static, calls) < 0.5 and Step.ratio(ours, calls) < 0.5:
                break  # both far past saturation: higher rates say nothing new
    finally:
        await link.stop(5.0)
        await service
        uas.process.kill()
        carrier.finish(uas, timeout=10)
        instance.stop(settings.stop_timeout)
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


def _table(steps: list[Step]) -> str:
    static = _sustained(steps, lambda s: s.static)
    ours = _sustained(steps, lambda s: s.ours)
    ratio = ours / static if static else 0.0
    return (
        f"highest rate with ≤ {MAX_FAILED:.1%} failed calls: static {static}/s, "
        f"callcontrol {ours}/s, ratio callcontrol/static {ratio:.2f}"
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
                    await control.call("bench-terminal", NUMBER)
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
