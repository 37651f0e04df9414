"""Run SIPp against the sandbox and read what it saw.

Every run is bounded: ``-m`` calls, SIPp's own ``-timeout``, and a process timeout on top. The
result holds SIPp's exit code, the final counters from ``-trace_stat`` and every SIP message
from ``-trace_msg``, so a test asserts on what the SIP peer really received.
"""

from __future__ import annotations

import csv
import itertools
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SCENARIOS = Path(__file__).parent / "sipp_scenarios"
"""The scenarios the product's own commands use (the benchmark); tests bring their own."""
_RUNS = itertools.count(1)
_BLOCK = re.compile(r"^-{10,} [^\n]*\n(UDP message (?:sent|received))[^\n]*\n\n", re.MULTILINE)


def sipp_binary() -> str | None:
    return shutil.which("sipp")


@dataclass(frozen=True)
class Message:
    direction: str  # "sent" or "received"
    first_line: str
    text: str

    @property
    def status(self) -> int | None:
        """The status code of a response, None for a request."""
        match = re.match(r"SIP/2\.0 (\d{3})", self.first_line)
        return int(match.group(1)) if match else None

    def header(self, name: str) -> str | None:
        match = re.search(rf"^{re.escape(name)}:\s*(.*)$", self.text, re.MULTILINE | re.IGNORECASE)
        return match.group(1).strip() if match else None


ERRORS_KEPT = 4000
"""Characters kept from the end of a run's error file."""


@dataclass(frozen=True)
class SippResult:
    returncode: int
    successful: int
    failed: int
    messages: tuple[Message, ...]
    output: str
    errors: str = ""
    """The end of SIPp's error file (``-trace_err``): why its failed calls failed."""

    def received_statuses(self) -> list[int]:
        """Status codes received, in order (retransmissions included)."""
        return [
            m.status for m in self.messages if m.direction == "received" and m.status is not None
        ]

    def describe(self) -> str:
        lines = [f"{m.direction:8} {m.first_line}" for m in self.messages]
        return (
            f"sipp exit {self.returncode}, {self.successful} ok, {self.failed} failed\n"
            + "\n".join(lines)
            + f"\n{self.output[-2000:]}"
        )


@dataclass(frozen=True)
class Running:
    process: subprocess.Popen[str]
    stem: str


@dataclass(frozen=True)
class Sipp:
    """One SIPp role: its scenario, local SIP and media ports, and a folder for its traces."""

    scenario: str
    local_port: int
    media_port: int
    workdir: Path
    address: str = "127.0.0.1"
    scenarios: Path = SCENARIOS
    messages: bool = field(default=True, kw_only=True)
    """Trace every SIP message (what tests assert on); a benchmark's SIPp need not: reading
    the trace back costs the reader more than the calls cost some apps."""

    def command(
        self,
        remote: str | None,
        *,
        calls: int,
        timeout: float,
        service: str | None = None,
        user: str | None = None,
        password: str | None = None,
        hold_ms: int | None = None,
        rate: float | None = None,
    ) -> tuple[list[str], str]:
        """The command line, and the stem of this run's trace files."""
        binary = sipp_binary()
        assert binary is not None, "sipp is not installed"
        self.workdir.mkdir(parents=True, exist_ok=True)
        stem = f"{Path(self.scenario).stem}-{self.local_port}-{next(_RUNS)}"
        command = [binary]
        if remote is not None:
            command.append(remote)
        command += [
            "-sf", str(self.scenarios / self.scenario),
            "-i", self.address,
            "-p", str(self.local_port),
            "-mi", self.address,
            "-mp", str(self.media_port),
            "-m", str(calls),
            "-nostdin",
            "-timeout", f"{timeout:.0f}",
            "-timeout_error",
            "-trace_stat", "-stf", str(self.workdir / f"{stem}.csv"),
            "-trace_err", "-error_file", str(self.workdir / f"{stem}.errors"),
        ]  # fmt: skip
        if self.messages:
            command += ["-trace_msg", "-message_file", str(self.workdir / f"{stem}.messages")]
        if service is not None:
            command += ["-s", service]
        if user is not None:
            command += ["-key", "key_user", user, "-au", user]
        if password is not None:
            command += ["-ap", password]
        if hold_ms is not None:
            command += ["-d", str(hold_ms)]
        if rate is not None:
            command += ["-r", str(rate)]
        return command, stem

    def run(
        self,
        remote: str | None,
        *,
        calls: int = 1,
        timeout: float = 30.0,
        **options: str | int | float | None,
    ) -> SippResult:
        """Run to the end (or to the timeout) and collect the result."""
        command, stem = self.command(remote, calls=calls, timeout=timeout, **options)  # type: ignore[arg-type]
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout + 15,
                cwd=self.workdir,
            )
            code, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            code, output = -1, f"sipp killed after {timeout + 15:.0f} s: {exc}"
        return self.result(stem, code, output)

    def start(
        self,
        remote: str | None = None,
        *,
        calls: int = 1,
        timeout: float = 30.0,
        **options: str | int | float | None,
    ) -> Running:
        """Start in the background (a callee); ``finish`` it with the returned handle."""
        command, stem = self.command(remote, calls=calls, timeout=timeout, **options)  # type: ignore[arg-type]
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=self.workdir,
        )
        return Running(process, stem)

    def finish(self, running: Running, timeout: float = 30.0) -> SippResult:
        """Wait for a background SIPp (killing exactly it after ``timeout``) and read it."""
        process = running.process
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate(timeout=10)
        return self.result(running.stem, process.returncode, output or "")

    def result(self, stem: str, code: int, output: str) -> SippResult:
        successful = failed = 0
        stat = self.workdir / f"{stem}.csv"
        if stat.exists():
            rows = list(csv.DictReader(stat.read_text().splitlines(), delimiter=";"))
            if rows:
                successful = int(rows[-1].get("SuccessfulCall(C)") or 0)
                failed = int(rows[-1].get("FailedCall(C)") or 0)
        messages: list[Message] = []
        trace = self.workdir / f"{stem}.messages"
        if trace.exists():
            text = trace.read_text(errors="replace")
            parts = _BLOCK.split(text)
            # parts: [before, kind, body, kind, body, ...]
            for kind, body in zip(parts[1::2], parts[2::2], strict=True):
                first = body.strip().splitlines()[0] if body.strip() else ""
                messages.append(Message(kind.rsplit(" ", 1)[-1], first, body))
        errors = self.workdir / f"{stem}.errors"
        tail = errors.read_text(errors="replace")[-ERRORS_KEPT:] if errors.exists() else ""
        return SippResult(code, successful, failed, tuple(messages), output, tail)
