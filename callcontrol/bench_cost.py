"""``callcontrol bench cost``: the instructions each side runs per call, counted.

``bench calls`` reports seconds of CPU, and on a shared machine those move by ±15 % between
identical rounds: more than most changes to callcontrol's own work. Valgrind's callgrind
counts the instructions a process executes instead, and the same code gives the same count
to within a fraction of a percent, whatever else the machine is doing.

Each side (the floor, a minimal app of the front with a fixed decision, and callcontrol
with every guard on) runs in its own process under callgrind, with counting switched off.
This process provisions the shared database and plays Asterisk: on the ``fastagi`` front it
speaks Asterisk's side of the AGI protocol itself (a ``decide`` request answered ``200
result=1``, then the ``end`` report); on the ``ari`` front it runs the simulated Asterisk
in a process of its own, whose calls the side hands back to the dialplan (two requests),
and whose ``h`` extension reports their ends. It warms the side up, and counts only while
it offers the measured calls and the side writes their ends. The sides alternate over the
rounds; the figure of each is its median, per call.

Only user-space instructions are counted: the kernel's work for the sockets is not (both
sides open the same connections), nor is the database server's (``bench calls`` counts its
CPU). The count per call falls as the rate rises, because the writer's batches and the timed work
(slot renewals, the stock's refills) are shared by more calls: compare figures taken at the
same rate. Under callgrind a side runs about fifty times slower, so the default, 20 calls a
second, is near the highest rate it keeps up with on a small machine.

With ``--opcodes`` a side counts its Python opcodes itself instead (no Valgrind), each
charged to a function of callcontrol (:mod:`callcontrol.bench_opcodes`), and the bench
prints the functions the most go to, per call and side: where the gap between the sides is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from sqlalchemy import make_url

from callcontrol.bench import generate
from callcontrol.bench_calls import (
    DATASET,
    FILLER_IDS,
    FRONTS,
    NUMBER,
    callcontrol_side,
    floor_decision,
    shared_database,
    simulated_asterisk,
)
from callcontrol.bench_floor import FloorAgi, FloorAri
from callcontrol.bench_opcodes import OUTSIDE, OpcodeCounter, read
from callcontrol.config import Config
from callcontrol.handback import unpack
from callcontrol.simulator.client import ControlClient
from dialplan.errors import CallControlError

SIDES = ("floor", "callcontrol")
HOLD = 5.0
"""Seconds a call of the ``ari`` front lasts, from its StasisStart to the caller's hang-up:
time enough for a side under callgrind to decide and hand it back first."""
LINGER = 1.5
"""Seconds counted after the last call: the writer's batch interval (0.5 s) and a margin,
so every side's ends are written while it is counted."""

CALLGRIND_START = 120.0
"""Seconds a side may take to start under callgrind (Python and its imports run about
ten times slower there, counted or not)."""


OPCODES_FILE = "CALLCONTROL_OPCODES_FILE"
"""Set for a side: it counts its opcodes (``--opcodes``) and dumps them to this file."""


@dataclass(frozen=True, slots=True)
class Round:
    side: str
    instructions: int
    """Instructions (callgrind) or Python opcodes (``--opcodes``) counted in the round."""
    calls: int
    functions: Counter[str] = field(default_factory=Counter)
    """With ``--opcodes``: the opcodes charged to each function of callcontrol."""

    @property
    def per_call(self) -> float:
        return self.instructions / self.calls


def tools() -> tuple[str, str]:
    """The paths of ``valgrind`` and ``callgrind_control``; one line to install them."""
    valgrind, control = shutil.which("valgrind"), shutil.which("callgrind_control")
    if valgrind is None or control is None:
        raise CallControlError("bench cost needs Valgrind: apt-get install valgrind")
    return valgrind, control


class _Counting(Protocol):
    """How a side's work is counted: what runs it, how counting is switched, what it read."""

    unit: str

    def prefix(self, out: Path) -> list[str]: ...

    def environment(self, out: Path) -> dict[str, str]: ...

    async def start(self, pid: int) -> None: ...

    async def stop(self, pid: int) -> None: ...

    def counted(self, out: Path) -> tuple[int, Counter[str]]: ...


