"""What ``callcontrol bench calls`` measures of each side at each rate: CPU per call (of
Asterisk, the app, the database server's processes and SIPp), SQL round trips, the
requests of the hook, CDRs spooled, pool timeouts; when a rate counts as sustained; and
the cores each part runs on with ``--split-cores``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.sipp import SippResult
from models.db import on_driver_statement

MAX_FAILED = 0.001
"""A rate is sustained when at most this share of its calls failed."""

DATABASE_PROCESSES: dict[str, tuple[str, ...]] = {
    "postgresql": ("postgres",),
    "mysql": ("mariadbd", "mysqld"),
    "mariadb": ("mariadbd", "mysqld"),
}
"""The names of a database server's processes on this machine, by backend or dialect name."""


def database_pids(backend: str) -> list[int]:
    """The processes of the ``backend`` database server running here (none for SQLite)."""
    names = DATABASE_PROCESSES.get(backend, ())
    found = []
    for entry in os.listdir("/proc") if names else ():
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip().startswith(names):
                    found.append(int(entry))
    return found


SIDES = ("static", "floor", "callcontrol")
AMI_FLOOR = "floor-ami"
"""The FastAGI floor with its end reports over AMI (``--ami-floor``): run at each step,
never probed; the summary compares what Asterisk spends per call with the floor's."""
MIN_ACHIEVED = 0.95
"""A rate is sustained only when the calls were placed at ≥ 95 % of it (SIPp falls behind
its target under overload instead of failing calls)."""


@dataclass(frozen=True)
class Cpu:
    """CPU seconds one side of a step cost: Asterisk's, the app's (this process, where
    callcontrol or the floor runs), the database server's processes, and the SIPp caller's."""

    asterisk: float
    app: float
    database: float
    sipp: float

    def per_call(self, calls: int) -> tuple[float, float, float, float]:
        scale = 1000 / calls if calls else 0.0
        return (
            self.asterisk * scale,
            self.app * scale,
            self.database * scale,
            self.sipp * scale,
        )


