"""Kamailio, the platform's edge, run on a folder rendered beforehand, and ``kamcmd`` over
its ctl socket.

Kamailio runs in the foreground (``-DD -E``), in its own session (so ``stop`` takes its
forked children along); it serves once a SIP OPTIONS sent to its listening address gets
any answer. Its runtime commands (``dispatcher.reload``, ``dispatcher.list``,
``htable.reload``) go through ``kamcmd -s unix:<socket>``: the configuration must load the
``ctl`` module with ``binrpc`` on that socket (:func:`with_ctl` adds it to one that does not).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from callcontrol.platform.processes import Daemon, PlatformError, Recorded, Supervisor

BINARY = "kamailio"
KAMCMD = "kamcmd"
CONFIG = "kamailio.cfg"
SOCKET_MAX = 100
"""Longest unix socket path we accept (the kernel's limit is 107 bytes)."""


@dataclass(frozen=True, slots=True)
class EdgeSpec:
    """One Kamailio: the folder its rendered ``kamailio.cfg`` is in, where it listens for
    SIP (UDP), and its ctl socket."""

    folder: Path
    listen_host: str
    listen_port: int
    ctl_socket: Path
    name: str = "kamailio"
    shared_memory_mb: int = 64
    private_memory_mb: int = 8

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.listen_host)
        except ValueError:
            raise PlatformError(f"edge address {self.listen_host!r} is not an IP address") from None
        if not 1 <= self.listen_port <= 65535:
            raise PlatformError(f"edge port {self.listen_port} is not a port number")
        if len(str(self.ctl_socket)) > SOCKET_MAX or not self.ctl_socket.is_absolute():
            raise PlatformError(
                f"ctl socket {str(self.ctl_socket)!r} must be an absolute path of at most "
                f"{SOCKET_MAX} characters"
            )

    @property
    def config(self) -> Path:
        return self.folder / CONFIG

    def argv(self, binary: str) -> tuple[str, ...]:
        return (
            binary,
            "-f",
            str(self.config),
            "-DD",
            "-E",
            "-m",
            str(self.shared_memory_mb),
            "-M",
            str(self.private_memory_mb),
        )