class Callgrind:
    """Instructions, counted by Valgrind's callgrind around the side's process."""

    unit = "instructions"

    def __init__(self, valgrind: str, control: str) -> None:
        self.valgrind, self.control = valgrind, control

    def prefix(self, out: Path) -> list[str]:
        return [
            self.valgrind,
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            f"--log-file={out.parent / f'valgrind-{out.name}'}",
        ]

    def environment(self, out: Path) -> dict[str, str]:
        return {}

    async def start(self, pid: int) -> None:
        await _callgrind(self.control, "--instr=on", pid)

    async def stop(self, pid: int) -> None:
        await _callgrind(self.control, "--instr=off", pid)
        await _callgrind(self.control, "--dump", pid)

    def counted(self, out: Path) -> tuple[int, Counter[str]]:
        return _counted(out), Counter()


class Opcodes:
    """Python opcodes, counted by the side itself (:mod:`callcontrol.bench_opcodes`) and
    charged to callcontrol's functions; switched with SIGUSR1 and SIGUSR2."""

    unit = "opcodes"

    def prefix(self, out: Path) -> list[str]:
        return []

    def environment(self, out: Path) -> dict[str, str]:
        return {OPCODES_FILE: str(self._dump(out))}

    async def start(self, pid: int) -> None:
        os.kill(pid, signal.SIGUSR1)

    async def stop(self, pid: int) -> None:
        os.kill(pid, signal.SIGUSR2)

    def counted(self, out: Path) -> tuple[int, Counter[str]]:
        dump = self._dump(out)
        if not dump.exists():
            raise CallControlError(f"bench cost: the side wrote no opcode counts ({dump.name})")
        functions = read(dump)
        return sum(functions.values()), functions

    @staticmethod
    def _dump(out: Path) -> Path:
        """Where the side of round ``out`` writes its counts (``--keep`` copies it too)."""
        return out.with_name(f"{out.name}.opcodes.json")


async def bench_cost(
    calls: int,
    rate: float,
    rounds: int,
    config: Config,
    echo: Callable[[str], None],
    *,
    clients: int = 10_000,
    postgresql: str | None = None,
    mariadb: str | None = None,
    warm: int = 60,
    keep: Path | None = None,
    front: str = "fastagi",
    opcodes: int = 0,
) -> list[Round]:
    """Count each side's instructions per call of ``front`` over ``rounds`` alternating
    rounds of ``calls`` calls offered at ``rate`` per second (after ``warm`` uncounted
    ones); print a row per round and the medians with their ratio. ``keep``: a folder to
    copy callgrind's dumps into (``SIDE-ROUND.N``, for ``callgrind_annotate``).
    ``opcodes``: count Python opcodes instead (no Valgrind), and print the functions of
    callcontrol that this many of the most are charged to, per call and side."""
    if front not in FRONTS:
        raise CallControlError(f"bench cost: front {front!r}: give ari or fastagi")
    counting: _Counting = Opcodes() if opcodes else Callgrind(*tools())
    with tempfile.TemporaryDirectory(prefix="callcontrol-cost-") as folder:
        work = Path(folder)
        async with contextlib.AsyncExitStack() as stack:
            url = await stack.enter_async_context(shared_database(work, postgresql, mariadb))
            asterisk: _Asterisk = _AgiAsterisk()
            if front == "ari":
                simulated = await stack.enter_async_context(simulated_asterisk(work, config))
                control_api = await stack.enter_async_context(ControlClient(simulated))
                await control_api.endpoint("_default", "answer", after=0.01)
                asterisk = _AriAsterisk(simulated, control_api)
            echo(f"shared database: {make_url(url).get_backend_name()}; front: {front}")
            await _provision(url, config, clients, echo)
            how = "sys.settrace" if opcodes else "callgrind"
            echo(
                f"{calls} calls at {rate:g}/s per round, {warm} uncounted first;"
                f" {counting.unit} per call, this side's process only ({how})"
            )
            echo(f"{'round':<7}{'side':<13}{'per call':>12}")
            results: list[Round] = []
            for number in range(rounds):
                order = SIDES if number % 2 == 0 else SIDES[::-1]
                for side in order:
                    counted = await _round(
                        side,
                        url,
                        work / f"{side}-{number}",
                        (calls, rate, warm),
                        counting,
                        asterisk,
                    )
                    results.append(counted)
                    if keep is not None:
                        _keep(work, f"{side}-{number}", keep)
                    echo(f"{number + 1:<7}{side:<13}{_millions(counted.per_call):>12}")
    floor, ours = (statistics.median(r.per_call for r in results if r.side == s) for s in SIDES)
    echo(
        f"median: floor {_millions(floor)}, callcontrol {_millions(ours)}, ratio {ours / floor:.2f}"
    )
    if opcodes:
        _by_function(results, opcodes, echo)
    return results


