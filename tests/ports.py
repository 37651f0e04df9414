"""Free ports for the tests' servers, never the same one twice in a process."""

from __future__ import annotations

import socket

_GIVEN: set[int] = set()
"""Ports this process has handed out: the kernel may offer a port again as soon as its
probe closes, and two ports of one sandbox (say ARI's and FastAGI's) must differ."""


def free_port(kind: int = socket.SOCK_DGRAM, address: str = "127.0.0.1") -> int:
    """A port free for ``kind`` now (and, for SIP, for TCP too: SIPp opens both), and not
    handed out before by this process."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind((address, 0))
            port = int(probe.getsockname()[1])
        if port in _GIVEN:
            continue
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, other) as probe:
            try:
                probe.bind((address, port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError("no free port found in 50 tries")


def free_port_on(kind: int, *hosts: str) -> int:
    """A port free for ``kind`` on every one of ``hosts`` (and handed out once, as
    :func:`free_port`)."""
    for _ in range(50):
        port = free_port(kind, hosts[0])
        try:
            for host in hosts[1:]:
                with socket.socket(socket.AF_INET, kind) as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no port free on every one of {', '.join(hosts)}")