def _tool(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise PlatformError(f"{name} is not installed (Debian package {package})")
    return found


def with_ctl(config: str, ctl_socket: Path) -> str:
    """``config`` loading the ctl module on ``ctl_socket`` (after its last ``loadmodule``), for
    a configuration rendered without it; one that loads ctl already is returned as it is."""
    if re.search(r'^\s*loadmodule\s+"ctl(\.so)?"', config, re.MULTILINE):
        return config
    if '"' in str(ctl_socket) or "\n" in str(ctl_socket):
        raise PlatformError(f"ctl socket {str(ctl_socket)!r} cannot be written into {CONFIG}")
    lines = config.splitlines(keepends=True)
    last = max((i for i, line in enumerate(lines) if line.startswith("loadmodule ")), default=-1)
    if last < 0:
        raise PlatformError(f"{CONFIG} loads no module: not a Kamailio configuration")
    added = ['loadmodule "ctl.so"\n', f'modparam("ctl", "binrpc", "unix:{ctl_socket}")\n']
    return "".join([*lines[: last + 1], *added, *lines[last + 1 :]])


def start(
    supervisor: Supervisor, spec: EdgeSpec, timeout: float = 60.0, stop_timeout: float = 10.0
) -> Recorded:
    """Start Kamailio on ``spec.folder``; returns once it answers SIP. Its configuration is
    checked first (``kamailio -c``), so a bad one fails with the line Kamailio names."""
    binary = _tool(BINARY, "kamailio")
    if not spec.config.is_file():
        raise PlatformError(f"{spec.config} does not exist: render the edge first")
    check(binary, spec.config)
    if options(spec.listen_host, spec.listen_port, within=0.5):  # the probe would take its answer
        raise PlatformError(
            f"{spec.name}: something answers SIP on {spec.listen_host}:{spec.listen_port} already"
        )
    spec.ctl_socket.parent.mkdir(parents=True, exist_ok=True)
    spec.ctl_socket.unlink(missing_ok=True)  # a socket left by a killed Kamailio

    def probe() -> str | None:
        status = options(spec.listen_host, spec.listen_port, within=0.5)
        return None if status else "no answer to OPTIONS"

    return supervisor.start(Daemon(spec.name, spec.argv(binary)), probe, timeout, stop_timeout)


def check(binary: str, config: Path, timeout: float = 30.0) -> None:
    """``kamailio -c``: parses and fixes up without binding or touching the database."""
    try:
        result = subprocess.run(
            [binary, "-c", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise PlatformError(f"kamailio -c {config} took over {timeout:.0f} s") from None
    if result.returncode != 0:
        output = (result.stderr + result.stdout).splitlines()
        # The parse error names file, line and column; "bad config file" only counts errors.
        errors = [line for line in output if "CRITICAL" in line or "parse error" in line]
        errors = errors or [line for line in output if "ERROR" in line] or output
        detail = errors[0].strip() if errors else f"exit status {result.returncode}"
        detail = detail.split("): ", 1)[-1] if "): " in detail else detail
        raise PlatformError(f"{config} is refused by Kamailio: {detail}")


def options(host: str, port: int, within: float = 2.0) -> int:
    """Send one SIP OPTIONS to ``host:port`` (UDP); the status of the first answer, 0 when
    none came within ``within`` seconds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    call_id = secrets.token_hex(8)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        local, local_port = sock.getsockname()[:2]
        local_shown = f"[{local}]" if family == socket.AF_INET6 else local
        request = "\r\n".join(
            [
                f"OPTIONS sip:{shown}:{port} SIP/2.0",
                f"Via: SIP/2.0/UDP {local_shown}:{local_port};"
                f"branch=z9hG4bK{secrets.token_hex(6)};rport",
                "Max-Forwards: 70",
                f"From: <sip:callcontrol-platform@{local_shown}>;tag={secrets.token_hex(4)}",
                f"To: <sip:{shown}:{port}>",
                f"Call-ID: {call_id}",
                "CSeq: 1 OPTIONS",
                "Content-Length: 0",
                "",
                "",
            ]
        )
        deadline = time.monotonic() + within
        try:
            sock.send(request.encode())
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                answer = sock.recv(65535).decode(errors="replace")
                first = answer.split("\r\n", 1)[0].split(" ")
                status = first[1] if first[0] == "SIP/2.0" and first[1:] else ""
                if f"Call-ID: {call_id}" in answer and status.isdigit() and int(status) >= 200:
                    return int(status)
        except OSError:  # refused (nothing listens yet) or timed out
            return 0
    return 0


# ---- kamcmd ---------------------------------------------------------------------------------


def kamcmd(ctl_socket: Path, *arguments: str, timeout: float = 10.0) -> str:
    """Run one command over the ctl socket; its output. PlatformError naming the failure."""
    binary = _tool(KAMCMD, "kamailio")
    shown = " ".join(arguments)
    try:
        result = subprocess.run(
            [binary, "-s", f"unix:{ctl_socket}", *arguments],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise PlatformError(f"kamcmd {shown} took over {timeout:.0f} s") from None
    if result.returncode != 0 or result.stdout.startswith("error:"):
        lines = (result.stderr + result.stdout).strip().splitlines() or ["no output"]
        raise PlatformError(f"kamcmd {shown} failed: {lines[-1].strip()}")
    return result.stdout


@dataclass(frozen=True, slots=True)
class Destination:
    """A server as the dispatcher sees it: ``flags`` as ``dispatcher.list`` prints them
    (``A`` active, ``I`` inactive, ``D`` disabled, then ``P`` probing, ``X`` not set)."""

    set_id: int
    uri: str
    flags: str
    name: str = ""

    @property
    def state(self) -> str:
        return {"A": "active", "I": "inactive", "D": "disabled"}.get(self.flags[:1], "unknown")


_FIELD = re.compile(r"^\s*(ID|URI|FLAGS|BODY):\s*(.*?)\s*$")


def parse_dispatcher_list(text: str) -> list[Destination]:
    """The destinations in ``kamcmd dispatcher.list`` output, in order."""
    found: list[Destination] = []
    set_id = 0
    uri = flags = ""
    for line in text.splitlines():
        match = _FIELD.match(line)
        if match is None:
            continue
        key, value = match.groups()
        if key == "ID" and value.isdigit():
            set_id = int(value)
        elif key == "URI":
            if uri:
                found.append(Destination(set_id, uri, flags))
            uri, flags = value, ""
        elif key == "FLAGS":
            flags = value
        elif key == "BODY" and uri:
            attributes = dict(part.partition("=")[::2] for part in value.split(";") if part)
            found.append(Destination(set_id, uri, flags, attributes.get("name", "")))
            uri = ""
    if uri:
        found.append(Destination(set_id, uri, flags))
    return found


def dispatcher_list(ctl_socket: Path) -> list[Destination]:
    return parse_dispatcher_list(kamcmd(ctl_socket, "dispatcher.list"))


RELOAD_WAIT = 10.0
"""Seconds ``dispatcher_reload`` retries while the dispatcher refuses a reload that follows
the last one too closely (its ``reload_delta``, 5 s by default: "Ongoing reload")."""


def dispatcher_reload(ctl_socket: Path, wait: float = RELOAD_WAIT) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            kamcmd(ctl_socket, "dispatcher.reload")
            return
        except PlatformError as exc:
            if "Ongoing reload" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def dispatcher_set_state(ctl_socket: Path, state: str, set_id: int, uri: str) -> None:
    """``state``: ``a``/``ap`` (active, probing), ``i``/``ip`` (inactive), ``d`` (disabled)."""
    if state not in {"a", "ap", "i", "ip", "d", "dp"}:
        raise PlatformError(f"dispatcher state {state!r} is not one of a, ap, i, ip, d, dp")
    kamcmd(ctl_socket, "dispatcher.set_state", state, str(set_id), uri)


def htable_reload(ctl_socket: Path, table: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", table):
        raise PlatformError(f"htable name {table!r}: letters, digits and _ only")
    kamcmd(ctl_socket, "htable.reload", table)