def _by_function(results: list[Round], most: int, echo: Callable[[str], None]) -> None:
    """The functions the most opcodes per call are charged to (each side's rounds
    together), the work outside callcontrol's code last."""
    per_call: dict[str, Counter[str]] = {}
    for side in SIDES:
        rounds = [r for r in results if r.side == side]
        total: Counter[str] = Counter()
        for counted in rounds:
            total.update(counted.functions)
        calls = sum(r.calls for r in rounds)
        per_call[side] = Counter({name: round(n / calls) for name, n in total.items()})
    floor, ours = per_call["floor"], per_call["callcontrol"]
    named = (floor + ours).most_common()
    shown = [*[name for name, _ in named if name != OUTSIDE][:most], OUTSIDE]
    echo(f"opcodes per call by the function of callcontrol they are charged to ({most} most):")
    echo(f"{'floor':>9}{'callcontrol':>13}  function")
    for name in shown:
        echo(f"{floor[name]:>9,}{ours[name]:>13,}  {name}")


def _keep(work: Path, name: str, keep: Path) -> None:
    keep.mkdir(parents=True, exist_ok=True)
    for dump in work.glob(f"{name}*"):
        shutil.copy(dump, keep / dump.name)


def _millions(count: float) -> str:
    return f"{count / 1e6:.3f} M" if count >= 1e6 else f"{count:,.0f}"


async def _provision(url: str, config: Config, clients: int, echo: Callable[[str], None]) -> None:
    from callcontrol.wiring import service_engine
    from models.migrate import upgrade_async
    from models.provisioning import load_text

    await upgrade_async(url)
    engine = service_engine(config, url)
    try:
        await load_text(engine, DATASET.replace("CARRIER", "5090"))
        if clients:
            started = time.perf_counter()
            await generate(engine, clients, 1, offset=FILLER_IDS, brand="filler")
            echo(f"{clients:,} more clients provisioned in {time.perf_counter() - started:.1f} s")
    finally:
        await engine.dispose()


class _AgiAsterisk:
    """Asterisk's side of FastAGI, played by this process: the side listens, this connects."""

    front = "fastagi"

    def __init__(self) -> None:
        self.port = 0

    def side_args(self) -> list[str]:
        return [self.front]

    def started(self, line: str) -> bool:
        """Whether the side's first line says it is up (``port N``)."""
        if not line.startswith("port "):
            return False
        self.port = int(line.split()[1])
        return True

    async def offer(self, prefix: str, calls: int, rate: float) -> None:
        await _offer(self.port, prefix, calls, rate)


class _AriAsterisk:
    """The simulated Asterisk (its own process): the side connects to its ARI, this places
    its calls through its control API."""

    front = "ari"

    def __init__(self, url: str, control: ControlClient) -> None:
        self.url, self.control = url, control

    def side_args(self) -> list[str]:
        return [self.front, self.url]

    def started(self, line: str) -> bool:
        return line.strip() == "ready"

    async def offer(self, prefix: str, calls: int, rate: float) -> None:
        """``calls`` calls, one every 1/``rate`` s, each hung up by its caller :data:`HOLD`
        s after it came in; back once every one of them has ended."""
        started = time.monotonic()
        for n in range(calls):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.control.call(
                "bench-terminal",
                NUMBER,
                source_ip="127.0.0.1",
                hangup_after=HOLD,
                channel_id=f"{prefix}.{n}",
            )
        for _ in range(int((HOLD + 60) / 0.1)):
            if not await self.control.channels():
                return
            await asyncio.sleep(0.1)
        raise CallControlError(
            f"bench cost: calls still up a minute after their hang-up at {rate:g}/s:"
            " under callgrind a side runs about fifty times slower; lower --rate"
        )