class CpuMeter:
    """Reads the CPU time of the Asterisk pid, of this process, of the database server's
    processes (PostgreSQL or MariaDB on this machine) and of waited children (SIPp)."""

    def __init__(self, asterisk_pid: int, database: str) -> None:
        self.asterisk_pid = asterisk_pid
        self.database = database
        self.ticks = os.sysconf("SC_CLK_TCK")

    def _stat(self, pid: str | int, children: bool = False) -> tuple[str, float]:
        try:
            name, rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
        except OSError:
            return "", 0.0
        fields = rest.split()
        # utime and stime are fields 14 and 15 of stat(5), index 11 and 12 after the name;
        # cutime and cstime (children that ended and were waited for) 16 and 17.
        spent = int(fields[11]) + int(fields[12])
        if children:
            spent += int(fields[13]) + int(fields[14])
        return name.split("(", 1)[1], spent / self.ticks

    def _database(self) -> float:
        # A server's ended backends count in their parent's children's times.
        return sum(self._stat(pid, children=True)[1] for pid in database_pids(self.database))

    def sample(self) -> tuple[float, float, float, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (
            self._stat(self.asterisk_pid)[1],
            time.process_time(),
            self._database(),
            children.ru_utime + children.ru_stime,
        )

    @staticmethod
    def since(
        before: tuple[float, float, float, float], after: tuple[float, float, float, float]
    ) -> Cpu:
        return Cpu(*(b - a for a, b in zip(before, after, strict=True)))


class RoundTrips:
    """Requests the engine sends its database server: statements, BEGINs, COMMITs and
    ROLLBACKs (each a request and its answer)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._statement)
        for name in ("begin", "commit", "rollback"):
            event.listen(engine.sync_engine, name, self._transaction)
        on_driver_statement(engine, self._statement)  # those sent past SQLAlchemy

    def _statement(self, *_args: object) -> None:
        self.count += 1

    def _transaction(self, connection: Connection) -> None:
        # Outside a transaction (AUTOCOMMIT) nothing is sent for these.
        if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            self.count += 1


@dataclass(frozen=True)
class Run:
    """One side at one rate."""

    side: str
    rate: int
    calls: int
    result: SippResult
    seconds: float
    """Wall time of the SIPp run."""
    cpu: Cpu
    round_trips: int
    requests: int
    """ARI requests (ari front) or AGI exchanges (fastagi) the app made."""
    spooled: int
    pool_timeouts: int
    asterisk_died: bool = False
    """Asterisk died during the run (it is started again): the rate does not count."""
    ladder: int = 0
    """Which of the bench's ladders (``--repeat``) the run belongs to, from 0."""

    @property
    def failed_share(self) -> float:
        return (self.calls - self.result.successful) / self.calls

    def achieved(self, hold_ms: int) -> float:
        """Calls per second placed: the calls over the time to place them (the run's
        wall time less one call's length and a second of start-up and tail)."""
        placing = max(self.calls / self.rate, self.seconds - hold_ms / 1000 - 1.0)
        return self.result.successful / placing

    def sustained(self, hold_ms: int) -> bool:
        return (
            not self.asterisk_died
            and self.failed_share <= MAX_FAILED
            and self.achieved(hold_ms) >= MIN_ACHIEVED * self.rate
        )

    def row(self, hold_ms: int) -> str:
        asterisk, app, database, sipp = self.cpu.per_call(self.calls)
        hooked = self.side != "static"
        return (
            f"{self.rate:>6} {self.side:<12}{self.result.successful / self.calls:>8.2%}"
            f"{self.achieved(hold_ms):>9.1f}"
            f"   {asterisk:>5.1f} {app:>5.1f} {database:>5.1f} {sipp:>5.1f}"
            f"{self.round_trips / self.calls if hooked else 0:>8.1f}"
            f"{self.requests / self.calls if hooked else 0:>8.1f}"
            f"{self.spooled:>8}{self.pool_timeouts:>8}"
        )


HEADER = (
    f"{'rate/s':>6} {'side':<12}{'ok':>8}{'placed/s':>9}"
    f"   {'CPU ms per call: Asterisk app db SIPp':<23}"
    f"{'SQL rt':>8}{'req':>8}{'spooled':>8}{'pool to':>8}"
)


class LogCounter(logging.Handler):
    """Counts what the service logs about spooled CDRs and exhausted pools."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.spooled = 0
        self.pool_timeouts = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "spooled, database unavailable" in text:
            self.spooled += 1
        if "QueuePool limit" in text or ("pool" in text.lower() and "timeout" in text.lower()):
            self.pool_timeouts += 1


def pin_cores(asterisk_pid: int, engine: AsyncEngine) -> None:
    """Asterisk (every thread) on core 0, this process and the database server on core 1;
    SIPp is started on core 0 (see ``bench_calls._offer``)."""
    first, second = sorted(os.sched_getaffinity(0))[:2]
    pin(asterisk_pid, {first})
    pin(os.getpid(), {second})
    for pid in database_pids(engine.dialect.name):
        pin(pid, {second})


def pin(pid: int, cores: set[int]) -> None:
    """Every thread of ``pid`` on ``cores`` (threads made later inherit it)."""
    with contextlib.suppress(OSError):
        for thread in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(thread), cores)


def best_rate(runs: list[Run], side: str, hold_ms: int) -> int:
    """The highest rate ``side`` sustained (0 for none)."""
    return max((run.rate for run in runs if run.side == side and run.sustained(hold_ms)), default=0)


def probe(runs: list[Run], side: str, hold_ms: int, resolution: float = 0.03) -> int | None:
    """The rate to try next for ``side``: halfway between the highest rate it sustained and
    the lowest higher rate it did not, while they are more than ``resolution`` (a share of
    the higher) apart; None when there is nothing between them to learn.

    Stepping the rate measures a limit only to the step: with steps of 50/s near 300/s, a
    side that places 290 calls/s reads as 250. Halving the gap three times reads it to
    about 6/s, 3 %: finer than the gap between two sides compared at 0.9 or 0.95 of the
    other, where a twentieth (two halvings) moved a ratio across its mark."""
    low = best_rate(runs, side, hold_ms)
    failed = [run.rate for run in runs if run.side == side and run.rate > low]
    if not low or not failed:
        return None
    high = min(failed)
    if high - low <= max(1.0, resolution * high):
        return None
    return (low + high) // 2


def summary(runs: list[Run], hold_ms: int, front: str) -> list[str]:
    """The highest rate each side sustained, the ratios, and the cost per call of the
    hooked sides at the highest rate both sustained. With several ladders, each one's
    limits first, then their medians: one ladder's limit moves with the box's noise."""
    ladders = sorted({run.ladder for run in runs})
    limits = [
        {side: best_rate([r for r in runs if r.ladder == n], side, hold_ms) for side in SIDES}
        for n in ladders
    ]
    lines = []
    if len(ladders) > 1:
        for number, limit in zip(ladders, limits, strict=True):
            low, high = limit["floor"], limit["callcontrol"]
            lines.append(
                f"ladder {number + 1}: static {limit['static']}/s, floor {low}/s,"
                f" callcontrol {high}/s (callcontrol/floor {high / low if low else 0:.2f})"
            )
    best = {side: float(statistics.median(limit[side] for limit in limits)) for side in SIDES}
    floor, ours, static = best["floor"], best["callcontrol"], best["static"]
    which = f"the median of {len(ladders)} ladders, " if len(ladders) > 1 else ""
    lines += [
        f"sustained ({which}≤ {MAX_FAILED:.1%} failed, ≥ {MIN_ACHIEVED:.0%} of the rate"
        f" placed): static {static:g}/s, floor ({front}) {floor:g}/s, callcontrol ({front})"
        f" {ours:g}/s",
        f"ratios: callcontrol/floor {ours / floor if floor else 0:.2f}, "
        f"callcontrol/static {ours / static if static else 0:.2f}, "
        f"floor/static {floor / static if static else 0:.2f}",
    ]
    # With probes between the steps, the two hooked sides may not have run the same rates:
    # the cost is compared at the highest rate both ran and sustained.
    held = {
        side: {run.rate: run for run in runs if run.side == side and run.sustained(hold_ms)}
        for side in ("floor", "callcontrol")
    }
    common = max(set(held["floor"]) & set(held["callcontrol"]), default=0)
    if common:
        ours_then, floor_then = held["callcontrol"][common], held["floor"][common]
        _, app, database, _ = ours_then.cpu.per_call(ours_then.calls)
        _, floor_app, floor_database, _ = floor_then.cpu.per_call(floor_then.calls)
        mine, base = app + database, floor_app + floor_database
        lines.append(
            f"at {common}/s, CPU ms per call of the app and its database: callcontrol "
            f"{mine:.2f}, floor {base:.2f} ({mine / base if base else 0:.1f}×)"
        )
    return lines + _end_reports(runs, hold_ms)


def _end_reports(runs: list[Run], hold_ms: int) -> list[str]:
    """With the AMI floor: per call, what Asterisk and the app spend with the ends over
    AGI and over AMI, as medians of the steps both floors sustained (each pair ran side by
    side, so the box's noise is shared)."""
    if not any(run.side == AMI_FLOOR for run in runs):
        return []
    pairs = [
        (agi, ami)
        for agi in runs
        for ami in runs
        if agi.side == "floor"
        and ami.side == AMI_FLOOR
        and (agi.ladder, agi.rate) == (ami.ladder, ami.rate)
        and agi.sustained(hold_ms)
        and ami.sustained(hold_ms)
    ]
    if not pairs:
        return ["end reports: no step that both floors (AGI and AMI ends) sustained"]
    costs = [(agi.cpu.per_call(agi.calls), ami.cpu.per_call(ami.calls)) for agi, ami in pairs]
    asterisk_agi = statistics.median(agi[0] for agi, _ in costs)
    asterisk_ami = statistics.median(ami[0] for _, ami in costs)
    app_agi = statistics.median(agi[1] for agi, _ in costs)
    app_ami = statistics.median(ami[1] for _, ami in costs)
    return [
        f"end reports, CPU ms per call (medians of {len(pairs)} steps): Asterisk"
        f" {asterisk_agi:.2f} over AGI, {asterisk_ami:.2f} over AMI"
        f" ({asterisk_ami / asterisk_agi if asterisk_agi else 0:.2f}×); the app"
        f" {app_agi:.2f} over AGI, {app_ami:.2f} over AMI"
    ]
