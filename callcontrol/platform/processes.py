"""A small supervisor for the daemons the platform starts (rtpengine, Kamailio, the
``callcontrol run`` services), and the process helpers the Asterisk sandbox shares.

A daemon is started in its own session (our Ctrl-C never reaches it), with stdin closed and
stdout + stderr in ``<run folder>/<name>.log``; its pid and command line are recorded in
``<run folder>/<name>.json`` (no secrets: the environment is never written). ``stop`` signals
exactly that pid's process group: SIGTERM, then SIGKILL after a timeout. It never looks
processes up by name, and a recorded pid whose command line is no longer the recorded one
(the pid was reused) is "not running", never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from dialplan.errors import CallControlError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""What a daemon's name may be: it names files in the run folder."""

LOG_MARKERS = ("ERROR", "ERR:", "CRIT", "Error", "error:")
"""Words that mark a daemon's log line worth quoting when it fails to start."""

Probe = Callable[[], str | None]
"""Asks a starting daemon whether it serves: None when it does, else what is missing (the
reason a timeout reports). It must return within about a second."""


class PlatformError(CallControlError):
    """A part of the platform cannot be started, reached or stopped; says why in one line."""


# ---- process helpers (shared with callcontrol.asterisk.sandbox) ------------------------------


def command_line(pid: int) -> list[bytes] | None:
    """The arguments of a live process, None when ``pid`` is gone or a zombie."""
    if pid <= 0:
        return None
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]:
        return None
    return arguments.split(b"\0")[:-1] if arguments.endswith(b"\0") else arguments.split(b"\0")


def send_signal(pid: int, signum: int, group: bool = False) -> None:
    """Signal ``pid`` (its process group when ``group``); a process already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


def wait_gone(pid: int, process: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``pid`` to end; True when it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            # Our own child: gone once reaped. Its /proc entry shows a zombie ("Z") as soon as
            # the main thread exits, while other threads still run and waitpid cannot reap it;
            # stopping there would leave the child unreaped (a ResourceWarning when collected).
            if process.poll() is not None:
                return True
        elif command_line(pid) is None:
            return True
        time.sleep(0.1)
    return False


def terminate(
    pid: int, process: subprocess.Popen[bytes] | None, timeout: float, group: bool = False
) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; False when it survived both."""
    send_signal(pid, signal.SIGTERM, group)
    if wait_gone(pid, process, timeout):
        return True
    send_signal(pid, signal.SIGKILL, group)
    return wait_gone(pid, process, timeout)


def log_tail(path: Path, markers: Sequence[str] = ("ERROR",)) -> str:
    """The last line of a log worth quoting: the last one holding one of ``markers``, else
    the last line."""
    with contextlib.suppress(OSError):
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if any(mark in line for mark in markers)] or lines
        if errors:
            return errors[-1].strip()
    return "no output"


# ---- the supervisor --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Daemon:
    """What to run: ``name`` names its files in the run folder; ``argv`` is its whole
    command line (it must stay in the foreground); ``environment`` is added to ours and is
    never written anywhere (it may hold secrets)."""

    name: str
    argv: tuple[str, ...]
    environment: Mapping[str, str] | None = None
    cwd: Path | None = None

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise PlatformError(f"daemon name {self.name!r}: letters, digits, - and _ only")
        if not self.argv:
            raise PlatformError(f"daemon {self.name}: empty command line")


@dataclass(frozen=True, slots=True)
class Recorded:
    """What ``start`` wrote in ``<name>.json``: enough for ``status`` and ``stop``."""

    name: str
    pid: int
    argv: list[str]
    log: str
    started_at: float


@dataclass(frozen=True, slots=True)
class Status:
    name: str
    running: bool
    recorded: Recorded | None