_Asterisk = _AgiAsterisk | _AriAsterisk


async def _round(
    side: str,
    url: str,
    out: Path,
    load: tuple[int, float, int],
    counting: _Counting,
    asterisk: _Asterisk,
) -> Round:
    """One side's process, counted by ``counting``: warmed up uncounted, then the calls
    counted. ``load``: (calls counted, rate, calls uncounted first)."""
    calls, rate, warm = load
    log_file = out.parent / f"log-{out.name}"
    with log_file.open("wb") as side_log:  # the side's warnings, for a failure to show
        process = await asyncio.create_subprocess_exec(
            *counting.prefix(out),
            sys.executable,
            "-m",
            "callcontrol.bench_cost",
            side,
            url,
            *asterisk.side_args(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=side_log,
            env=os.environ | counting.environment(out),
        )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        async with asyncio.timeout(CALLGRIND_START):
            line = (await process.stdout.readline()).decode()
        if not asterisk.started(line):
            raise CallControlError(f"bench cost: the {side} side did not start: {line.strip()!r}")
        await asterisk.offer(f"{out.name}-warm", warm, rate)
        await counting.start(process.pid)
        await asterisk.offer(f"{out.name}-counted", calls, rate)
        await asyncio.sleep(LINGER)
        await counting.stop(process.pid)
        process.stdin.close()
        async with asyncio.timeout(CALLGRIND_START):
            last = (await process.stdout.readline()).decode()
            await process.wait()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
            await process.wait()
    ended = int(last.split()[1]) if last.startswith("ended ") else 0
    if ended != warm + calls:
        logged = log_file.read_text(errors="replace").strip().splitlines()
        raise CallControlError(
            f"bench cost: the {side} side saw {ended} of its {warm + calls} calls end answered"
            + (f"; its last warning: {logged[-1][:200]}" if logged else "")
        )
    counted, functions = counting.counted(out)
    return Round(side, counted, calls, functions)


async def _callgrind(control: str, command: str, pid: int) -> None:
    done = await asyncio.create_subprocess_exec(
        control,
        command,
        str(pid),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    if await done.wait() != 0:
        raise CallControlError(f"callgrind_control {command} {pid} failed")


def _counted(out: Path) -> int:
    """The instructions in every dump of one run (``--dump`` writes ``out.1``; the exit,
    with counting off, ``out`` itself)."""
    total = 0
    for dump in out.parent.glob(f"{out.name}*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):  # "summary:" is 0 in a dump made counting off
                total += int(line.split()[1])
    if not total:
        raise CallControlError(f"bench cost: callgrind counted nothing in {out.name}")
    return total


async def _offer(port: int, prefix: str, calls: int, rate: float) -> None:
    """``calls`` calls, one every 1/``rate`` s: each decided, dialled and ended at once."""
    started = time.monotonic()
    tasks = []
    for n in range(calls):
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_call(port, f"{prefix}.{n}")))
    try:
        for task in tasks:
            await task
    except (ConnectionError, TimeoutError) as exc:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise CallControlError(
            f"bench cost: a call to the side failed at {rate:g}/s ({type(exc).__name__}):"
            " under callgrind it runs about fifty times slower; lower --rate"
        ) from exc


async def _call(port: int, call_id: str) -> None:
    decide = {
        "agi_channel": "PJSIP/bench-terminal-00000001",
        "agi_extension": NUMBER,
        "agi_callerid": "bench-terminal",
        "agi_arg_1": "terminal",
        "agi_arg_2": "127.0.0.1:5060",
    }
    asked = time.monotonic()
    commands = await _request(port, "decide", call_id, decide)
    told = [unpack(c.partition(" CC ")[2].strip('"')) for c in commands if " CC " in c]
    if len(told) != 1 or told[0]["CC_ACTION"] != "dial":
        raise CallControlError(f"bench cost: call {call_id} was not dialled: {commands}")
    # Answered and talked for as long as it has existed: a longer talk is clamped, logged.
    talked = int((time.monotonic() - asked) * 1000)
    report = ["dial", "ANSWER", str(talked), "16", ""]
    end = {"agi_extension": "h"} | {f"agi_arg_{n}": v for n, v in enumerate(report, 1)}
    await _request(port, "end", call_id, end)


async def _request(port: int, script: str, call_id: str, values: dict[str, str]) -> list[str]:
    """One AGI request as Asterisk makes it: its commands, each answered ``200 result=1``."""
    environment = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://127.0.0.1:{port}/{script}",
        "agi_uniqueid": call_id,
        "agi_language": "en",
    } | values
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    commands = []
    try:
        writer.write("".join(f"{k}: {v}\n" for k, v in environment.items()).encode() + b"\n")
        async with asyncio.timeout(30):
            while line := await reader.readline():
                commands.append(line.decode().rstrip("\n"))
                writer.write(b"200 result=1\n")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return commands


async def _serve(side: str, url: str, front: str, ari_url: str = "") -> None:
    """One side until stdin closes: on ``fastagi`` listening on a free loopback port
    (printed as ``port N``), on ``ari`` connected to the Asterisk at ``ari_url`` (``ready``
    printed once it is); then ``ended N``: the calls whose end it saw (the floor's every
    end report; callcontrol's calls that ended answered, each other one logged)."""
    from callcontrol.fastagi import AgiFront
    from callcontrol.service import AsteriskLink, settle_collector
    from callcontrol.session import Outcome
    from callcontrol.wiring import service_engine
    from models.cdrs import CdrStore

    logging.basicConfig(level=logging.WARNING)
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()

    def stdin_closed() -> None:
        loop.remove_reader(sys.stdin.fileno())
        closed.set()

    loop.add_reader(sys.stdin.fileno(), stdin_closed)
    config = replace(Config(), dial_timeout=10, ari_url=ari_url or Config().ari_url)
    if side == "floor":
        if front == "ari":
            ari = FloorAri(
                ari_url, config.ari_user, config.ari_password, config.app, floor_decision()
            )
            await ari.start()
            print("ready", flush=True)
            await closed.wait()
            await ari.stop()
            print(f"ended {ari.ended}", flush=True)
            return
        agi = FloorAgi(floor_decision())
        print(f"port {await agi.start('127.0.0.1', 0)}", flush=True)
        await closed.wait()
        await agi.stop()
        print(f"ended {agi.ended}", flush=True)
        return
    answered = 0

    def count(outcome: Outcome) -> None:
        nonlocal answered
        answered += outcome.answered
        if not outcome.answered:
            logging.warning("call %s not answered: %s", outcome.call_id, outcome.result)

    engine = service_engine(config, url)
    directory, pipeline, guards = callcontrol_side(engine, config)
    keeper = guards.keeper
    assert keeper is not None
    with tempfile.TemporaryDirectory(prefix="callcontrol-cost-spool-") as spool:
        async with CdrStore(engine, Path(spool)) as cdrs:
            await directory.snapshots.current()
            settle_collector()
            keeper.start()
            if front == "ari":
                link = AsteriskLink(ari_url, config, pipeline, count, cdrs=cdrs, guards=guards)
                task = asyncio.create_task(link.run())
                await link.adopted.wait()
                print("ready", flush=True)
                await closed.wait()
                await link.stop(10.0)
                await task
            else:
                agi_front = AgiFront(config, pipeline, on_outcome=count, cdrs=cdrs, guards=guards)
                print(f"port {await agi_front.start('127.0.0.1', 0)}", flush=True)
                await closed.wait()
                await agi_front.stop(10.0)
            await keeper.stop()
    await engine.dispose()
    print(f"ended {answered}", flush=True)


def _count_opcodes(dump: Path) -> None:
    """Count this side's opcodes between SIGUSR1 and SIGUSR2, which writes them to
    ``dump`` (see :mod:`callcontrol.bench_opcodes`)."""
    counter = OpcodeCounter()

    def stop(signum: int, frame: object) -> None:
        counter.off()
        counter.dump(dump)

    signal.signal(signal.SIGUSR1, lambda signum, frame: counter.on())
    signal.signal(signal.SIGUSR2, stop)
    counter.install()


if __name__ == "__main__":
    if os.environ.get(OPCODES_FILE):
        _count_opcodes(Path(os.environ[OPCODES_FILE]))
    asyncio.run(_serve(*sys.argv[1:5]))