class Supervisor:
    """Starts, probes and stops daemons; what it started is in ``folder``, so another
    process (``callcontrol platform down``) can stop them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def state_file(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def log_file(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def recorded(self, name: str) -> Recorded | None:
        try:
            return Recorded(**json.loads(self.state_file(name).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def names(self) -> list[str]:
        """Every daemon with a state file, by name."""
        if not self.folder.is_dir():
            return []
        return sorted(path.stem for path in self.folder.glob("*.json") if NAME.fullmatch(path.stem))

    def running(self, name: str, recorded: Recorded | None = None) -> bool:
        """True when the recorded pid is alive and still runs the recorded command line."""
        recorded = recorded or self.recorded(name)
        if recorded is None:
            return False
        arguments = command_line(recorded.pid)
        return arguments is not None and arguments == [a.encode() for a in recorded.argv]

    def status(self, name: str) -> Status:
        recorded = self.recorded(name)
        return Status(name, self.running(name, recorded), recorded)

    def start(self, daemon: Daemon, probe: Probe, timeout: float, stop_timeout: float) -> Recorded:
        """Spawn ``daemon`` and return once ``probe`` says it serves; on a timeout or an early
        exit, stop it and raise PlatformError naming the log's last error."""
        if self.running(daemon.name):
            recorded = self.recorded(daemon.name)
            assert recorded is not None
            raise PlatformError(f"{daemon.name} is already running (pid {recorded.pid})")
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.log_file(daemon.name)
        environment = {**os.environ, **(daemon.environment or {})}
        try:
            with log.open("wb") as output:
                process = subprocess.Popen(
                    list(daemon.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=environment,
                    cwd=daemon.cwd,
                    start_new_session=True,  # our Ctrl-C must not reach it; `stop` does
                )
        except OSError as exc:
            raise PlatformError(f"{daemon.name}: cannot run {daemon.argv[0]}: {exc}") from None
        self._children[daemon.name] = process
        recorded = Recorded(daemon.name, process.pid, list(daemon.argv), str(log), time.time())
        self.state_file(daemon.name).write_text(json.dumps(asdict(recorded), indent=2) + "\n")
        try:
            self._wait_ready(daemon.name, process, probe, timeout)
        except BaseException:
            self.stop(daemon.name, stop_timeout)
            raise
        return recorded

    def _wait_ready(
        self, name: str, process: subprocess.Popen[bytes], probe: Probe, timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        missing: str | None = "no answer"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise PlatformError(
                    f"{name} exited with {process.returncode} while starting: "
                    f"{log_tail(self.log_file(name), LOG_MARKERS)} (see {self.log_file(name)})"
                )
            missing = probe()
            if missing is None and process.poll() is None:
                return
            time.sleep(0.2)
        raise PlatformError(
            f"{name} did not answer within {timeout:.0f} s ({missing}); see {self.log_file(name)}"
        )

    def stop(self, name: str, timeout: float = 10.0) -> bool:
        """Stop the recorded pid and its process group: SIGTERM, SIGKILL after ``timeout``.
        False when it was not running. The state file goes either way."""
        recorded = self.recorded(name)
        process = self._children.pop(name, None)
        if recorded is None or not self.running(name, recorded):
            if process is not None:  # exiting already: reap it, or it warns when collected
                wait_gone(process.pid, process, timeout)
            self.state_file(name).unlink(missing_ok=True)
            return False
        # The daemon leads its own session (start_new_session), so its group is its pid:
        # the group takes the children it forked (Kamailio's) along.
        try:
            group = os.getpgid(recorded.pid) == recorded.pid
        except ProcessLookupError:
            group = False
        if not terminate(recorded.pid, process, timeout, group):
            raise PlatformError(f"{name} (pid {recorded.pid}) survived SIGKILL")
        if group:  # a forked child that ignored SIGTERM must not outlive the daemon
            send_signal(recorded.pid, signal.SIGKILL, group=True)
        self.state_file(name).unlink(missing_ok=True)
        return True

    def stop_all(self, timeout: float = 10.0, order: Sequence[str] | None = None) -> list[str]:
        """Stop every recorded daemon (``order`` first, then the rest); the names stopped."""
        names = [*(order or ()), *(n for n in self.names() if n not in (order or ()))]
        return [name for name in names if self.stop(name, timeout)]
